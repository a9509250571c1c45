"""Typed KIS results: pydantic models keyed by the spec's field names, numbers parsed from strings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _to_float(value: Any) -> float:
    # KIS sends every number as a (sometimes padded, sometimes empty) string (spec §3).
    if value is None:
        return 0.0
    text = str(value).strip().replace(",", "")
    return float(text) if text else 0.0


def _to_price(value: Any) -> float:
    # Bars must never abort a whole fetch over one bad field: an unparsable number becomes NaN and the
    # store's row checks quarantine that bar with its reason.
    try:
        return _to_float(value)
    except ValueError:
        return float("nan")


def _to_int(value: Any) -> int:
    return round(_to_float(value))


def _to_yn(value: Any) -> bool:
    return str(value).strip().upper() == "Y"


def _to_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    return datetime.strptime(text, "%Y%m%d").date() if text else None


def _strip(value: Any) -> str:
    return str(value or "").strip()


KisFloat = Annotated[float, BeforeValidator(_to_float)]
KisPrice = Annotated[float, BeforeValidator(_to_price)]
KisInt = Annotated[int, BeforeValidator(_to_int)]
KisBool = Annotated[bool, BeforeValidator(_to_yn)]
KisDate = Annotated[date | None, BeforeValidator(_to_date)]
KisStr = Annotated[str, BeforeValidator(_strip)]
Side = Literal["buy", "sell"]


class KisModel(BaseModel):
    """Base: read KIS field names (aliases), accept Python names too, ignore fields we do not use."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class Bar(KisModel):
    """One OHLCV bar. ``ts`` is the bar's start in KST (daily bars: midnight of the trading day)."""

    ts: datetime
    open: KisPrice
    high: KisPrice
    low: KisPrice
    close: KisPrice
    volume: KisPrice = 0.0  # NaN when unparsable (quarantined downstream), whole numbers otherwise
    value: KisPrice = 0.0


class StockQuote(KisModel):
    """inquire-price (FHKST01010100) ``output`` (spec §5)."""

    price: KisFloat = Field(alias="stck_prpr")
    change_pct: KisFloat = Field(0.0, alias="prdy_ctrt")
    open: KisFloat = Field(0.0, alias="stck_oprc")
    high: KisFloat = Field(0.0, alias="stck_hgpr")
    low: KisFloat = Field(0.0, alias="stck_lwpr")
    volume: KisInt = Field(0, alias="acml_vol")
    upper_limit: KisFloat = Field(0.0, alias="stck_mxpr")
    lower_limit: KisFloat = Field(0.0, alias="stck_llam")
    base_price: KisFloat = Field(0.0, alias="stck_sdpr")
    tick: KisFloat = Field(0.0, alias="aspr_unit")
    halted: KisBool = Field(False, alias="temp_stop_yn")


class FuturesQuote(KisModel):
    """Futures inquire-price (FHMIF10000000) ``output1`` (spec §6)."""

    price: KisFloat = Field(alias="futs_prpr")
    open: KisFloat = Field(0.0, alias="futs_oprc")
    high: KisFloat = Field(0.0, alias="futs_hgpr")
    low: KisFloat = Field(0.0, alias="futs_lwpr")
    volume: KisInt = Field(0, alias="acml_vol")
    open_interest: KisInt = Field(0, alias="hts_otst_stpl_qty")
    upper_limit: KisFloat = Field(0.0, alias="futs_mxpr")
    lower_limit: KisFloat = Field(0.0, alias="futs_llam")
    basis: KisFloat = Field(0.0, alias="basis")
    theoretical_price: KisFloat = Field(0.0, alias="hts_thpr")
    last_trading_day: KisDate = Field(None, alias="futs_last_tr_date")
    days_to_expiry: KisInt = Field(0, alias="hts_rmnn_dynu")


class IndexQuote(KisModel):
    """Index inquire-index-price (FHPUP02100000) ``output`` [U: not in the spec, from KIS samples]."""

    price: KisFloat = Field(alias="bstp_nmix_prpr")
    change_pct: KisFloat = Field(0.0, alias="bstp_nmix_prdy_ctrt")
    open: KisFloat = Field(0.0, alias="bstp_nmix_oprc")
    high: KisFloat = Field(0.0, alias="bstp_nmix_hgpr")
    low: KisFloat = Field(0.0, alias="bstp_nmix_lwpr")
    volume: KisInt = Field(0, alias="acml_vol")


class OrderAck(KisModel):
    """Order / modify / cancel response ``output``: keep both ids, modify and cancel need them (spec §5)."""

    org_no: KisStr = Field(alias="KRX_FWDG_ORD_ORGNO")
    order_no: KisStr = Field(alias="ODNO")
    time: KisStr = Field("", alias="ORD_TMD")


class StockOrder(KisModel):
    """inquire-daily-ccld ``output1`` row: one order with its fills (spec §5)."""

    order_date: KisDate = Field(alias="ord_dt")
    org_no: KisStr = Field("", alias="ord_gno_brno")
    order_no: KisStr = Field(alias="odno")
    original_order_no: KisStr = Field("", alias="orgn_odno")
    side_code: KisStr = Field(alias="sll_buy_dvsn_cd")
    symbol: KisStr = Field(alias="pdno")
    qty: KisInt = Field(alias="ord_qty")
    price: KisFloat = Field(0.0, alias="ord_unpr")
    time: KisStr = Field("", alias="ord_tmd")
    filled_qty: KisInt = Field(0, alias="tot_ccld_qty")
    avg_fill_price: KisFloat = Field(0.0, alias="avg_prvs")
    remaining_qty: KisInt = Field(0, alias="rmn_qty")
    rejected_qty: KisInt = Field(0, alias="rjct_qty")
    cancelled: KisBool = Field(False, alias="cncl_yn")

    @property
    def side(self) -> Side:
        """``sll_buy_dvsn_cd``: 01 sell, 02 buy."""
        return "sell" if self.side_code == "01" else "buy"


class FuturesOrder(KisModel):
    """Futures inquire-ccnl row (spec §6)."""

    order_date: KisDate = Field(alias="ord_dt")
    org_no: KisStr = Field("", alias="ord_gno_brno")
    order_no: KisStr = Field(alias="odno")
    original_order_no: KisStr = Field("", alias="orgn_odno")
    side_code: KisStr = Field(alias="sll_buy_dvsn_cd")
    symbol: KisStr = Field(alias="pdno")
    qty: KisInt = Field(alias="ord_qty")
    price: KisFloat = Field(0.0, alias="ord_idx")
    remaining_qty: KisInt = Field(0, alias="qty")
    filled_qty: KisInt = Field(0, alias="tot_ccld_qty")
    avg_fill_price: KisFloat = Field(0.0, alias="avg_idx")
    rejected_qty: KisInt = Field(0, alias="rjct_qty")
    time: KisStr = Field("", alias="ord_tmd")

    @property
    def side(self) -> Side:
        """``sll_buy_dvsn_cd``: 01 sell, 02 buy."""
        return "sell" if self.side_code == "01" else "buy"


class Holding(KisModel):
    """Stock inquire-balance ``output1`` row (spec §5)."""

    symbol: KisStr = Field(alias="pdno")
    qty: KisInt = Field(alias="hldg_qty")
    sellable_qty: KisInt = Field(0, alias="ord_psbl_qty")
    avg_price: KisFloat = Field(0.0, alias="pchs_avg_pric")
    cost: KisFloat = Field(0.0, alias="pchs_amt")
    price: KisFloat = Field(0.0, alias="prpr")
    value: KisFloat = Field(0.0, alias="evlu_amt")
    pnl: KisFloat = Field(0.0, alias="evlu_pfls_amt")
    pnl_pct: KisFloat = Field(0.0, alias="evlu_pfls_rt")


class StockBalanceSummary(KisModel):
    """Stock inquire-balance ``output2`` (spec §5)."""

    cash: KisFloat = Field(0.0, alias="dnca_tot_amt")
    cash_d2: KisFloat = Field(0.0, alias="prvs_rcdl_excc_amt")
    total_value: KisFloat = Field(0.0, alias="tot_evlu_amt")
    securities_value: KisFloat = Field(0.0, alias="scts_evlu_amt")
    net_assets: KisFloat = Field(0.0, alias="nass_amt")
    pnl: KisFloat = Field(0.0, alias="evlu_pfls_smtl_amt")


class StockBalance(KisModel):
    """Holdings (all pages) plus the account summary."""

    holdings: list[Holding]
    summary: StockBalanceSummary


class BuyableAmount(KisModel):
    """Stock inquire-psbl-order ``output`` (spec §5)."""

    cash: KisFloat = Field(0.0, alias="ord_psbl_cash")
    amount_no_margin: KisFloat = Field(0.0, alias="nrcvb_buy_amt")
    qty_no_margin: KisInt = Field(0, alias="nrcvb_buy_qty")
    max_amount: KisFloat = Field(0.0, alias="max_buy_amt")
    max_qty: KisInt = Field(0, alias="max_buy_qty")


class FuturesPosition(KisModel):
    """Futures inquire-balance position row (spec §6)."""

    symbol: KisStr = Field(alias="shtn_pdno")
    side_name: KisStr = Field("", alias="sll_buy_dvsn_name")
    qty: KisInt = Field(alias="cblc_qty")
    avg_price: KisFloat = Field(0.0, alias="ccld_avg_unpr1")
    price: KisFloat = Field(0.0, alias="idx_clpr")
    value: KisFloat = Field(0.0, alias="evlu_amt")
    pnl: KisFloat = Field(0.0, alias="evlu_pfls_amt")
    realized_pnl: KisFloat = Field(0.0, alias="trad_pfls_amt")
    closable_qty: KisInt = Field(0, alias="lqd_psbl_qty")

    @property
    def signed_qty(self) -> int:
        """Contracts, negative when short (매도)."""
        return -self.qty if ("매도" in self.side_name or "short" in self.side_name.lower()) else self.qty


class FuturesBalanceSummary(KisModel):
    """Futures inquire-balance summary (spec §6; output1/output2 split [U])."""

    cash: KisFloat = Field(0.0, alias="dnca_cash")
    deposit_total: KisFloat = Field(0.0, alias="tot_dncl_amt")
    margin_total: KisFloat = Field(0.0, alias="mgna_tota")
    orderable_cash: KisFloat = Field(0.0, alias="ord_psbl_cash")
    orderable_total: KisFloat = Field(0.0, alias="ord_psbl_tota")
    pnl: KisFloat = Field(0.0, alias="evlu_pfls_amt_smtl")
    estimated_deposit: KisFloat = Field(0.0, alias="prsm_dpast_amt")
    additional_margin: KisFloat = Field(0.0, alias="add_mgna_tota")


class FuturesBalance(KisModel):
    """Futures positions (all pages) plus the account summary."""

    positions: list[FuturesPosition]
    summary: FuturesBalanceSummary


class FuturesOrderable(KisModel):
    """Futures inquire-psbl-order ``output`` (spec §6)."""

    total_qty: KisInt = Field(0, alias="tot_psbl_qty")
    closable_qty: KisInt = Field(0, alias="lqd_psbl_qty1")
    new_qty: KisInt = Field(0, alias="ord_psbl_qty")
    base_price: KisFloat = Field(0.0, alias="bass_idx")


class HolidayInfo(KisModel):
    """chk-holiday (CTCA0903R) row: use ``is_open`` to decide whether orders can be placed (spec §8)."""

    day: KisDate = Field(alias="bass_dt")
    is_business_day: KisBool = Field(False, alias="bzdy_yn")
    is_trading_day: KisBool = Field(False, alias="tr_day_yn")
    is_open: KisBool = Field(False, alias="opnd_yn")
    is_settlement_day: KisBool = Field(False, alias="sttl_day_yn")
