"""Simulator order TRs: cash and futures orders, modify/cancel, with KIS's input checks (spec §5, §6)."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.kis.simulator.ledger import Order
from pipeline.kis.simulator.matching import OrderRequest, Reject
from pipeline.kis.simulator.wire import FUTURES_PRODUCTS, STOCK_PRODUCTS, Ctx, Fail, Handler, Result, account

S = "/uapi/domestic-stock/v1/trading"
F = "/uapi/domestic-futureoption/v1/trading"
ORDER_MSG = ("APBK0013", "주문 전송 완료 되었습니다.")
#: Orders TR codes whose responses the "lost response" fault may swallow.
ORDER_TRS = frozenset({"TTTC0012U", "TTTC0011U", "TTTC0013U", "TTTO1101U", "TTTO1103U"})
#: SLL_BUY_DVSN_CD (spec §6): there is no default side, a missing or other code is invalid input.
SIDES = {"01": "sell", "02": "buy"}
#: RVSE_CNCL_DVSN_CD: 01 modify, 02 cancel; anything else is invalid, never a modify.
REVISE_CODES = ("01", "02")
YES_NO = ("Y", "N")
STOCK_DVSN = ("00", "01", "03", "04")
FUTURES_DVSN = ("01", "02", "03", "04")


def _ack(order: Order) -> Result:
    return Result(
        {"output": {"KRX_FWDG_ORD_ORGNO": order.org_no, "ODNO": order.odno, "ORD_TMD": order.ord_tmd}},
        msg=ORDER_MSG,
    )


def _booked(action: Callable[[], Order]) -> Result:
    try:
        return _ack(action())
    except Reject as exc:
        raise Fail(exc.msg_cd, exc.msg1) from None


def _dvsn(ctx: Ctx, allowed: tuple[str, ...], *names: str) -> str:
    value = next((ctx.get(n) for n in names if ctx.get(n)), "")
    if value not in allowed:
        # KIS knows more order types (IOC/FOK, after-hours); the simulator supports these only.
        raise Fail(
            "OPSQ2001", f"INPUT INVALID_CHECK_{names[0]} (simulator supports {'/'.join(allowed)})", rt_cd="2"
        )
    return value


def stock_order(ctx: Ctx) -> Result:
    """TTTC0012U buy / TTTC0011U sell. ORD_DVSN 00 limit, 01 market (03/04 best-price treated as market)."""
    cano, prdt = account(ctx, STOCK_PRODUCTS)
    dvsn = _dvsn(ctx, STOCK_DVSN, "ORD_DVSN")
    req = OrderRequest(
        cano,
        prdt,
        "stock",
        ctx.get("PDNO"),
        "sell" if ctx.tr_id == "TTTC0011U" else "buy",
        "limit" if dvsn == "00" else "market",
        ctx.get_whole("ORD_QTY"),
        ctx.get_price("ORD_UNPR"),
        ctx.paper,
    )
    return _booked(lambda: ctx.exchange.place(req, ctx.now))


def stock_revise(ctx: Ctx) -> Result:
    """TTTC0013U: RVSE_CNCL_DVSN_CD 01 modify / 02 cancel; QTY_ALL_ORD_YN Y = all remaining."""
    cano, prdt = account(ctx, STOCK_PRODUCTS)
    cancel = ctx.get_code("RVSE_CNCL_DVSN_CD", REVISE_CODES) == "02"
    all_qty = ctx.get_code("QTY_ALL_ORD_YN", YES_NO) == "Y"
    qty = 0 if all_qty else ctx.get_whole("ORD_QTY")
    price = None if _dvsn(ctx, STOCK_DVSN, "ORD_DVSN") == "01" else ctx.get_price("ORD_UNPR")
    original = ctx.get("ORGN_ODNO")
    return _booked(lambda: ctx.exchange.revise(original, cano, prdt, cancel, qty, price, ctx.now, ctx.paper))


def futures_order(ctx: Ctx) -> Result:
    """TTTO1101U: SLL_BUY_DVSN_CD 01 sell / 02 buy; ORD_DVSN_CD 01 limit, 02 market (03/04 as market)."""
    cano, prdt = account(ctx, FUTURES_PRODUCTS)
    side = SIDES[ctx.get_code("SLL_BUY_DVSN_CD", SIDES)]
    dvsn = _dvsn(ctx, FUTURES_DVSN, "ORD_DVSN_CD", "NMPR_TYPE_CD")
    req = OrderRequest(
        cano,
        prdt,
        "futures",
        ctx.get("SHTN_PDNO"),
        side,
        "limit" if dvsn == "01" else "market",
        ctx.get_whole("ORD_QTY"),
        ctx.get_price("UNIT_PRICE"),
        ctx.paper,
    )
    return _booked(lambda: ctx.exchange.place(req, ctx.now))


def futures_revise(ctx: Ctx) -> Result:
    """TTTO1103U: cancel everything with ORD_QTY 0 + RMN_QTY_YN Y (spec §6)."""
    cano, prdt = account(ctx, FUTURES_PRODUCTS)
    cancel = ctx.get_code("RVSE_CNCL_DVSN_CD", REVISE_CODES) == "02"
    all_qty = ctx.get_code("RMN_QTY_YN", YES_NO) == "Y"
    qty = 0 if all_qty else ctx.get_whole("ORD_QTY")
    market = _dvsn(ctx, FUTURES_DVSN, "ORD_DVSN_CD", "NMPR_TYPE_CD") == "02"
    price = None if market else ctx.get_price("UNIT_PRICE")
    original = ctx.get("ORGN_ODNO")
    return _booked(lambda: ctx.exchange.revise(original, cano, prdt, cancel, qty, price, ctx.now, ctx.paper))


ORDER_ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", f"{S}/order-cash", "TTTC0012U", stock_order),
    ("POST", f"{S}/order-cash", "TTTC0011U", stock_order),
    ("POST", f"{S}/order-rvsecncl", "TTTC0013U", stock_revise),
    ("POST", f"{F}/order", "TTTO1101U", futures_order),
    ("POST", f"{F}/order-rvsecncl", "TTTO1103U", futures_revise),
]
