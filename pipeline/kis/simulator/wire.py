"""KIS wire format helpers for the simulator: envelopes, string numbers, pagination (spec §3)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

from pipeline.market import InstrumentKind

if TYPE_CHECKING:
    from pipeline.kis.simulator.app import SimState
    from pipeline.kis.simulator.ledger import Ledger
    from pipeline.kis.simulator.matching import Exchange

OK_MSG = ("MCA00000", "정상처리 되었습니다.")
SYDB = ("SYDB0050", "조회이후에 자료가 변경되었습니다.(다시 조회하세요)")
#: KIS sends and expects numbers as plain ASCII digit strings (spec §3): no sign, exponent or "inf".
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_DATE = re.compile(r"[0-9]{8}")
_TIME = re.compile(r"[0-9]{6}")


class Fail(Exception):
    """Answer with a failure envelope (``rt_cd`` != 0) and an HTTP status."""

    def __init__(self, msg_cd: str, msg1: str, *, rt_cd: str = "1", status: int = 200) -> None:
        super().__init__(msg_cd)
        self.body = {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1}
        self.status = status


def invalid(name: str, status: int = 200) -> Fail:
    """KIS's invalid-input answer (OPSQ2001, rt_cd 2, spec §9) naming the field."""
    return Fail("OPSQ2001", f"INPUT INVALID_CHECK_{name}", rt_cd="2", status=status)


#: ACNT_PRDT_CD by account (spec §7): 01 종합 and the 22/29 pension accounts hold stocks; 03 is domestic
#: futures/options. A TR on the other kind of account is invalid input.
STOCK_PRODUCTS = frozenset({"01", "22", "29"})
FUTURES_PRODUCTS = frozenset({"03"})
_CANO = re.compile(r"[0-9]{8}")


def account(ctx: Ctx, products: Collection[str]) -> tuple[str, str]:
    """(CANO, ACNT_PRDT_CD) of a trading TR: 8 digits and a product code of the TR's kind of account."""
    cano, prdt = ctx.get("CANO"), ctx.get("ACNT_PRDT_CD")
    if not _CANO.fullmatch(cano):
        raise invalid("ACNO")
    if prdt not in products:
        raise invalid("ACNT_PRDT_CD")
    return cano, prdt


@dataclass
class Ctx:
    """One routed request: state, the real-form tr_id, whether it came V-prefixed, params and cursor."""

    state: SimState
    tr_id: str
    paper: bool
    params: dict[str, str]
    tr_cont: str
    now: datetime

    @property
    def exchange(self) -> Exchange:
        """The book of the caller's environment: paper keys never see real orders, and back."""
        return self.state.paper_exchange if self.paper else self.state.exchange

    @property
    def ledger(self) -> Ledger:
        """The caller's ledger."""
        return self.exchange.ledger

    def get(self, name: str, default: str = "") -> str:
        """A param, stripped (KIS accepts upper-case keys; GET params are matched case-insensitively)."""
        value = self.params.get(name)
        if value is None:
            value = self.params.get(name.lower(), default)
        return str(value).strip()

    def get_date(self, name: str, default: date) -> date:
        """A YYYYMMDD param (``default`` when empty); anything else is OPSQ2001."""
        text = self.get(name)
        if not text:
            return default
        try:
            if not _DATE.fullmatch(text):
                raise ValueError(text)
            return datetime.strptime(text, "%Y%m%d").date()
        except ValueError:
            raise invalid(name) from None

    def get_time(self, name: str, default: time) -> time:
        """An HHMMSS param (``default`` when empty); anything else is OPSQ2001."""
        text = self.get(name)
        if not text:
            return default
        try:
            if not _TIME.fullmatch(text):
                raise ValueError(text)
            return datetime.strptime(text, "%H%M%S").time()
        except ValueError:
            raise invalid(name) from None

    def get_whole(self, name: str) -> int:
        """A quantity: ASCII digits only (``1.5``, ``1e2``, ``inf``, ``-1`` are OPSQ2001, never rounded)."""
        text = self.get(name)
        if not _WHOLE.fullmatch(text):
            raise invalid(name)
        return int(text)

    def get_price(self, name: str) -> float:
        """A non-negative plain decimal price (no exponent, sign or ``inf``); anything else is OPSQ2001."""
        text = self.get(name)
        if not _DECIMAL.fullmatch(text):
            raise invalid(name)
        return float(text)

    def get_code(self, name: str, allowed: Collection[str]) -> str:
        """A code field that must be one of ``allowed`` (a side, a revise/cancel code, a Y/N flag)."""
        value = self.get(name)
        if value not in allowed:
            raise invalid(name)
        return value


@dataclass
class Result:
    """A success envelope's outputs and the ``tr_cont`` header."""

    outputs: dict[str, Any]
    tr_cont: str = "D"
    msg: tuple[str, str] = OK_MSG
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body: rt_cd/msg_cd/msg1 plus outputs (msg1 padded like KIS does)."""
        return {"rt_cd": "0", "msg_cd": self.msg[0], "msg1": self.msg[1] + "  ", **self.extra, **self.outputs}


Handler = Callable[[Ctx], Result]


def px(value: float, kind: str) -> str:
    """A price as KIS sends it: integer won for stocks and ETFs, two decimals for futures and indices."""
    return str(round(value)) if kind in (InstrumentKind.STOCK, InstrumentKind.ETF) else f"{value:.2f}"


def n(value: float) -> str:
    """An integer quantity or amount as a string."""
    return str(round(value))


def pct(value: float) -> str:
    """A percentage with two decimals."""
    return f"{value:.2f}"


def page(
    ctx: Ctx, rows: list[dict[str, Any]], size: int, ctx_len: str = "100"
) -> tuple[list[dict[str, Any]], str, dict[str, str]]:
    """Slice ``rows`` for 연속조회: CTX_AREA_NK holds the offset; tr_cont M = more, D = last (spec §3).

    A continuation page may answer SYDB0050 when the fault knob is set (spec §9)."""
    fk, nk = f"ctx_area_fk{ctx_len}", f"ctx_area_nk{ctx_len}"
    cursor = ctx.get(nk.upper())
    offset = int(cursor) if ctx.tr_cont == "N" and cursor.isdigit() else 0
    if offset and ctx.state.faults.sydb():
        raise Fail(*SYDB, rt_cd="7")
    chunk = rows[offset : offset + size]
    more = offset + size < len(rows)
    return chunk, ("M" if more else "D"), {fk: "SIM", nk: str(offset + size) if more else ""}
