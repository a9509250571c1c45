"""Domestic stock TRs: quotes, charts, cash orders, fills, balance, buyable amount (spec §5)."""

from __future__ import annotations

from datetime import date, datetime, time

from pipeline.kis.charts import (
    STOCK_DAILY,
    STOCK_MINUTE,
    hhmmss,
    to_bar,
    walk_daily,
    walk_minutes,
    yyyymmdd,
)
from pipeline.kis.endpoints import DAILY_ROWS
from pipeline.kis.models import (
    Bar,
    BuyableAmount,
    Holding,
    OrderAck,
    Side,
    StockBalance,
    StockBalanceSummary,
    StockOrder,
    StockQuote,
)
from pipeline.kis.session import KisSession
from pipeline.market import InstrumentKind, session_hours

STOCK_HOURS = session_hours(InstrumentKind.STOCK)


def _price(price: float | None) -> str:
    return "0" if price is None else str(round(price))


class StockApi(KisSession):
    """Typed wrappers around the stock TRs. Codes are 6 characters and may contain letters."""

    def stock_price(self, symbol: str) -> StockQuote:
        """Current price (FHKST01010100)."""
        resp = self.get("stock_price", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": symbol})
        return StockQuote.model_validate(resp.output())

    def stock_daily_bars(self, symbol: str, start: date, end: date, period: str = "D") -> list[Bar]:
        """Adjusted daily (or W/M/Y) bars in [start, end], walking 100-row windows (FHKST03010100)."""

        def fetch(lo: date, hi: date) -> list[Bar]:
            resp = self.get(
                "stock_daily",
                {
                    "FID_COND_MRKT_DIV_CODE": "J",
                    "FID_INPUT_ISCD": symbol,
                    "FID_INPUT_DATE_1": yyyymmdd(lo),
                    "FID_INPUT_DATE_2": yyyymmdd(hi),
                    "FID_PERIOD_DIV_CODE": period,
                    "FID_ORG_ADJ_PRC": "0",
                },
            )
            return [b for b in (to_bar(r, STOCK_DAILY) for r in resp.rows("output2")) if b]

        return walk_daily(fetch, start, end, DAILY_ROWS, self.config.max_pages)

    def stock_minute_bars_today(self, symbol: str, until: time = STOCK_HOURS.close) -> list[Bar]:
        """Today's minute bars up to ``until``, 30 rows per call (FHKST03010200)."""

        def fetch(cursor: datetime) -> list[Bar]:
            resp = self.get(
                "stock_minute_today",
                {
                    "FID_COND_MRKT_DIV_CODE": "J",
                    "FID_INPUT_ISCD": symbol,
                    "FID_INPUT_HOUR_1": hhmmss(cursor),
                    "FID_PW_DATA_INCU_YN": "Y",
                    "FID_ETC_CLS_CODE": "",
                },
            )
            return [b for b in (to_bar(r, STOCK_MINUTE) for r in resp.rows("output2")) if b]

        return walk_minutes(fetch, None, STOCK_HOURS.open, until, self.config.max_pages)

    def stock_minute_bars(self, symbol: str, day: date, until: time = STOCK_HOURS.close) -> list[Bar]:
        """Minute bars of ``day`` (up to a year back), 120 rows per call (FHKST03010230, real-only)."""

        def fetch(cursor: datetime) -> list[Bar]:
            resp = self.get(
                "stock_minute_past",
                {
                    "FID_COND_MRKT_DIV_CODE": "J",
                    "FID_INPUT_ISCD": symbol,
                    "FID_INPUT_DATE_1": yyyymmdd(day),
                    "FID_INPUT_HOUR_1": hhmmss(cursor),
                    "FID_PW_DATA_INCU_YN": "Y",
                    "FID_FAKE_TICK_INCU_YN": "",
                },
            )
            return [b for b in (to_bar(r, STOCK_MINUTE) for r in resp.rows("output2")) if b]

        return walk_minutes(fetch, day, STOCK_HOURS.open, until, self.config.max_pages)

    def stock_order(
        self, symbol: str, side: Side, qty: int, price: float | None = None, order_type: str | None = None
    ) -> OrderAck:
        """Cash order: market when ``price`` is None (ORD_DVSN 01), else limit (00). Never retried blindly."""
        cano, prdt = self.config.accounts(futures=False)
        body = {
            "CANO": cano,
            "ACNT_PRDT_CD": prdt,
            "PDNO": symbol,
            "ORD_DVSN": order_type or ("01" if price is None else "00"),
            "ORD_QTY": str(int(qty)),
            "ORD_UNPR": _price(price),
            "EXCG_ID_DVSN_CD": "KRX",
            "CNDT_PRIC": "",
        }
        if side == "sell":
            body["SLL_TYPE"] = "01"
        resp = self.post_order("stock_sell" if side == "sell" else "stock_buy", body)
        return OrderAck.model_validate(resp.output())

    def stock_modify(
        self, org_no: str, order_no: str, qty: int, price: float | None, all_qty: bool = False
    ) -> OrderAck:
        """Modify the unfilled part of an order (RVSE_CNCL_DVSN_CD 01)."""
        return self._stock_revise(org_no, order_no, "01", qty, price, all_qty)

    def stock_cancel(self, org_no: str, order_no: str, qty: int = 0, all_qty: bool = True) -> OrderAck:
        """Cancel an order's unfilled quantity (RVSE_CNCL_DVSN_CD 02); filled shares stay filled."""
        return self._stock_revise(org_no, order_no, "02", qty, None, all_qty)

    def _stock_revise(
        self, org_no: str, order_no: str, kind: str, qty: int, price: float | None, all_qty: bool
    ) -> OrderAck:
        cano, prdt = self.config.accounts(futures=False)
        body = {
            "CANO": cano,
            "ACNT_PRDT_CD": prdt,
            "KRX_FWDG_ORD_ORGNO": org_no,
            "ORGN_ODNO": order_no,
            "ORD_DVSN": "01" if price is None else "00",
            "RVSE_CNCL_DVSN_CD": kind,
            "ORD_QTY": str(int(qty)),
            "ORD_UNPR": _price(price),
            "QTY_ALL_ORD_YN": "Y" if all_qty else "N",
            "EXCG_ID_DVSN_CD": "KRX",
        }
        return OrderAck.model_validate(self.post_order("stock_modify", body).output())

    def stock_orders(
        self,
        start: date,
        end: date,
        *,
        symbol: str = "",
        filled: str = "00",
        side: str = "00",
        order_no: str = "",
    ) -> list[StockOrder]:
        """Daily orders and fills in [start, end] (TTTC0081R), all pages, oldest first."""
        cano, prdt = self.config.accounts(futures=False)
        rows, _ = self.paged(
            "stock_orders",
            {
                "CANO": cano,
                "ACNT_PRDT_CD": prdt,
                "INQR_STRT_DT": yyyymmdd(start),
                "INQR_END_DT": yyyymmdd(end),
                "SLL_BUY_DVSN_CD": side,
                "CCLD_DVSN": filled,
                "INQR_DVSN": "01",
                "INQR_DVSN_3": "00",
                "PDNO": symbol,
                "ORD_GNO_BRNO": "",
                "ODNO": order_no,
                "INQR_DVSN_1": "",
                "EXCG_ID_DVSN_CD": "KRX",
            },
        )
        return [StockOrder.model_validate(r) for r in rows if str(r.get("odno", "")).strip()]

    def stock_balance(self) -> StockBalance:
        """Holdings and cash (TTTC8434R). ``INQR_DVSN`` is 01: 02 is rejected since 2026-02 (spec §5)."""
        cano, prdt = self.config.accounts(futures=False)
        rows, summary = self.paged(
            "stock_balance",
            {
                "CANO": cano,
                "ACNT_PRDT_CD": prdt,
                "AFHR_FLPR_YN": "N",
                "OFL_YN": "",
                "INQR_DVSN": "01",
                "UNPR_DVSN": "01",
                "FUND_STTL_ICLD_YN": "N",
                "FNCG_AMT_AUTO_RDPT_YN": "N",
                "PRCS_DVSN": "00",
            },
        )
        holdings = [Holding.model_validate(r) for r in rows if str(r.get("pdno", "")).strip()]
        return StockBalance(holdings=holdings, summary=StockBalanceSummary.model_validate(summary))

    def stock_buyable(self, symbol: str, price: float | None = None) -> BuyableAmount:
        """Buyable cash and quantity (TTTC8908R); ORD_DVSN 01 reflects the stock's margin rate (spec §5)."""
        cano, prdt = self.config.accounts(futures=False)
        resp = self.get(
            "stock_buyable",
            {
                "CANO": cano,
                "ACNT_PRDT_CD": prdt,
                "PDNO": symbol,
                "ORD_UNPR": _price(price),
                "ORD_DVSN": "01",
                "CMA_EVLU_AMT_ICLD_YN": "N",
                "OVRS_ICLD_YN": "N",
            },
        )
        return BuyableAmount.model_validate(resp.output())
