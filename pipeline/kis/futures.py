"""KOSPI200 futures TRs: quotes, charts, orders, fills, balance, orderable quantity (spec §6)."""

from __future__ import annotations

from datetime import date, datetime, time

from pipeline.kis.charts import (
    FUTURES_DAILY,
    FUTURES_MINUTE,
    hhmmss,
    to_bar,
    walk_daily,
    walk_minutes,
    yyyymmdd,
)
from pipeline.kis.endpoints import DAILY_ROWS
from pipeline.kis.models import (
    Bar,
    FuturesBalance,
    FuturesBalanceSummary,
    FuturesOrder,
    FuturesOrderable,
    FuturesPosition,
    FuturesQuote,
    OrderAck,
    Side,
)
from pipeline.kis.session import KisSession
from pipeline.market import InstrumentKind, session_hours

FUTURES_HOURS = session_hours(InstrumentKind.FUTURES)


def _index_price(price: float | None) -> str:
    return "0" if price is None else f"{price:.2f}"


class FuturesApi(KisSession):
    """Typed wrappers around the index-futures TRs (market division ``F``)."""

    def futures_price(self, code: str) -> FuturesQuote:
        """Current price (FHMIF10000000), ``output1``."""
        resp = self.get("futures_price", {"FID_COND_MRKT_DIV_CODE": "F", "FID_INPUT_ISCD": code})
        return FuturesQuote.model_validate(resp.output("output1"))

    def futures_daily_bars(self, code: str, start: date, end: date, period: str = "D") -> list[Bar]:
        """Daily bars of one contract in [start, end], 100 rows per call (FHKIF03020100)."""

        def fetch(lo: date, hi: date) -> list[Bar]:
            resp = self.get(
                "futures_daily",
                {
                    "FID_COND_MRKT_DIV_CODE": "F",
                    "FID_INPUT_ISCD": code,
                    "FID_INPUT_DATE_1": yyyymmdd(lo),
                    "FID_INPUT_DATE_2": yyyymmdd(hi),
                    "FID_PERIOD_DIV_CODE": period,
                },
            )
            return [b for b in (to_bar(r, FUTURES_DAILY) for r in resp.rows("output2")) if b]

        return walk_daily(fetch, start, end, DAILY_ROWS, self.config.max_pages)

    def futures_minute_bars(
        self, code: str, day: date, until: time = FUTURES_HOURS.close, interval_s: int = 60
    ) -> list[Bar]:
        """One day's minute (or 30 s) bars, 102 rows per call, moving the date/time cursor (FHKIF03020200)."""

        def fetch(cursor: datetime) -> list[Bar]:
            resp = self.get(
                "futures_minute",
                {
                    "FID_COND_MRKT_DIV_CODE": "F",
                    "FID_INPUT_ISCD": code,
                    "FID_HOUR_CLS_CODE": str(interval_s),
                    "FID_PW_DATA_INCU_YN": "Y",
                    "FID_FAKE_TICK_INCU_YN": "N",
                    "FID_INPUT_DATE_1": yyyymmdd(day),
                    "FID_INPUT_HOUR_1": hhmmss(cursor),
                },
            )
            return [b for b in (to_bar(r, FUTURES_MINUTE) for r in resp.rows("output2")) if b]

        return walk_minutes(fetch, day, FUTURES_HOURS.open, until, self.config.max_pages)

    def futures_order(self, code: str, side: Side, qty: int, price: float | None = None) -> OrderAck:
        """Day-session order: market (NMPR_TYPE_CD 02) when ``price`` is None, else limit. Never retried
        blindly."""
        cano, prdt = self.config.accounts(futures=True)
        kind = "02" if price is None else "01"
        body = {
            "ORD_PRCS_DVSN_CD": "02",
            "CANO": cano,
            "ACNT_PRDT_CD": prdt,
            "SLL_BUY_DVSN_CD": "01" if side == "sell" else "02",
            "SHTN_PDNO": code,
            "ORD_QTY": str(int(qty)),
            "UNIT_PRICE": _index_price(price),
            "NMPR_TYPE_CD": kind,
            "KRX_NMPR_CNDT_CD": "0",
            "ORD_DVSN_CD": kind,
            "CTAC_TLNO": "",
            "FUOP_ITEM_DVSN_CD": "",
        }
        return OrderAck.model_validate(self.post_order("futures_order", body).output())

    def futures_modify(
        self, org_no: str, order_no: str, qty: int, price: float | None, all_qty: bool = False
    ) -> OrderAck:
        """Modify the unfilled part of a futures order (RVSE_CNCL_DVSN_CD 01)."""
        return self._futures_revise(org_no, order_no, "01", qty, price, all_qty)

    def futures_cancel(self, org_no: str, order_no: str) -> OrderAck:
        """Cancel everything unfilled: ORD_QTY 0, UNIT_PRICE 0, RMN_QTY_YN Y (spec §6)."""
        return self._futures_revise(org_no, order_no, "02", 0, None, True)

    def _futures_revise(
        self, org_no: str, order_no: str, kind: str, qty: int, price: float | None, all_qty: bool
    ) -> OrderAck:
        cano, prdt = self.config.accounts(futures=True)
        nmpr = "02" if price is None else "01"
        body = {
            "ORD_PRCS_DVSN_CD": "02",
            "CANO": cano,
            "ACNT_PRDT_CD": prdt,
            "RVSE_CNCL_DVSN_CD": kind,
            "ORGN_ODNO": order_no,
            "KRX_FWDG_ORD_ORGNO": org_no,
            "ORD_QTY": str(int(qty)),
            "UNIT_PRICE": _index_price(price),
            "NMPR_TYPE_CD": nmpr,
            "KRX_NMPR_CNDT_CD": "0",
            "RMN_QTY_YN": "Y" if all_qty else "N",
            "ORD_DVSN_CD": nmpr,
        }
        return OrderAck.model_validate(self.post_order("futures_modify", body).output())

    def futures_orders(
        self, start: date, end: date, *, code: str = "", filled: str = "00"
    ) -> list[FuturesOrder]:
        """Orders and fills in [start, end] (TTTO5201R), all pages (FK200/NK200), oldest first."""
        cano, prdt = self.config.accounts(futures=True)
        rows, _ = self.paged(
            "futures_orders",
            {
                "CANO": cano,
                "ACNT_PRDT_CD": prdt,
                "STRT_ORD_DT": yyyymmdd(start),
                "END_ORD_DT": yyyymmdd(end),
                "SLL_BUY_DVSN_CD": "00",
                "CCLD_NCCS_DVSN": filled,
                "SORT_SQN": "AS",
                "STRT_ODNO": "",
                "PDNO": code,
                "MKET_ID_CD": "",
            },
            ctx="200",
        )
        return [FuturesOrder.model_validate(r) for r in rows if str(r.get("odno", "")).strip()]

    def futures_balance(self) -> FuturesBalance:
        """Positions and deposit/margin summary (CTFO6118R), all pages."""
        cano, prdt = self.config.accounts(futures=True)
        rows, summary = self.paged(
            "futures_balance",
            {
                "CANO": cano,
                "ACNT_PRDT_CD": prdt,
                "MGNA_DVSN": "01",
                "EXCC_STAT_CD": "1",
            },
            ctx="200",
        )
        positions = [FuturesPosition.model_validate(r) for r in rows if str(r.get("shtn_pdno", "")).strip()]
        return FuturesBalance(positions=positions, summary=FuturesBalanceSummary.model_validate(summary))

    def futures_orderable(self, code: str, side: Side, price: float | None = None) -> FuturesOrderable:
        """Orderable contracts for a new order on ``side`` (TTTO5105R)."""
        cano, prdt = self.config.accounts(futures=True)
        resp = self.get(
            "futures_orderable",
            {
                "CANO": cano,
                "ACNT_PRDT_CD": prdt,
                "PDNO": code,
                "SLL_BUY_DVSN_CD": "01" if side == "sell" else "02",
                "UNIT_PRICE": _index_price(price),
                "ORD_DVSN_CD": "02" if price is None else "01",
            },
        )
        return FuturesOrderable.model_validate(resp.output())
