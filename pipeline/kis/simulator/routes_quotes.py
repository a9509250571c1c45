"""Simulator quote TRs: current price, daily and minute charts for stocks, futures and indices, holidays.

Paths and tr_ids are transcribed from the spec (§5, §6) independently of the client's table on purpose:
the client's tests then cross-check both."""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Any

from pipeline.kis.simulator import marketgen as mg
from pipeline.kis.simulator.market import DayBar, MinuteBar, Snapshot
from pipeline.kis.simulator.matching import UNKNOWN_SYMBOL
from pipeline.kis.simulator.wire import Ctx, Fail, Handler, Result, n, pct, px
from pipeline.market import INDEX_CODES, InstrumentKind

S = "/uapi/domestic-stock/v1/quotations"
F = "/uapi/domestic-futureoption/v1/quotations"
STOCKS = (InstrumentKind.STOCK, InstrumentKind.ETF)
FUTURES = (InstrumentKind.FUTURES,)
INDICES = (InstrumentKind.INDEX,)


def _instrument(ctx: Ctx, want: tuple[InstrumentKind, ...]) -> tuple[str, InstrumentKind]:
    symbol = ctx.get("FID_INPUT_ISCD")
    kind = ctx.state.market.kind_of(symbol)
    if kind is None or kind not in want:
        raise Fail(*UNKNOWN_SYMBOL)
    return symbol, kind


def _snapshot(ctx: Ctx, symbol: str, kind: InstrumentKind) -> Snapshot:
    snap = ctx.state.market.snapshot(symbol, kind, ctx.now)
    if snap is None:
        raise Fail(*UNKNOWN_SYMBOL)
    return snap


def _change(snap: Snapshot) -> tuple[float, float, str]:
    diff = snap.bar.close - snap.prev_close
    sign = "2" if diff > 0 else ("5" if diff < 0 else "3")  # KIS prdy_vrss_sign: 2 up, 3 flat, 5 down
    return diff, (diff / snap.prev_close * 100 if snap.prev_close else 0.0), sign


def stock_price(ctx: Ctx) -> Result:
    """FHKST01010100 inquire-price ``output``."""
    symbol, kind = _instrument(ctx, STOCKS)
    snap = _snapshot(ctx, symbol, kind)
    diff, rate, sign = _change(snap)
    b = snap.bar
    return Result(
        {
            "output": {
                "stck_shrn_iscd": symbol,
                "stck_prpr": px(b.close, kind),
                "prdy_vrss": px(diff, kind),
                "prdy_vrss_sign": sign,
                "prdy_ctrt": pct(rate),
                "stck_oprc": px(b.open, kind),
                "stck_hgpr": px(b.high, kind),
                "stck_lwpr": px(b.low, kind),
                "acml_vol": n(b.volume),
                "acml_tr_pbmn": n(b.volume * b.close),
                "stck_mxpr": px(snap.upper, kind),
                "stck_llam": px(snap.lower, kind),
                "stck_sdpr": px(snap.prev_close, kind),
                "aspr_unit": n(snap.tick),
                "temp_stop_yn": "N",
                "vi_cls_code": "N",
            }
        }
    )


def _daily_rows(
    ctx: Ctx, symbol: str, kind: InstrumentKind, fields: tuple[str, str, str, str]
) -> list[dict[str, Any]]:
    end = ctx.get_date("FID_INPUT_DATE_2", ctx.now.date())
    start = ctx.get_date("FID_INPUT_DATE_1", end - timedelta(days=200))
    bars = ctx.state.market.daily_bars(symbol, kind, start, end, ctx.now)
    newest = list(reversed(bars))[:100]  # at most 100 rows per call, newest first (spec §5)
    return [_daily_row(b, kind, fields) for b in newest]


def _daily_row(b: DayBar, kind: InstrumentKind, fields: tuple[str, str, str, str]) -> dict[str, Any]:
    o, h, lo, c = fields
    return {
        "stck_bsop_date": b.day.strftime("%Y%m%d"),
        o: px(b.open, kind),
        h: px(b.high, kind),
        lo: px(b.low, kind),
        c: px(b.close, kind),
        "acml_vol": n(b.volume),
        "acml_tr_pbmn": n(b.volume * b.close),
        "flng_cls_code": "00",
        "mod_yn": "N",
    }


def stock_daily(ctx: Ctx) -> Result:
    """FHKST03010100 daily chart: ``output1`` snapshot, ``output2`` up to 100 rows."""
    symbol, kind = _instrument(ctx, STOCKS)
    rows = _daily_rows(ctx, symbol, kind, ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_clpr"))
    return Result({"output1": stock_price(ctx).outputs["output"], "output2": rows})


def _minute_row(b: MinuteBar, kind: InstrumentKind, fields: tuple[str, str, str, str]) -> dict[str, Any]:
    o, h, lo, c = fields
    return {
        "stck_bsop_date": b.start.strftime("%Y%m%d"),
        "stck_cntg_hour": b.start.strftime("%H%M%S"),
        o: px(b.open, kind),
        h: px(b.high, kind),
        lo: px(b.low, kind),
        c: px(b.close, kind),
        "cntg_vol": n(b.volume),
        "acml_tr_pbmn": n(b.volume * b.close),
    }


def _cursor(ctx: Ctx) -> time:
    return ctx.get_time("FID_INPUT_HOUR_1", time(23, 59, 59))


def _oldest(ctx: Ctx) -> date:
    """The oldest day whose minute bars KIS still serves (spec §5: about a year)."""
    return ctx.now.date() - timedelta(days=ctx.state.cfg.minute_retention_days)


_STOCK_MINUTE = ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_prpr")
_FUT_FIELDS = ("futs_oprc", "futs_hgpr", "futs_lwpr", "futs_prpr")


def stock_minute_today(ctx: Ctx) -> Result:
    """FHKST03010200: today only, 30 rows back from the cursor; a future cursor gives the current bar."""
    symbol, kind = _instrument(ctx, STOCKS)
    bars = ctx.state.market.minutes_back(
        symbol, kind, ctx.now.date(), _cursor(ctx), ctx.now, 30, oldest=_oldest(ctx)
    )
    return Result(
        {
            "output1": stock_price(ctx).outputs["output"],
            "output2": [_minute_row(b, kind, _STOCK_MINUTE) for b in bars],
        }
    )


def stock_minute_past(ctx: Ctx) -> Result:
    """FHKST03010230: one date's minute bars, 120 rows back from the cursor."""
    symbol, kind = _instrument(ctx, STOCKS)
    day = ctx.get_date("FID_INPUT_DATE_1", ctx.now.date())
    bars = ctx.state.market.minutes_back(symbol, kind, day, _cursor(ctx), ctx.now, 120, oldest=_oldest(ctx))
    return Result(
        {
            "output1": stock_price(ctx).outputs["output"],
            "output2": [_minute_row(b, kind, _STOCK_MINUTE) for b in bars],
        }
    )


def futures_price(ctx: Ctx) -> Result:
    """FHMIF10000000: ``output1`` futures, ``output3`` the KOSPI200 index."""
    symbol, kind = _instrument(ctx, FUTURES)
    snap = _snapshot(ctx, symbol, kind)
    diff, rate, sign = _change(snap)
    b = snap.bar
    last_day = mg.front_month(ctx.now.date())[1] if symbol == mg.front_month(ctx.now.date())[0] else None
    index = ctx.state.market.snapshot(INDEX_CODES["KOSPI200"], InstrumentKind.INDEX, ctx.now)
    out1 = {
        "hts_kor_isnm": "KOSPI200 F",
        "futs_prpr": px(b.close, kind),
        "futs_prdy_vrss": px(diff, kind),
        "prdy_vrss_sign": sign,
        "futs_prdy_ctrt": pct(rate),
        "futs_oprc": px(b.open, kind),
        "futs_hgpr": px(b.high, kind),
        "futs_lwpr": px(b.low, kind),
        "acml_vol": n(b.volume),
        "hts_otst_stpl_qty": n(200_000 + b.volume // 10),
        "futs_mxpr": px(snap.upper, kind),
        "futs_llam": px(snap.lower, kind),
        "futs_sdpr": px(snap.prev_close, kind),
        "basis": pct(b.close - index.bar.close) if index else "0.00",
        "hts_thpr": px(b.close, kind),
        "futs_last_tr_date": last_day.strftime("%Y%m%d") if last_day else "",
        "hts_rmnn_dynu": n((last_day - ctx.now.date()).days) if last_day else "0",
    }
    out3 = {"bstp_nmix_prpr": pct(index.bar.close)} if index else {}
    return Result({"output1": out1, "output2": {}, "output3": out3})


def futures_daily(ctx: Ctx) -> Result:
    """FHKIF03020100 daily chart, 100 rows per call."""
    symbol, kind = _instrument(ctx, FUTURES)
    rows = _daily_rows(ctx, symbol, kind, _FUT_FIELDS)
    for row in rows:
        row.pop("flng_cls_code", None)
    return Result({"output1": futures_price(ctx).outputs["output1"], "output2": rows})


def futures_minute(ctx: Ctx) -> Result:
    """FHKIF03020200: 102 rows back from the date/time cursor; crosses into past days when PW_DATA=Y."""
    symbol, kind = _instrument(ctx, FUTURES)
    day = ctx.get_date("FID_INPUT_DATE_1", ctx.now.date())
    cross = ctx.get("FID_PW_DATA_INCU_YN", "Y") == "Y"
    bars = ctx.state.market.minutes_back(
        symbol, kind, day, _cursor(ctx), ctx.now, 102, oldest=_oldest(ctx), cross_days=cross
    )
    return Result(
        {
            "output1": futures_price(ctx).outputs["output1"],
            "output2": [_minute_row(b, kind, _FUT_FIELDS) for b in bars],
        }
    )


_INDEX_FIELDS = ("bstp_nmix_oprc", "bstp_nmix_hgpr", "bstp_nmix_lwpr", "bstp_nmix_prpr")


def index_price(ctx: Ctx) -> Result:
    """FHPUP02100000 index level [U]."""
    symbol, kind = _instrument(ctx, INDICES)
    snap = _snapshot(ctx, symbol, kind)
    diff, rate, sign = _change(snap)
    b = snap.bar
    return Result(
        {
            "output": {
                "bstp_nmix_prpr": pct(b.close),
                "bstp_nmix_prdy_vrss": pct(diff),
                "prdy_vrss_sign": sign,
                "bstp_nmix_prdy_ctrt": pct(rate),
                "acml_vol": n(b.volume),
                "acml_tr_pbmn": n(b.volume * 1000),
                "bstp_nmix_oprc": pct(b.open),
                "bstp_nmix_hgpr": pct(b.high),
                "bstp_nmix_lwpr": pct(b.low),
            }
        }
    )


def index_daily(ctx: Ctx) -> Result:
    """FHKUP03500100 daily index chart, 100 rows per call [U]."""
    symbol, kind = _instrument(ctx, INDICES)
    rows = _daily_rows(ctx, symbol, kind, _INDEX_FIELDS)
    return Result({"output1": index_price(ctx).outputs["output"], "output2": rows})


def holiday(ctx: Ctx) -> Result:
    """CTCA0903R: the base date and following days with business/trading/open/settlement flags."""
    start = ctx.get_date("BASS_DT", ctx.now.date())
    rows = []
    for i in range(20):
        day: date = start + timedelta(days=i)
        flag = "Y" if ctx.state.market.is_trading_day(day) else "N"
        rows.append(
            {
                "bass_dt": day.strftime("%Y%m%d"),
                "wday_dvsn_cd": f"{day.isoweekday() % 7 + 1:02d}",
                "bzdy_yn": "Y" if day.weekday() < 5 else "N",
                "tr_day_yn": flag,
                "opnd_yn": flag,
                "sttl_day_yn": flag,
            }
        )
    return Result({"output": rows}, extra={"ctx_area_fk": "", "ctx_area_nk": ""})


QUOTE_ROUTES: list[tuple[str, str, str, Handler]] = [
    ("GET", "/uapi/domestic-stock/v1/quotations/inquire-price", "FHKST01010100", stock_price),
    ("GET", f"{S}/inquire-daily-itemchartprice", "FHKST03010100", stock_daily),
    ("GET", f"{S}/inquire-time-itemchartprice", "FHKST03010200", stock_minute_today),
    ("GET", f"{S}/inquire-time-dailychartprice", "FHKST03010230", stock_minute_past),
    ("GET", f"{S}/inquire-index-price", "FHPUP02100000", index_price),
    ("GET", f"{S}/inquire-daily-indexchartprice", "FHKUP03500100", index_daily),
    ("GET", f"{S}/chk-holiday", "CTCA0903R", holiday),
    ("GET", f"{F}/inquire-price", "FHMIF10000000", futures_price),
    ("GET", f"{F}/inquire-daily-fuopchartprice", "FHKIF03020100", futures_daily),
    ("GET", f"{F}/inquire-time-fuopchartprice", "FHKIF03020200", futures_minute),
]
