"""Simulator account TRs: fills, balances, orderable amounts (spec §5, §6); orders are in routes_orders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipeline.kis.simulator.ledger import Order
from pipeline.kis.simulator.matching import UNKNOWN_SYMBOL, Exchange
from pipeline.kis.simulator.routes_orders import ORDER_ROUTES, SIDES
from pipeline.kis.simulator.wire import (
    FUTURES_PRODUCTS,
    STOCK_PRODUCTS,
    Ctx,
    Fail,
    Handler,
    Result,
    account,
    n,
    page,
    pct,
    px,
)
from pipeline.market import FUTURES_MULTIPLIER, InstrumentKind

S = "/uapi/domestic-stock/v1/trading"
F = "/uapi/domestic-futureoption/v1/trading"


def _orders_between(ctx: Ctx, cano: str, prdt: str, start_key: str, end_key: str) -> list[Order]:
    ctx.exchange.sync(ctx.now)
    end = ctx.get_date(end_key, ctx.now.date()).strftime("%Y%m%d")
    start = ctx.get_date(start_key, ctx.now.date() - timedelta(days=90)).strftime("%Y%m%d")
    return ctx.ledger.orders("cano=? AND prdt=? AND ord_dt BETWEEN ? AND ?", (cano, prdt, start, end))


def _keep(order: Order, side: str, filled: str, symbol: str) -> bool:
    if side in ("01", "02") and order.side != ("sell" if side == "01" else "buy"):
        return False
    if filled == "01" and order.filled_qty == 0:
        return False
    if filled == "02" and order.remaining == 0:
        return False
    return not symbol or order.symbol == symbol


def _remaining_shown(o: Order) -> int:
    return o.remaining if not o.cancelled else 0


def stock_orders(ctx: Ctx) -> Result:
    """TTTC0081R daily orders and fills: 100 rows per page real, 15 on VTS (spec §5)."""
    cano, prdt = account(ctx, STOCK_PRODUCTS)
    orders = [
        o
        for o in _orders_between(ctx, cano, prdt, "INQR_STRT_DT", "INQR_END_DT")
        if _keep(o, ctx.get("SLL_BUY_DVSN_CD"), ctx.get("CCLD_DVSN"), ctx.get("PDNO"))
        and (not ctx.get("ODNO") or o.odno == ctx.get("ODNO"))
    ]
    if ctx.get("INQR_DVSN") != "01":
        orders.reverse()  # 00: newest first
    rows = [
        {
            "ord_dt": o.ord_dt,
            "ord_gno_brno": o.org_no,
            "odno": o.odno,
            "orgn_odno": o.orgn_odno,
            "sll_buy_dvsn_cd": "01" if o.side == "sell" else "02",
            "sll_buy_dvsn_cd_name": "매도" if o.side == "sell" else "매수",
            "pdno": o.symbol,
            "ord_qty": n(o.qty),
            "ord_unpr": px(o.price, "stock"),
            "ord_tmd": o.ord_tmd,
            "tot_ccld_qty": n(o.filled_qty),
            "avg_prvs": px(o.avg_price, "stock"),
            "tot_ccld_amt": n(o.filled_qty * o.avg_price),
            "rmn_qty": n(_remaining_shown(o)),
            "rjct_qty": n(o.rejected_qty),
            "cncl_yn": "Y" if o.cancelled else "N",
        }
        for o in orders
    ]
    chunk, tr_cont, ctx_keys = page(ctx, rows, 15 if ctx.paper else 100)
    totals = {
        "tot_ord_qty": n(sum(o.qty for o in orders)),
        "tot_ccld_qty": n(sum(o.filled_qty for o in orders)),
        "tot_ccld_amt": n(sum(o.filled_qty * o.avg_price for o in orders)),
    }
    return Result({"output1": chunk, "output2": totals}, tr_cont=tr_cont, extra=ctx_keys)


def stock_balance(ctx: Ctx) -> Result:
    """TTTC8434R: holdings (50 per page real, 20 VTS) and totals. INQR_DVSN=02 fails since 2026-02 (§5)."""
    cano, prdt = account(ctx, STOCK_PRODUCTS)
    if ctx.get("INQR_DVSN") == "02":
        raise Fail("OPSQ2001", "INPUT INVALID_CHECK_INQR_DVSN", rt_cd="2")
    ex = ctx.exchange
    ex.sync(ctx.now)
    rows: list[dict[str, Any]] = []
    value = cost = 0.0
    for p in ctx.ledger.positions(cano, prdt):
        price = ex.mark_price(p["symbol"], ctx.now)
        qty, avg = int(p["qty"]), float(p["avg_price"])
        value, cost = value + qty * price, cost + qty * avg
        rows.append(
            {
                "pdno": p["symbol"],
                "hldg_qty": n(qty),
                "ord_psbl_qty": n(qty),
                "pchs_avg_pric": f"{avg:.4f}",
                "pchs_amt": n(qty * avg),
                "prpr": px(price, "stock"),
                "evlu_amt": n(qty * price),
                "evlu_pfls_amt": n(qty * (price - avg)),
                "evlu_pfls_rt": pct((price / avg - 1) * 100 if avg and qty else 0.0),
            }
        )
    with ctx.ledger.transaction() as db:
        cash = ex.cash(db, cano, prdt)
    chunk, tr_cont, ctx_keys = page(ctx, rows, 20 if ctx.paper else 50)
    summary = {
        "dnca_tot_amt": n(cash),
        "prvs_rcdl_excc_amt": n(cash),
        "scts_evlu_amt": n(value),
        "tot_evlu_amt": n(cash + value),
        "nass_amt": n(cash + value),
        "pchs_amt_smtl_amt": n(cost),
        "evlu_pfls_smtl_amt": n(value - cost),
    }
    return Result({"output1": chunk, "output2": [summary]}, tr_cont=tr_cont, extra=ctx_keys)


def stock_buyable(ctx: Ctx) -> Result:
    """TTTC8908R: orderable cash and quantity at ORD_UNPR (or the current price)."""
    cano, prdt = account(ctx, STOCK_PRODUCTS)
    ex = ctx.exchange
    ex.sync(ctx.now)
    symbol = ctx.get("PDNO")
    if ctx.state.market.kind_of(symbol) not in (InstrumentKind.STOCK, InstrumentKind.ETF):
        raise Fail(*UNKNOWN_SYMBOL)  # KIS answers "no such product", not a zero amount
    price = ctx.get_price("ORD_UNPR") or ex.mark_price(symbol, ctx.now)
    with ctx.ledger.transaction() as db:
        cash = ex.stock_available_cash(db, cano, prdt, ctx.now)
    qty = int(cash // (price * (1 + ctx.state.cfg.stock_fee_rate))) if price > 0 else 0
    return Result(
        {
            "output": {
                "ord_psbl_cash": n(cash),
                "nrcvb_buy_amt": n(qty * price),
                "nrcvb_buy_qty": n(qty),
                "max_buy_amt": n(qty * price),
                "max_buy_qty": n(qty),
                "psbl_qty_calc_unpr": n(price),
            }
        }
    )


def futures_orders(ctx: Ctx) -> Result:
    """TTTO5201R orders and fills (FK200/NK200), 100 rows per page."""
    cano, prdt = account(ctx, FUTURES_PRODUCTS)
    orders = [
        o
        for o in _orders_between(ctx, cano, prdt, "STRT_ORD_DT", "END_ORD_DT")
        if _keep(o, ctx.get("SLL_BUY_DVSN_CD"), ctx.get("CCLD_NCCS_DVSN"), ctx.get("PDNO"))
    ]
    if ctx.get("SORT_SQN") == "DS":
        orders.reverse()
    rows = [
        {
            "ord_dt": o.ord_dt,
            "ord_gno_brno": o.org_no,
            "odno": o.odno,
            "orgn_odno": o.orgn_odno,
            "sll_buy_dvsn_cd": "01" if o.side == "sell" else "02",
            "pdno": o.symbol,
            "ord_qty": n(o.qty),
            "ord_idx": px(o.price, "futures"),
            "qty": n(_remaining_shown(o)),
            "tot_ccld_qty": n(o.filled_qty),
            "avg_idx": px(o.avg_price, "futures"),
            "rjct_qty": n(o.rejected_qty),
            "ord_tmd": o.ord_tmd,
            "cncl_yn": "Y" if o.cancelled else "N",
        }
        for o in orders
    ]
    chunk, tr_cont, ctx_keys = page(ctx, rows, 100, "200")
    fees = sum(
        o.filled_qty * o.avg_price * FUTURES_MULTIPLIER * ctx.state.cfg.futures_fee_rate for o in orders
    )
    totals = {"tot_ccld_qty_smtl": n(sum(o.filled_qty for o in orders)), "fee_smtl": n(fees)}
    return Result({"output1": chunk, "output2": totals}, tr_cont=tr_cont, extra=ctx_keys)


def futures_balance(ctx: Ctx) -> Result:
    """CTFO6118R: positions (20 per page) and deposit/margin summary (output1/output2 split [U])."""
    cano, prdt = account(ctx, FUTURES_PRODUCTS)
    ex = ctx.exchange
    ex.sync(ctx.now)
    rows: list[dict[str, Any]] = []
    for p in ctx.ledger.positions(cano, prdt):
        qty, avg = int(p["qty"]), float(p["avg_price"])
        if qty == 0:
            continue
        price = ex.mark_price(p["symbol"], ctx.now)
        rows.append(
            {
                "shtn_pdno": p["symbol"],
                "sll_buy_dvsn_name": "매수" if qty > 0 else "매도",
                "cblc_qty": n(abs(qty)),
                "ccld_avg_unpr1": px(avg, "futures"),
                "idx_clpr": px(price, "futures"),
                "evlu_amt": n(abs(qty) * price * FUTURES_MULTIPLIER),
                "evlu_pfls_amt": n((price - avg) * qty * FUTURES_MULTIPLIER),
                "trad_pfls_amt": n(p["realized"]),
                "lqd_psbl_qty": n(abs(qty)),
            }
        )
    with ctx.ledger.transaction() as db:
        cash, unrealized, margin = ex.futures_state(db, cano, prdt, ctx.now)
    free = cash + unrealized - margin
    chunk, tr_cont, ctx_keys = page(ctx, rows, 20, "200")
    summary = {
        "dnca_cash": n(cash),
        "tot_dncl_amt": n(cash + unrealized),
        "mgna_tota": n(margin),
        "ord_psbl_cash": n(free),
        "ord_psbl_tota": n(free),
        "evlu_pfls_amt_smtl": n(unrealized),
        "prsm_dpast_amt": n(cash + unrealized),
        "add_mgna_tota": n(max(0.0, -free)),
    }
    return Result({"output1": chunk, "output2": summary}, tr_cont=tr_cont, extra=ctx_keys)


def futures_orderable(ctx: Ctx) -> Result:
    """TTTO5105R: new and closable contracts for SLL_BUY_DVSN_CD at UNIT_PRICE."""
    cano, prdt = account(ctx, FUTURES_PRODUCTS)
    ex = ctx.exchange
    ex.sync(ctx.now)
    symbol, side = ctx.get("PDNO"), SIDES[ctx.get_code("SLL_BUY_DVSN_CD", SIDES)]
    if ctx.state.market.kind_of(symbol) is not InstrumentKind.FUTURES:
        raise Fail(*UNKNOWN_SYMBOL)
    price = ctx.get_price("UNIT_PRICE") or ex.mark_price(symbol, ctx.now)
    with ctx.ledger.transaction() as db:
        free = ex.futures_available(db, cano, prdt, ctx.now)
        row = db.execute(
            "SELECT qty FROM positions WHERE cano=? AND prdt=? AND symbol=?", (cano, prdt, symbol)
        ).fetchone()
    pos = int(row[0]) if row else 0
    closable = max(0, -pos) if side == "buy" else max(0, pos)
    new = Exchange.contracts_for(free, price, ctx.state.cfg.futures_margin_rate)
    return Result(
        {
            "output": {
                "tot_psbl_qty": n(new + closable),
                "lqd_psbl_qty1": n(closable),
                "ord_psbl_qty": n(new),
                "bass_idx": px(price, "futures"),
            }
        }
    )


TRADING_ROUTES: list[tuple[str, str, str, Handler]] = [
    *ORDER_ROUTES,
    ("GET", f"{S}/inquire-daily-ccld", "TTTC0081R", stock_orders),
    ("GET", f"{S}/inquire-balance", "TTTC8434R", stock_balance),
    ("GET", f"{S}/inquire-psbl-order", "TTTC8908R", stock_buyable),
    ("GET", f"{F}/inquire-ccnl", "TTTO5201R", futures_orders),
    ("GET", f"{F}/inquire-balance", "CTFO6118R", futures_balance),
    ("GET", f"{F}/inquire-psbl-order", "TTTO5105R", futures_orderable),
]
