"""Model specs as data: what a registered model trades and how it is trained, with overrides from settings
and from a DAG run's params, validated with errors that name the field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.backtest.walkforward import WalkForwardConfig
from pipeline.config import Settings, get_settings
from pipeline.market import InstrumentKind, session_hours, validate_symbol
from pipeline.regimes.model import RegimeConfig
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import instrument_spec

#: Prefix of every registered model (and experiment) name: ``krx-a3c-<spec>``.
MODEL_PREFIX = "krx-a3c-"
#: Trading days per year (annualisation of daily metrics).
TRADING_DAYS = 252
#: TrainConfig fields a spec sets itself; hyper-parameter overrides may not set them a second way.
_SPEC_OWNED = frozenset(
    {"seed", "mode", "n_workers", "total_steps", "max_seconds", "feature_set", "progress", "env.levels"}
)


class SpecError(ValueError):
    """A model spec (or an override of one) that is invalid; the message names the spec and the field."""


class ModelSpec(BaseModel):
    """One registered model: what it trades (symbols, interval, kind, levels) and how it is trained."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    """Spec name; the registered model is ``krx-a3c-<name>``."""
    symbols: tuple[str, ...] = Field(min_length=1)
    """Symbols trained on: one series, or a universe that one agent serves (``stocks-1d``)."""
    interval: Literal["1d", "1m"] = "1d"
    """Bar interval of the training data and of the windows the served model receives."""
    kind: InstrumentKind = InstrumentKind.STOCK
    """Instrument kind: ``futures`` trade short/flat/long contracts, ``stock``/``etf`` flat/long."""
    levels: tuple[float, ...] | None = None
    """Target position per action; None: ``(-1, 0, 1)`` contracts for futures, ``(0, 1)`` for stocks."""
    total_steps: int | None = Field(200_000, ge=1)
    """Training budget in env steps per seed (None: only ``max_seconds``)."""
    max_seconds: float | None = Field(None, gt=0)
    """Training budget in wall-clock seconds per seed (None: only ``total_steps``)."""
    mode: Literal["async", "sync"] = "async"
    """A3C over worker processes (``async``) or round-robin in one process (``sync``, deterministic)."""
    n_workers: int = Field(2, ge=1)
    """A3C worker processes per seed."""
    seeds: tuple[int, ...] = Field((0, 1, 2), min_length=1)
    """Agent seeds (the design asks for at least 3 in demos, 5 in full runs)."""
    n_folds: int = Field(3, ge=1)
    """Walk-forward folds."""
    val_size: int = Field(126, ge=2)
    """Bars per validation block."""
    test_size: int = Field(126, ge=2)
    """Bars per test block."""
    embargo: int = Field(5, ge=0)
    """Bars dropped between train, validation and test blocks."""
    min_train_size: int = Field(500, ge=10)
    """Fewest training bars a fold may have."""
    feature_set: str = "ta-v1"
    """Feature builder name (``pipeline.features.FEATURE_SETS``)."""
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    """TrainConfig overrides by dotted name (``learning_rate``, ``env.window``, ``regimes.k_max`` …)."""

    @field_validator("symbols", "seeds", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # DAG params and env vars: "a,b" or a JSON list
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [s.strip() for s in text.split(",") if s]
        return value

    @field_validator("symbols")
    @classmethod
    def _valid_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_symbol(s) for s in value)

    @field_validator("kind")
    @classmethod
    def _tradable(cls, value: InstrumentKind) -> InstrumentKind:
        if value is InstrumentKind.INDEX:
            raise ValueError("an index is not tradable: train on its futures or an ETF")
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _known_hyperparameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = _train_config_fields()
        for key in value:
            if key in _SPEC_OWNED:
                raise ValueError(f"{key!r} is set by the spec itself, not by a hyper-parameter override")
            if key not in known:
                raise ValueError(f"unknown hyper-parameter {key!r}; known: {sorted(known - _SPEC_OWNED)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.total_steps is None and self.max_seconds is None:
            raise ValueError("a training budget is needed: set total_steps or max_seconds")
        try:
            self.train_config()  # TrainConfig/EnvConfig checks (levels of the kind, windows …) fail here
        except TypeError as exc:  # a wrongly typed override ("learning_rate": "fast") is the user's error
            raise ValueError(f"hyperparameters: {exc}") from None
        return self

    # ---- derived --------------------------------------------------------------------------------------
    @property
    def registered_model_name(self) -> str:
        """Name of the registered model (and of its MLflow experiment)."""
        return f"{MODEL_PREFIX}{self.name}"

    @property
    def resolved_levels(self) -> tuple[float, ...]:
        """The levels, defaulted by kind."""
        if self.levels is not None:
            return self.levels
        return (-1.0, 0.0, 1.0) if self.kind.tradable_long_short else (0.0, 1.0)

    @property
    def periods_per_year(self) -> float:
        """Bars per year for annualised metrics: trading days, times session minutes for 1-minute bars."""
        if self.interval == "1d":
            return float(TRADING_DAYS)
        hours = session_hours(self.kind)
        day = dt.date(2000, 1, 3)
        minutes = (dt.datetime.combine(day, hours.close) - dt.datetime.combine(day, hours.open)).seconds / 60
        return float(TRADING_DAYS * minutes)

    def train_config(self, seed: int | None = None) -> TrainConfig:
        """The TrainConfig of this spec (first seed unless ``seed``), hyper-parameter overrides applied."""
        top: dict[str, Any] = {}
        env: dict[str, Any] = {}
        regimes: dict[str, Any] = {}
        for key, value in self.hyperparameters.items():
            group, _, field = key.rpartition(".")
            {"": top, "env": env, "regimes": regimes}[group][field] = value
        env_config = EnvConfig(instrument=instrument_spec(self.kind), levels=self.resolved_levels, **env)
        return TrainConfig(
            seed=self.seeds[0] if seed is None else seed,
            mode=self.mode,
            n_workers=self.n_workers,
            total_steps=self.total_steps,
            max_seconds=self.max_seconds,
            feature_set=self.feature_set,
            progress=False,
            env=env_config,
            regimes=RegimeConfig(**regimes),
            **top,
        )

    def walkforward_config(self) -> WalkForwardConfig:
        """The walk-forward folds and seeds of this spec."""
        return WalkForwardConfig(
            n_folds=self.n_folds,
            val_size=self.val_size,
            test_size=self.test_size,
            embargo=self.embargo,
            min_train_size=self.min_train_size,
            seeds=self.seeds,
            periods_per_year=self.periods_per_year,
        )


def _train_config_fields() -> set[str]:
    top = {f.name for f in dataclasses.fields(TrainConfig) if f.name not in {"env", "regimes"}}
    env = {f"env.{f.name}" for f in dataclasses.fields(EnvConfig) if f.name != "instrument"}
    regimes = {f"regimes.{f.name}" for f in dataclasses.fields(RegimeConfig)}
    return top | env | regimes


def default_specs(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Built-in specs as plain data: daily KOSPI200 futures, the daily stock universe, 1-minute futures."""
    s = settings or get_settings()
    futures = {"symbols": [s.futures_symbol], "kind": InstrumentKind.FUTURES.value}
    return {
        "kospi200f-1d": {"name": "kospi200f-1d", "interval": "1d", **futures},
        "stocks-1d": {
            "name": "stocks-1d",
            "interval": "1d",
            "symbols": list(s.stock_symbols),
            "kind": InstrumentKind.STOCK.value,
        },
        "kospi200f-1m": {
            "name": "kospi200f-1m",
            "interval": "1m",
            **futures,
            # One session of 1-minute futures bars is 420 bars: validate and test on ~5 sessions each.
            "val_size": 2_100,
            "test_size": 2_100,
            "embargo": 60,
            "min_train_size": 8_400,
        },
    }


def spec_names(settings: Settings | None = None) -> list[str]:
    """Names of every spec: the built-in ones and those the settings define."""
    s = settings or get_settings()
    return sorted({*default_specs(s), *s.model_specs})


def resolve_spec(
    name: str, settings: Settings | None = None, params: dict[str, Any] | None = None
) -> ModelSpec:
    """Spec ``name``: built-in defaults, then ``settings.model_specs[name]``, then ``params`` (a DAG run's
    params; None values mean "not given"). Raises :class:`SpecError` naming the offending field."""
    s = settings or get_settings()
    base = default_specs(s).get(name)
    override = s.model_specs.get(name)
    if base is None and override is None:
        raise SpecError(f"unknown model spec {name!r}; known: {spec_names(s)}")
    data: dict[str, Any] = {**(base or {}), **(override or {}), "name": name}
    given = {k: v for k, v in (params or {}).items() if v is not None}
    if "hyperparameters" in given and isinstance(given["hyperparameters"], str):
        given["hyperparameters"] = json.loads(given["hyperparameters"])
    data.update(given)
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"model spec {name!r}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
