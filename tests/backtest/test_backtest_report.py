"""What a symbol is traded as in a backtest: KRX ETFs tax-free, stocks taxed by date, futures long/short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.backtest.report import env_for
from pipeline.market import InstrumentKind


@pytest.mark.parametrize(
    ("symbol", "kind", "levels"),
    [
        ("069500", InstrumentKind.ETF, (0.0, 1.0)),  # KODEX 200, one of the real series in shared/data/krx
        ("005930", InstrumentKind.STOCK, (0.0, 1.0)),
        ("KOSPI200F", InstrumentKind.FUTURES, (-1.0, 0.0, 1.0)),
        ("101W09", InstrumentKind.FUTURES, (-1.0, 0.0, 1.0)),
    ],
)
def test_a_symbol_is_backtested_as_its_kind(symbol: str, kind: InstrumentKind, levels: tuple) -> None:
    env = env_for(symbol, None, "KOSPI200F")
    assert env.instrument.kind is kind and env.levels == levels


def test_etfs_named_in_settings_and_forced_futures_are_honoured() -> None:
    assert env_for("123456", None, "KOSPI200F", etfs=("123456",)).instrument.kind is InstrumentKind.ETF
    assert env_for("005930", True, "KOSPI200F").instrument.kind is InstrumentKind.FUTURES


def test_an_index_cannot_be_backtested_as_if_it_were_tradable() -> None:
    with pytest.raises(ValueError, match="not tradable"):
        env_for("KOSPI200", None, "KOSPI200F")


def test_the_backtest_returns_data_and_leaves_printing_to_the_cli() -> None:
    backtest = Path(__file__).parents[2] / "pipeline" / "backtest"
    for path in backtest.rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in modules if m.split(".")[0] == "rich"}, path
