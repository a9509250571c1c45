"""KIS REST endpoints: method, path and tr_id per function, and the VTS tr_id rule (spec §3, §5, §6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

STOCK = "/uapi/domestic-stock/v1"
FUTURES = "/uapi/domestic-futureoption/v1"
TOKEN_PATH = "/oauth2/tokenP"
REVOKE_PATH = "/oauth2/revokeP"
#: Order tamper protection (spec §2): POST the exact order JSON, send the answer's ``HASH`` as the order's
#: ``hashkey`` header. Optional at KIS today; the call counts against the rate limit.
HASHKEY_PATH = "/uapi/hashkey"


@dataclass(frozen=True)
class Endpoint:
    """One KIS transaction. ``real_only`` TRs have no VTS tr_id (spec tables, marked [U] there)."""

    method: Literal["GET", "POST"]
    path: str
    tr_id: str
    real_only: bool = False

    def tr_id_for(self, paper: bool) -> str:
        """The tr_id to send: on VTS a leading T, J or C becomes V (spec §3); quote TRs are unchanged."""
        if paper and self.tr_id[:1] in ("T", "J", "C"):
            return "V" + self.tr_id[1:]
        return self.tr_id


ENDPOINTS: dict[str, Endpoint] = {
    # --- stocks (spec §5) ---
    "stock_price": Endpoint("GET", f"{STOCK}/quotations/inquire-price", "FHKST01010100"),
    "stock_daily": Endpoint("GET", f"{STOCK}/quotations/inquire-daily-itemchartprice", "FHKST03010100"),
    "stock_minute_today": Endpoint("GET", f"{STOCK}/quotations/inquire-time-itemchartprice", "FHKST03010200"),
    "stock_minute_past": Endpoint(
        "GET", f"{STOCK}/quotations/inquire-time-dailychartprice", "FHKST03010230", real_only=True
    ),
    "stock_buy": Endpoint("POST", f"{STOCK}/trading/order-cash", "TTTC0012U"),
    "stock_sell": Endpoint("POST", f"{STOCK}/trading/order-cash", "TTTC0011U"),
    "stock_modify": Endpoint("POST", f"{STOCK}/trading/order-rvsecncl", "TTTC0013U"),
    "stock_orders": Endpoint("GET", f"{STOCK}/trading/inquire-daily-ccld", "TTTC0081R"),
    "stock_balance": Endpoint("GET", f"{STOCK}/trading/inquire-balance", "TTTC8434R"),
    "stock_buyable": Endpoint("GET", f"{STOCK}/trading/inquire-psbl-order", "TTTC8908R"),
    "holiday": Endpoint("GET", f"{STOCK}/quotations/chk-holiday", "CTCA0903R", real_only=True),
    # --- indices [U: tr_ids from KIS samples] ---
    "index_price": Endpoint("GET", f"{STOCK}/quotations/inquire-index-price", "FHPUP02100000"),
    "index_daily": Endpoint("GET", f"{STOCK}/quotations/inquire-daily-indexchartprice", "FHKUP03500100"),
    # --- KOSPI200 futures (spec §6) ---
    "futures_price": Endpoint("GET", f"{FUTURES}/quotations/inquire-price", "FHMIF10000000"),
    "futures_daily": Endpoint("GET", f"{FUTURES}/quotations/inquire-daily-fuopchartprice", "FHKIF03020100"),
    "futures_minute": Endpoint("GET", f"{FUTURES}/quotations/inquire-time-fuopchartprice", "FHKIF03020200"),
    "futures_order": Endpoint("POST", f"{FUTURES}/trading/order", "TTTO1101U"),
    "futures_modify": Endpoint("POST", f"{FUTURES}/trading/order-rvsecncl", "TTTO1103U"),
    "futures_orders": Endpoint("GET", f"{FUTURES}/trading/inquire-ccnl", "TTTO5201R"),
    "futures_balance": Endpoint("GET", f"{FUTURES}/trading/inquire-balance", "CTFO6118R"),
    "futures_orderable": Endpoint("GET", f"{FUTURES}/trading/inquire-psbl-order", "TTTO5105R"),
}

#: Rows per call of the chart TRs (spec §5, §6): the client walks cursors by these sizes.
DAILY_ROWS = 100
MINUTE_TODAY_ROWS = 30
MINUTE_PAST_ROWS = 120
FUTURES_MINUTE_ROWS = 102
#: How far back KIS serves minute bars: "up to about 1 year" (spec §5, inquire-time-dailychartprice). The
#: spec gives no figure for futures minute bars [U]: the same year is assumed.
MINUTE_RETENTION_DAYS = 365
