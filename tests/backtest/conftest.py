"""Factories for backtest tests: hand-built markets and backtest results with chosen equity paths."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

from pipeline.backtest.engine import BacktestResult
from pipeline.rl.market import MarketArrays


@pytest.fixture
def make_market() -> Callable[..., MarketArrays]:
    """``make_market(closes, opens=None)``: one constant feature, opens default to the previous close."""

    def build(closes: Sequence[float], opens: Sequence[float] | None = None) -> MarketArrays:
        c = np.asarray(closes, dtype=np.float64)
        o = np.concatenate([[c[0]], c[:-1]]) if opens is None else np.asarray(opens, dtype=np.float64)
        market = MarketArrays.from_arrays(o, c, np.zeros((len(c), 1), np.float32))
        return MarketArrays(**{**market.__dict__, "index": pd.bdate_range("2024-01-01", periods=len(c))})

    return build


@pytest.fixture
def make_result() -> Callable[..., BacktestResult]:
    """``make_result(equity, position, traded_notional=None, fee=None)`` with exposure = sign(position)."""

    def build(
        equity: Sequence[float],
        position: Sequence[float],
        traded_notional: Sequence[float] | None = None,
        fee: Sequence[float] | None = None,
    ) -> BacktestResult:
        n = len(equity)
        frame = pd.DataFrame(
            {
                "equity": np.asarray(equity, dtype=np.float64),
                "position": np.asarray(position, dtype=np.float64),
                "fee": np.zeros(n) if fee is None else np.asarray(fee, dtype=np.float64),
                "slippage": np.zeros(n),
                "traded_notional": np.zeros(n) if traded_notional is None else np.asarray(traded_notional),
                "exposure": np.sign(np.asarray(position, dtype=np.float64)),
            },
            index=pd.bdate_range("2024-01-01", periods=n),
        )
        return BacktestResult(name="hand", frame=frame, initial_cash=float(equity[0]))

    return build
