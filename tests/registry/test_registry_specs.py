"""Model specs as data: built-in defaults, settings and DAG-param overrides, errors that name the field."""

from __future__ import annotations

import json

import pytest

from pipeline.config import get_settings
from pipeline.market import InstrumentKind
from pipeline.registry.specs import SpecError, resolve_spec, spec_names


def test_the_three_default_specs_trade_futures_and_the_stock_universe() -> None:
    settings = get_settings()
    daily = resolve_spec("kospi200f-1d")
    stocks = resolve_spec("stocks-1d")
    minute = resolve_spec("kospi200f-1m")
    assert daily.symbols == (settings.futures_symbol,) and daily.interval == "1d"
    assert daily.kind is InstrumentKind.FUTURES and daily.resolved_levels == (-1.0, 0.0, 1.0)
    assert stocks.symbols == tuple(settings.stock_symbols) and stocks.resolved_levels == (0.0, 1.0)
    assert minute.interval == "1m" and minute.symbols == daily.symbols
    assert daily.registered_model_name == "krx-a3c-kospi200f-1d"
    assert {"kospi200f-1d", "stocks-1d", "kospi200f-1m"} <= set(spec_names())


def test_a_futures_spec_trains_short_flat_long_contracts_and_a_stock_spec_flat_long() -> None:
    futures = resolve_spec("kospi200f-1d").train_config()
    stocks = resolve_spec("stocks-1d").train_config()
    assert futures.env.instrument.allow_short and futures.env.levels == (-1.0, 0.0, 1.0)
    assert not stocks.env.instrument.allow_short and stocks.env.levels == (0.0, 1.0)
    assert futures.progress is False


def test_minute_specs_annualise_over_session_minutes() -> None:
    daily, minute = resolve_spec("kospi200f-1d"), resolve_spec("kospi200f-1m")
    assert daily.periods_per_year == 252.0
    assert minute.periods_per_year == 252.0 * 420  # futures session 08:45-15:45
    assert minute.walkforward_config().periods_per_year == minute.periods_per_year


def test_settings_json_overrides_a_spec_and_can_define_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = {
        "stocks-1d": {"seeds": [0, 1, 2, 3, 4], "total_steps": 5000},
        "etf-1d": {"symbols": ["069500"], "kind": "etf", "levels": [0.0, 0.5, 1.0]},
    }
    monkeypatch.setenv("KRX_MODEL_SPECS", json.dumps(overrides))
    get_settings.cache_clear()
    stocks = resolve_spec("stocks-1d")
    assert stocks.seeds == (0, 1, 2, 3, 4) and stocks.train_config().total_steps == 5000
    etf = resolve_spec("etf-1d")
    assert etf.registered_model_name == "krx-a3c-etf-1d" and etf.train_config().env.levels == (0.0, 0.5, 1.0)
    assert "etf-1d" in spec_names()


def test_dag_params_override_budget_seeds_and_hyperparameters() -> None:
    params = {
        "total_steps": None,  # "not given" in a trigger form
        "max_seconds": 30,
        "seeds": "3,4",
        "hyperparameters": '{"learning_rate": 0.001, "env.window": 16, "regimes.k_max": 3}',
    }
    spec = resolve_spec("kospi200f-1d", params=params)
    config = spec.train_config(seed=4)
    assert spec.seeds == (3, 4) and config.seed == 4 and config.max_seconds == 30
    assert config.total_steps == 200_000  # the default budget stays: None means not given
    assert config.learning_rate == 0.001 and config.env.window == 16 and config.regimes.k_max == 3
    # The training reward is one more hyper-parameter (the default stays the log return).
    assert config.env.reward == "log_return"
    dsr = resolve_spec("kospi200f-1d", params={"hyperparameters": {"env.reward": "differential_sharpe"}})
    assert dsr.train_config().env.reward == "differential_sharpe"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"seeds": "a,b"}, "seeds"),
        ({"interval": "5m"}, "interval"),
        ({"levels": [-1, 0, 1], "kind": "stock"}, "levels are fractions of equity"),
        ({"kind": "index"}, "kind"),
        ({"hyperparameters": {"lerning_rate": 0.1}}, "lerning_rate"),
        ({"hyperparameters": {"seed": 3}}, "set by the spec itself"),
        ({"n_workers": 0}, "n_workers"),
        ({"hyperparameters": {"env.reward": "sortino"}}, "reward must be one of"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_an_invalid_override_is_refused_with_the_field_named(params: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        resolve_spec("kospi200f-1d", params=params)
    assert field in str(err.value) and "kospi200f-1d" in str(err.value)


def test_an_unknown_spec_names_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"known: .*stocks-1d"):
        resolve_spec("crypto-1h")


def test_a_wrongly_typed_hyperparameter_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError, match="hyperparameters"):
        resolve_spec("kospi200f-1d", params={"hyperparameters": {"hidden_size": "big"}})
