"""Request and response models of the model server: a window of raw OHLCV bars plus the caller's position
in, one decision out. Every check that needs no model happens here (pydantic → HTTP 400 with the field's
location); checks that need the served model (spec, window length, position) are installed by the
service (:func:`set_model_check`) and run in the same validation, so a bad request fails on its own and
never inside a batch shared with other callers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipeline.config import get_settings
from pipeline.market import TZ_NAME

_KST = ZoneInfo(TZ_NAME)
_SETTINGS = get_settings()
Price = Annotated[float, Field(gt=0, allow_inf_nan=False, description="a finite price > 0")]
Volume = Annotated[float, Field(ge=0, allow_inf_nan=False, description="a finite volume >= 0")]


def field_error(loc: tuple[str | int, ...], kind: str, message: str, value: Any = None) -> ValidationError:
    """A pydantic ValidationError at ``loc``: BentoML answers it with 400 ``{"error", "detail"}``, the
    detail naming the field, as it does for the schema's own checks."""
    error = PydanticCustomError(kind, message)
    return ValidationError.from_exception_data(
        "PredictRequest", [{"type": error, "loc": loc, "input": value}]
    )


class Bar(BaseModel):
    """One OHLCV bar; ``ts`` is its start: ISO 8601 with an offset, or naive meaning KST."""

    model_config = ConfigDict(extra="forbid")

    ts: dt.datetime
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume = 0.0

    @field_validator("ts")
    @classmethod
    def _kst(cls, value: dt.datetime) -> dt.datetime:
        # The pyfunc takes naive KST (MLflow schemas take naive datetimes): convert aware stamps once here.
        return value.astimezone(_KST).replace(tzinfo=None) if value.tzinfo is not None else value

    @model_validator(mode="after")
    def _consistent(self) -> Bar:
        if self.high < self.low:
            raise field_error(("high",), "high_below_low", f"high {self.high} is below low {self.low}")
        for name in ("open", "close"):
            price = getattr(self, name)
            if not self.low <= price <= self.high:
                raise field_error(
                    (name,), "outside_range", f"{name} {price} is outside [low {self.low}, high {self.high}]"
                )
        return self


class PredictRequest(BaseModel):
    """A window of bars of one symbol, oldest first, and the position held now."""

    model_config = ConfigDict(extra="forbid")

    spec: str | None = Field(None, max_length=64, description="model spec, e.g. kospi200f-1d")
    symbol: str | None = Field(
        None, max_length=20, description="symbol; picks the spec that trades it when spec is not given"
    )
    interval: Literal["1d", "1m"] | None = Field(
        None, description="bar interval; tells apart two specs that trade the same symbol"
    )
    bars: list[Bar] = Field(
        min_length=2,
        max_length=_SETTINGS.serving_max_bars,
        description="the window, oldest first; at least the model's required bars",
    )
    position: float | None = Field(
        None,
        allow_inf_nan=False,
        description="current position as a level (contracts for futures, fraction of equity for stocks); "
        "null: the position the replay simulates",
    )
    entry_price: Price | None = Field(None, description="entry price of the position (default: last close)")

    @model_validator(mode="after")
    def _window(self) -> PredictRequest:
        if self.spec is None and self.symbol is None:
            raise field_error(("spec",), "missing", "give spec or symbol (the spec that trades it is used)")
        for i in range(1, len(self.bars)):
            before, now = self.bars[i - 1].ts, self.bars[i].ts
            if now == before:
                raise field_error(("bars", i, "ts"), "duplicate_ts", f"timestamp {now} repeats bars[{i - 1}]")
            if now < before:
                raise field_error(
                    ("bars", i, "ts"), "unsorted_ts", f"timestamp {now} is before bars[{i - 1}] ({before})"
                )
        return _model_check(self) if _model_check is not None else self


class PredictResponse(BaseModel):
    """The decision for the bar after the window's last, and which model made it."""

    spec: str
    symbol: str | None
    model_name: str = Field(description="registered model that answered")
    model_version: str = Field(description="its version (the champion when it answered)")
    timestamp: str = Field(description="the window's last bar (naive KST)")
    action: int
    target_level: float = Field(description="position level the action targets")
    probabilities: list[float] = Field(description="one per action")
    value: float = Field(description="the critic's value (scaled reward units)")
    regime: int | None
    simulated_position: float
    latency_ms: float = Field(description="server-side time of the call")


ModelCheck = Callable[[PredictRequest], PredictRequest]
_model_check: ModelCheck | None = None


def set_model_check(check: ModelCheck | None) -> None:
    """Install the check that needs the served models (known spec or symbol, window length, position);
    it raises :func:`field_error` errors and may fill in ``spec``."""
    global _model_check
    _model_check = check
