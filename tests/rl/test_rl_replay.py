"""The served agent's fast replay decides what the reference replay (VecTradingEnv + the torch model)
decides: the ledger books exactly what the env books, the float64 network computes the torch network's
logits, and on real KRX and S&P 500 windows every decision, position, probability and value agrees."""

from __future__ import annotations

import copy
import datetime as dt
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.features import get_feature_fn
from pipeline.features.sets import OhlcvArrays
from pipeline.regimes import RegimeConfig, RegimeModel
from pipeline.rl.agent import TradingAgent, _with_position, prepare_market, prepare_markets
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig, VecTradingEnv
from pipeline.rl.instruments import InstrumentSpec, etf_spec, kospi200_futures_spec, stock_spec
from pipeline.rl.market import FeatureNormaliser, MarketArrays
from pipeline.rl.network import LSTMActorCritic
from pipeline.rl.replay import Float64Policy, Ledger, _Lstm, replay_window, undated
from pipeline.rl.segments import bar_costs
from tests.factories import sp500_bars
from tests.features.krx_data import krx_bars


def _spx() -> pd.DataFrame:
    return sp500_bars().set_index("ts")[["open", "high", "low", "close", "volume"]]


def _env(instrument: InstrumentSpec, levels: tuple[float, ...], cash: float, window: int = 8) -> EnvConfig:
    return EnvConfig(
        instrument=instrument, levels=levels, window=window, episode_length=None, initial_cash=cash
    )


#: (bars, env): futures on the S&P 500 (a KOSPI200-like price level), a KRX ETF, a KRX fund taxed as a stock
#: by date (0.30 % before 2019-06-03, then 0.25 %), with cash that binds the futures cap and the stock size.
CASES = {
    "futures": (_spx, _env(kospi200_futures_spec(), (-2.0, -1.0, 0.0, 1.0, 2.0), 4e7)),
    "etf": (lambda: krx_bars("229200"), _env(etf_spec(), (0.0, 0.5, 1.0), 1e6)),
    "stock": (lambda: krx_bars("091160"), _env(stock_spec(), (0.0, 0.3, 1.0), 5e5)),
}


def _agent(
    bars: pd.DataFrame, env: EnvConfig, feature_set: str = "ta-v1", regimes: bool = True
) -> TradingAgent:
    """An untrained agent whose policy head is scaled up: decisions as decisive as a trained agent's (small
    margins are rare), actions that change with the bars, so positions move."""
    config = TrainConfig(feature_set=feature_set, env=env, regimes=RegimeConfig(k_max=3), progress=False)
    train = bars.iloc[:800]
    regime_model = RegimeModel(config.regimes).fit(train) if regimes else None
    market = prepare_market(train, feature_set, regime_model)
    torch.manual_seed(0)
    model = LSTMActorCritic(env.window * market.n_features + market.n_regimes + 2, len(env.levels))
    with torch.no_grad():
        model.policy_head.weight.mul_(300.0)
    return TradingAgent(config, model, FeatureNormaliser.fit(market.features), regime_model)


def _sticky_actions(rng: np.random.Generator, n: int, n_actions: int) -> np.ndarray:
    # Half the time the previous action again: the env then holds the position instead of re-sizing it.
    fresh = rng.integers(0, n_actions, n)
    repeat = rng.random(n) < 0.5
    for k in range(1, n):
        fresh[k] = fresh[k - 1] if repeat[k] else fresh[k]
    return fresh


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")  # wiped-out accounts
def test_the_ledger_books_exactly_what_the_env_books_over_random_actions(case: str) -> None:
    load, env_config = CASES[case]
    bars = load().iloc[:700]
    market = MarketArrays.from_arrays(
        bars["open"].to_numpy(), bars["close"].to_numpy(), np.zeros((len(bars), 1)), index=bars.index
    )
    rng = np.random.default_rng(7)
    for episode in range(8):
        env = VecTradingEnv(market, env_config, n_envs=1, auto_reset=False)
        start = int(rng.integers(env_config.window - 1, 300))
        env.reset(start=start)
        ledger = Ledger(
            market, env_config, bar_costs(undated(market, env_config.instrument), env_config.instrument)
        )
        for t, action in enumerate(
            _sticky_actions(rng, len(bars) - start - 2, len(env_config.levels)), start
        ):
            assert np.array_equal(np.float32(ledger.observe(t)), env._obs()[0, -2:]), (case, episode, t)
            env.step(np.array([action]))
            ledger.step(int(action), t)
            booked = (ledger.pos, ledger.entry, ledger.cash, ledger.equity)
            assert booked == (env.pos[0], env.entry[0], env.cash[0], env.equity[0]), (case, episode, t)
            if t % 50 == 0:  # the caller's position, as decide applies it to the env
                level, entry = (
                    float(rng.choice(env_config.levels)),
                    [None, float(bars["close"].iloc[t - 3])][t % 2],
                )
                held = copy.deepcopy(ledger)
                held.hold(level, entry, t + 1)
                obs = _with_position(copy.deepcopy(env), env._obs(), [level], [entry])
                assert np.array_equal(np.float32(held.observe(t + 1)), obs[0, -2:])


def test_the_float64_network_computes_the_torch_networks_logits_and_value() -> None:
    torch.manual_seed(3)
    model = LSTMActorCritic(obs_dim=40, n_actions=3)
    with torch.no_grad():
        model.policy_head.weight.mul_(100.0)
    policy = Float64Policy.of(model)
    obs = np.random.default_rng(3).normal(0, 1, (300, 40)).astype(np.float32)
    lstm = _Lstm(policy, obs[:, :-2].astype(np.float64) @ policy.static.T + policy.encoder_bias)
    state, start = model.initial_state(1), torch.ones(1)
    worst = 0.0
    with torch.no_grad():
        for k in range(len(obs)):
            logits, state = model.act_step(torch.from_numpy(obs[k : k + 1]), state, start)
            start = torch.zeros(1)
            worst = max(
                worst, float(np.abs(np.subtract(lstm.step(k, *obs[k, -2:]), logits[0].numpy())).max())
            )
        value = float(model.value_head(state[0][0])[0])
    assert worst < policy.tolerance / 8  # the trust margin sits far above float32's rounding
    assert float(policy.value @ lstm.h1) == pytest.approx(value, abs=1e-6)


def _windows(bars: pd.DataFrame, n: int = 30) -> list[pd.DataFrame]:
    return [bars.iloc[end - 250 : end] for end in np.linspace(900, len(bars), n).astype(int)]


@pytest.mark.parametrize(
    ("case", "feature_set", "regimes"),
    [
        ("futures", "ta-v1", True),
        ("etf", "basic", False),
        ("stock", "ta-v1", True),
        ("futures", "basic", True),
    ],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")  # wiped-out accounts
def test_fast_decisions_are_the_reference_replays_decisions_on_real_windows(
    case: str, feature_set: str, regimes: bool
) -> None:
    load, env = CASES[case]
    bars = load()
    agent = _agent(bars, env, feature_set, regimes)
    policy, fast_ones, moved = agent._float64_policy(), 0, set()
    for k, window in enumerate(_windows(bars)):
        market = agent.market(window)
        close = float(window["close"].iloc[-1])
        for position, entry in (
            (None, None),
            (env.levels[k % len(env.levels)], None),
            (env.levels[-1], close * 0.97),
        ):
            want = agent.replay_reference([market], [position], [entry])[0]
            got = replay_window(policy, market, env, position, entry)
            if got is None:
                continue
            fast_ones += 1
            moved.add(want.simulated_position)
            assert (got.action, got.simulated_position) == (want.action, want.simulated_position)
            assert np.abs(np.subtract(got.probabilities, want.probabilities)).max() <= 1e-6
            assert got.value == pytest.approx(want.value, abs=1e-6)
    assert fast_ones >= 0.9 * 90 and len(moved) > 1  # the fast path decided, and positions moved


def test_a_call_too_close_for_float32_is_left_to_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    load, env = CASES["futures"]
    bars = load()
    agent = _agent(bars, env)
    window = bars.iloc[-250:]
    market = agent.market(window)
    policy = agent._float64_policy()
    cautious = replace(policy, tolerance=math.inf, policy_abs=np.full_like(policy.policy_abs, math.inf))
    assert replay_window(cautious, market, env) is None
    monkeypatch.setattr(agent, "_float64_policy", lambda: cautious)
    want = agent.replay_reference([market], [None], [None])[0]
    got = agent.decide(window)
    assert (got["action"], got["probabilities"], got["value"]) == (
        want.action,
        want.probabilities,
        want.value,
    )


def test_many_windows_decide_as_each_alone() -> None:
    load, env = CASES["stock"]
    bars = load()
    agent = _agent(bars, env)
    windows = [*_windows(bars, 12), bars.iloc[1000:1300], bars.iloc[2000:2260]]  # equal lengths, and ragged
    batch = agent.decide_batch(windows, positions=[None, 0.3, *[None] * 12])
    for got, window, position in zip(batch, windows, [None, 0.3, *[None] * 12], strict=True):
        want = agent.decide(window, position)
        assert (got["action"], got["simulated_position"], got["timestamp"], got["regime"]) == (
            want["action"],
            want["simulated_position"],
            want["timestamp"],
            want["regime"],
        )
        assert np.abs(np.subtract(got["probabilities"], want["probabilities"])).max() <= 1e-6


@pytest.mark.parametrize("feature_set", ["ta-v1", "basic"])
def test_markets_from_arrays_are_the_markets_from_frames(feature_set: str) -> None:
    load, env = CASES["stock"]
    bars = load()
    agent = _agent(bars, env, feature_set)
    windows = _windows(bars, 10)
    assert agent.regime_model is not None
    many = prepare_markets(
        [OhlcvArrays.from_frame(w) for w in windows], feature_set, agent.regime_model, agent.normaliser
    )
    for window, got in zip(windows, many, strict=True):
        features = get_feature_fn(feature_set)(window)
        want = MarketArrays.from_frames(window, features, agent.regime_model.predict(window), 3)
        want = want.with_features(agent.normaliser.transform(want.features))
        for name in ("open", "high", "low", "close", "features", "regimes"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
        assert got.index is not None and want.index is not None and got.index.equals(want.index)
        assert (got.n_regimes, got.feature_names) == (want.n_regimes, want.feature_names)


@pytest.mark.parametrize(
    "instrument",
    [kospi200_futures_spec(), etf_spec(), stock_spec(day=dt.date(2018, 1, 2)), stock_spec()],
    ids=["futures", "etf", "stock-fixed-tax", "stock-dated-tax"],
)
def test_costs_without_dates_are_the_costs_with_dates(instrument: InstrumentSpec) -> None:
    bars = krx_bars("102960").iloc[-400:]  # 2018-2019: the stock tax changes on 2019-06-03
    market = MarketArrays.from_arrays(bars["open"].to_numpy(), bars["close"].to_numpy(), np.zeros((400, 1)))
    market = replace(market, index=bars.index)
    dated, plain = bar_costs(market, instrument), bar_costs(undated(market, instrument), instrument)
    for name in ("slippage", "sell_tax", "buy_fee", "sell_fee"):
        assert np.array_equal(getattr(dated, name), getattr(plain, name)), name
    assert (undated(market, instrument).index is None) == (instrument != stock_spec())
