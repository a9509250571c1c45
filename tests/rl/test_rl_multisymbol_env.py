"""One env over several symbols laid end to end: episodes stay inside one symbol, symbols are drawn by their
length, and each symbol trades with its own instrument's costs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.market import InstrumentKind, tick_size
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.instruments import etf_spec, kospi200_futures_spec, stock_spec
from pipeline.rl.market import MarketArrays
from tests.rl.conftest import hand_market


def _walk(n: int, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))


def _two_symbols(n_cheap: int, n_dear: int) -> MarketArrays:
    """Symbol ``CHEAP`` trades near 1,000 KRW, ``DEAR`` near 1,000,000: a step from one into the other
    would show as a 1000x price jump."""
    cheap, dear = _walk(n_cheap, 1_000.0, 1), _walk(n_dear, 1_000_000.0, 2)
    return MarketArrays.concat(
        [hand_market(cheap, cheap, n_features=2), hand_market(dear, dear, n_features=2)],
        symbols=("CHEAP", "DEAR"),
    )


def test_an_episode_never_crosses_from_one_symbol_into_the_next() -> None:
    market = _two_symbols(15, 200)  # CHEAP is shorter than one episode: its episodes run to its last bar
    config = EnvConfig(window=3, episode_length=30, initial_cash=1e8)
    env = VecTradingEnv(market, config, n_envs=64, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    cheap_last = market.segment_bounds()[0][1] - 1
    ends_in_cheap = 0
    for _ in range(400):
        before = env.t.copy()
        _, _, terminated, truncated, info = env.step(rng.integers(2, size=64))
        jump = market.close[info["t"]] / market.close[before]  # [B] price ratio across the step
        assert ((jump > 0.5) & (jump < 2.0)).all(), "an episode stepped across a symbol boundary"
        cut = truncated & (before < cheap_last + 1)
        if cut.any():
            # An episode in CHEAP is cut at CHEAP's last bar, truncated (not terminated) and bootstrapped
            # from its own last observation: CHEAP's bars 12..14 (feature f of bar t is t + f/10).
            assert (info["t"][cut] == cheap_last).all() and not terminated[cut].any()
            final = info["final_obs"][cut, :6]
            np.testing.assert_allclose(final, np.tile([12, 12.1, 13, 13.1, 14, 14.1], (len(final), 1)))
        ends_in_cheap += int(cut.sum())
    assert ends_in_cheap > 0


def test_random_episodes_pick_symbols_in_proportion_to_their_decision_bars() -> None:
    market = _two_symbols(102, 402)  # window 3: 99 vs 399 decision bars
    env = VecTradingEnv(market, EnvConfig(window=3, episode_length=20), n_envs=20_000, seed=1)
    env.reset()
    cheap_rows = market.segment_bounds()[0][1]
    share = float(np.mean(env.t < cheap_rows))
    assert share == pytest.approx(99 / (99 + 399), abs=0.01)
    starts = env.t[env.t >= cheap_rows] - cheap_rows
    # From the first bar with a full window (2) to the last start whose 20 decisions end on bar 401.
    assert starts.min() == 2 and starts.max() == 401 - 20


def test_a_pinned_start_runs_to_its_own_symbols_last_bar() -> None:
    market = _two_symbols(40, 40)
    env = VecTradingEnv(market, EnvConfig(window=3, episode_length=None), auto_reset=False)
    env.reset(start=10)
    assert env.end[0] == 39  # CHEAP's last bar, not the end of the market
    env.reset(start=40)  # DEAR's first bar has no history yet: the episode starts after its warm-up
    assert env.t[0] == 42 and env.end[0] == 79


def test_each_symbol_pays_its_own_instruments_tick_and_sell_tax() -> None:
    prices = [10_000.0] * 6
    one = hand_market(prices, prices)  # 2026 dates: stocks pay a 0.20 % sell tax, ETFs none
    market = MarketArrays.concat([one, one], symbols=("STOCK", "ETF"), instruments=(stock_spec(), etf_spec()))
    config = EnvConfig(window=1, episode_length=None, initial_cash=1e6)
    env = VecTradingEnv(market, config, n_envs=2, auto_reset=False)
    env.reset(start=np.array([0, 6]))
    _, _, _, _, bought = env.step(np.array([1, 1]))
    _, _, _, _, sold = env.step(np.array([0, 0]))
    shares = bought["position"]
    ticks = np.array([tick_size(10_000, InstrumentKind.STOCK), tick_size(10_000, InstrumentKind.ETF)])
    np.testing.assert_allclose(sold["slippage"], shares * ticks, rtol=1e-12)
    fill = 10_000 - ticks
    taxes = np.array([0.0020, 0.0])
    fees = np.array([stock_spec().sell_fee, etf_spec().sell_fee])
    np.testing.assert_allclose(sold["fee"], shares * fill * (fees + taxes), rtol=1e-12)


def test_an_env_refuses_symbols_whose_action_levels_would_mean_different_things() -> None:
    prices = [350.0] * 5
    one = hand_market(prices, prices)
    market = MarketArrays.concat([one, one], instruments=(stock_spec(), kospi200_futures_spec()))
    with pytest.raises(ValueError, match="one action meaning"):
        VecTradingEnv(market, EnvConfig(window=1))


def test_a_multi_symbol_market_splits_back_into_its_symbols() -> None:
    market = _two_symbols(30, 50)
    dear = market.segment("DEAR")
    assert len(dear) == 50 and dear.symbols == ("DEAR",) and dear.n_segments == 1
    np.testing.assert_array_equal(dear.close, market.close[30:])
    assert dear.position_of(dear.index[7]) == 7
    with pytest.raises(ValueError, match="segment"):
        market.position_of(dear.index[7])  # the dates of two symbols overlap: no single time axis
