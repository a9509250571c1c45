"""KIS wire format helpers for the simulator: envelopes, string numbers, pagination (spec §3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.kis.simulator.app import SimState

OK_MSG = ("MCA00000", "정상처리 되었습니다.")
SYDB = ("SYDB0050", "조회이후에 자료가 변경되었습니다.(다시 조회하세요)")


class Fail(Exception):
    """Answer with a failure envelope (``rt_cd`` != 0) and an HTTP status."""

    def __init__(self, msg_cd: str, msg1: str, *, rt_cd: str = "1", status: int = 200) -> None:
        super().__init__(msg_cd)
        self.body = {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1}
        self.status = status


@dataclass
class Ctx:
    """One routed request: state, the real-form tr_id, whether it came V-prefixed, params and cursor."""

    state: SimState
    tr_id: str
    paper: bool
    params: dict[str, str]
    tr_cont: str
    now: datetime

    def get(self, name: str, default: str = "") -> str:
        """A param, stripped (KIS accepts upper-case keys; GET params are matched case-insensitively)."""
        value = self.params.get(name)
        if value is None:
            value = self.params.get(name.lower(), default)
        return str(value).strip()

    def get_date(self, name: str, default: date) -> date:
        """A YYYYMMDD param."""
        text = self.get(name)
        return datetime.strptime(text, "%Y%m%d").date() if text else default


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
    """A price as KIS sends it: integer won for stocks, two decimals for futures and indices."""
    return str(round(value)) if kind == "stock" else f"{value:.2f}"


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
