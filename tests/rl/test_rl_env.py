"""The trading env's arithmetic, timing and vectorisation, checked on hand-built bars."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pipeline.rl.env import EnvConfig, TradingEnv, VecTradingEnv
from pipeline.rl.instruments import kospi200_futures_spec, stock_spec

STOCK = EnvConfig(instrument=stock_spec(), levels=(0.0, 1.0), window=1, episode_length=None, initial_cash=1e6)
FUTURES = EnvConfig(
    instrument=kospi200_futures_spec(),
    levels=(-1.0, 0.0, 1.0),
    window=1,
    episode_length=None,
    initial_cash=1e8,
)


def test_stock_round_trip_costs_fee_tax_and_slippage_at_next_open(make_market) -> None:
    market = make_market(opens=[10_000, 10_000, 10_100, 10_300], closes=[10_000, 10_200, 10_300, 10_400])
    env = VecTradingEnv(market, STOCK, auto_reset=False)
    env.reset(start=0)

    _, reward, *_, info = env.step(np.array([1]))  # decide at bar 0, buy at bar 1's open + 1 tick (10 KRW)
    shares = math.floor(1e6 / (10_000 * 1.00015))  # sized with the known close of bar 0
    assert shares == 99 and info["position"][0] == 99
    buy_fill = 10_010
    cash = 1e6 - shares * buy_fill - shares * buy_fill * 0.00015
    assert info["fee"][0] == pytest.approx(shares * buy_fill * 0.00015, rel=1e-12)
    assert info["equity"][0] == pytest.approx(cash + shares * 10_200, rel=1e-12)
    assert reward[0] == pytest.approx(math.log((cash + shares * 10_200) / 1e6), rel=1e-12)

    *_, info = env.step(np.array([0]))  # sell at bar 2's open - 1 tick, fee + 0.20 % tax (2026)
    sell_fill = 10_090
    cash += shares * sell_fill * (1 - 0.00015 - 0.0020)
    assert info["position"][0] == 0
    assert info["fee"][0] == pytest.approx(shares * sell_fill * (0.00015 + 0.0020), rel=1e-12)
    assert info["equity"][0] == pytest.approx(cash, rel=1e-12)
    assert info["slippage"][0] == pytest.approx(shares * 10, rel=1e-12)


def test_futures_short_pays_fee_and_earns_multiplier_times_the_fall(make_market) -> None:
    market = make_market(opens=[350.0, 351.0, 347.0], closes=[350.0, 349.0, 346.0])
    env = VecTradingEnv(market, FUTURES, auto_reset=False)
    env.reset(start=0)
    _, _, _, _, info = env.step(np.array([0]))  # short 1 contract at 351.00 - 0.05
    fill = 350.95
    fee = fill * 250_000 * 0.00003
    assert info["position"][0] == -1
    assert info["fee"][0] == pytest.approx(fee, rel=1e-12)
    assert info["equity"][0] == pytest.approx(1e8 + (fill - 349.0) * 250_000 - fee, rel=1e-12)
    _, _, _, _, info = env.step(np.array([0]))  # repeating the action holds: no trade, no cost
    assert info["fee"][0] == 0.0 and info["traded_notional"][0] == 0.0
    assert info["equity"][0] == pytest.approx(1e8 + (fill - 346.0) * 250_000 - fee, rel=1e-12)


def test_futures_contracts_are_capped_by_initial_margin(make_market) -> None:
    market = make_market(opens=[350.0, 350.0, 350.0], closes=[350.0, 350.0, 350.0])
    config = EnvConfig(
        instrument=kospi200_futures_spec(),
        levels=(-3.0, 0.0, 3.0),
        window=1,
        episode_length=None,
        initial_cash=3e7,
    )
    env = VecTradingEnv(market, config, auto_reset=False)
    env.reset(start=0)
    _, _, _, _, info = env.step(np.array([2]))  # wants 3 contracts; 3e7 / (350 × 250,000 × 15 %) = 2.28
    assert info["position"][0] == 2


def test_futures_account_wiped_out_terminates_the_episode(make_market) -> None:
    market = make_market(opens=[350.0, 350.0, 200.0, 200.0], closes=[350.0, 300.0, 200.0, 200.0])
    config = EnvConfig(instrument=kospi200_futures_spec(), levels=(0.0, 1.0), window=1, initial_cash=2e7)
    env = VecTradingEnv(market, config, auto_reset=False)
    env.reset(start=0)
    _, _, terminated, _, _ = env.step(np.array([1]))  # long at 350: -50 points = -12.5M of 20M
    assert not terminated[0]
    _, reward, terminated, _, _ = env.step(np.array([1]))  # -100 more points: equity below zero
    assert terminated[0] and reward[0] < -10


def test_a_gap_up_open_shrinks_a_stock_buy_to_what_cash_affords(make_market) -> None:
    market = make_market(opens=[10_000, 12_000, 12_000], closes=[10_000, 12_000, 12_000])
    env = VecTradingEnv(market, STOCK, auto_reset=False)
    env.reset(start=0)
    _, _, _, _, info = env.step(np.array([1]))
    assert info["position"][0] == math.floor(1e6 / (12_010 * 1.00015))
    assert env.cash[0] >= 0


def test_observation_is_window_regime_exposure_and_unrealised_pnl(make_market) -> None:
    market = make_market(
        opens=[100.0] * 6,
        closes=[100.0, 100.0, 100.0, 110.0, 110.0, 110.0],
        regimes=[0, 1, 1, 0, 1, 0],
        n_regimes=2,
        n_features=2,
    )
    config = EnvConfig(
        instrument=stock_spec(tick_size=1.0, slippage_ticks=0.0, buy_fee=0.0),
        window=3,
        episode_length=None,
        initial_cash=1e4,
    )
    env = VecTradingEnv(market, config, auto_reset=False)
    obs = env.reset(start=2)
    np.testing.assert_allclose(obs[0, :6], [0.0, 0.1, 1.0, 1.1, 2.0, 2.1], rtol=1e-6)  # bars 0..2, 2 features
    np.testing.assert_allclose(obs[0, 6:8], [0, 1])  # regime of bar 2
    obs, *_ = env.step(np.array([1]))  # 100 shares at 100, bar 3 closes at 110
    np.testing.assert_allclose(obs[0, 6:8], [1, 0])
    assert obs[0, -2] == pytest.approx(100 * 110 / 11_000)  # all in
    assert obs[0, -1] == pytest.approx(100 * 10 / 11_000)  # unrealised gain / equity


def test_observation_at_t_ignores_bars_after_t(make_market) -> None:
    rng = np.random.default_rng(0)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 40)))
    base = make_market(opens=closes, closes=closes, n_features=3)
    later = base.features.copy()
    later[21:] += 100.0
    changed = base.with_features(later)
    obs = [VecTradingEnv(m, EnvConfig(window=5), auto_reset=False).reset(start=20) for m in (base, changed)]
    np.testing.assert_array_equal(obs[0], obs[1])


def test_batched_envs_match_one_env_stepped_alone(make_market) -> None:
    rng = np.random.default_rng(1)
    closes = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.02, 60)))
    market = make_market(opens=closes * 1.001, closes=closes)
    actions = rng.integers(0, 2, size=(40, 4))
    batch = VecTradingEnv(market, STOCK, n_envs=4, auto_reset=False)
    batch.reset(start=5)
    singles = [VecTradingEnv(market, STOCK, auto_reset=False) for _ in range(4)]
    for env in singles:
        env.reset(start=5)
    for step in actions:
        _, rewards, *_ = batch.step(step)
        for i, env in enumerate(singles):
            _, reward, *_ = env.step(step[i : i + 1])
            assert reward[0] == rewards[i]


def test_episodes_start_at_random_bars_and_auto_reset(make_market) -> None:
    closes = np.linspace(100, 200, 500)
    market = make_market(opens=closes, closes=closes)
    env = VecTradingEnv(market, EnvConfig(window=4, episode_length=10), n_envs=64, seed=3)
    env.reset()
    assert len(np.unique(env.t)) > 20
    for _ in range(9):
        *_, truncated, _ = env.step(np.zeros(64, np.int64))
        assert not truncated.any()
    *_, truncated, info = env.step(np.zeros(64, np.int64))
    assert truncated.all() and (info["episode_length"] == 10).all()
    assert (env.ep_len == 0).all()  # every env has already restarted


def test_auto_reset_hands_back_the_final_observation_of_each_finished_episode(make_market) -> None:
    closes = np.linspace(100, 200, 60)
    market = make_market(opens=closes, closes=closes, n_features=2)
    config = EnvConfig(window=3, episode_length=5)
    auto = VecTradingEnv(market, config, n_envs=3, seed=4)
    manual = VecTradingEnv(market, config, n_envs=3, auto_reset=False)
    auto.reset()
    manual.reset(start=0)
    manual.t[:], manual.end[:] = auto.t, auto.end  # the same random episodes, without the reset
    actions = np.array([1, 0, 1])
    for _ in range(4):
        _, _, _, _, info = auto.step(actions)
        manual.step(actions)
        assert "final_obs" not in info
    obs, _, terminated, truncated, info = auto.step(actions)
    final, *_ = manual.step(actions)
    assert truncated.all() and not terminated.any()
    np.testing.assert_array_equal(info["final_obs"], final)  # what the episode ended on: position included
    assert (final[:, -2] > 0).any() and (obs[:, -2] == 0).all()  # the returned obs already starts afresh


def test_every_action_index_for_a_level_comes_from_the_env_config() -> None:
    futures = EnvConfig(instrument=kospi200_futures_spec(), levels=(-1.0, 0.0, 1.0))
    assert [futures.action_for(x) for x in (-1.0, 0.0, 1.0, 0.4, -7.0)] == [0, 1, 2, 1, 0]
    assert EnvConfig(levels=(0.0, 0.5, 1.0)).action_for(0.8) == 2


@pytest.mark.filterwarnings("ignore:.*Box observation space:UserWarning")  # unbounded features by design
def test_single_env_passes_the_gymnasium_checker(make_market) -> None:
    closes = np.linspace(100, 120, 50)
    env = TradingEnv(make_market(opens=closes, closes=closes), EnvConfig(window=3, episode_length=20))
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0, options={"start": 10, "end": 13})
    steps = 0
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(1)
        done, steps = terminated or truncated, steps + 1
    assert steps == 3 and obs.shape == env.observation_space.shape


def test_invalid_levels_are_rejected(make_market) -> None:
    market = make_market(opens=[1.0] * 5, closes=[1.0] * 5)
    with pytest.raises(ValueError, match="long only"):
        VecTradingEnv(market, EnvConfig(levels=(-1.0, 1.0), window=1))
    with pytest.raises(ValueError, match="integer"):
        VecTradingEnv(market, EnvConfig(instrument=kospi200_futures_spec(), levels=(0.5,), window=1))


def test_drawdown_and_volatility_penalties_are_taken_off_the_log_return(make_market) -> None:
    # Long one contract through a rise, a fall below the peak, a partial recovery and a new high.
    closes = [350.0, 352.0, 356.0, 348.0, 352.0, 360.0]
    market = make_market(opens=[350.0, *closes[:-1]], closes=closes)
    plain = VecTradingEnv(market, FUTURES, auto_reset=False)
    penalties = replace(FUTURES, drawdown_penalty=2.0, volatility_penalty=50.0)
    penalised = VecTradingEnv(market, penalties, auto_reset=False)
    for env in (plain, penalised):
        env.reset(start=0)
    equity, peak = [FUTURES.initial_cash], FUTURES.initial_cash
    for _ in range(len(closes) - 1):
        _, base, *_, info = plain.step(np.array([2]))
        _, reward, *_ = penalised.step(np.array([2]))
        log_ret = math.log(info["equity"][0] / equity[-1])
        assert base[0] == pytest.approx(log_ret, rel=1e-12)
        dd_before = 1.0 - equity[-1] / peak
        peak = max(peak, info["equity"][0])
        deeper = max(1.0 - info["equity"][0] / peak - dd_before, 0.0)  # only a deepening drawdown costs
        assert reward[0] == pytest.approx(log_ret - 2.0 * deeper - 50.0 * log_ret**2, rel=1e-9, abs=1e-15)
        equity.append(info["equity"][0])
    # The fall is penalised for both the drawdown it opens and its size; the recovery only for its size.
    assert equity[3] < equity[2] and equity[4] > equity[3]


def test_the_differential_sharpe_reward_tracks_the_moving_sharpe_ratio(make_market) -> None:
    # Long one contract through gains, a loss and more gains; then a flat stretch.
    closes = [350.0, 352.0, 356.0, 348.0, 352.0, 360.0, 362.0, 361.0]
    market = make_market(opens=[350.0, *closes[:-1]], closes=closes)
    eta = 0.1
    config = replace(FUTURES, reward="differential_sharpe", sharpe_eta=eta, drawdown_penalty=1.0)
    plain = VecTradingEnv(market, FUTURES, auto_reset=False)
    dsr = VecTradingEnv(market, config, auto_reset=False)
    for pass_ in range(2):  # a reset starts the moments again
        plain.reset(start=0)
        dsr.reset(start=0)
        # Moody & Saffell (2001): A and B are moving averages of R and R^2; B starts at the market's mean
        # squared log return of a bar, A at 0.
        a, b = 0.0, float(np.mean(np.diff(np.log(closes)) ** 2))
        peak = equity = FUTURES.initial_cash
        rewards = []
        for step in range(len(closes) - 1):
            action = np.array([2 if step < 5 else 1])  # long, then flat
            _, log_ret, *_, info = plain.step(action)
            _, reward, *_ = dsr.step(action)
            r = log_ret[0]
            expected = eta * (b * (r - a) - 0.5 * a * (r * r - b)) / (b - a * a) ** 1.5
            a, b = a + eta * (r - a), b + eta * (r * r - b)
            dd_before = 1.0 - equity / peak
            equity = info["equity"][0]
            peak = max(peak, equity)
            expected -= 1.0 * max(1.0 - equity / peak - dd_before, 0.0)
            assert reward[0] == pytest.approx(expected, rel=1e-9), (pass_, step)
            rewards.append(reward[0])
        # Gains raise the ratio, the loss lowers it; once flat, a past average gain makes idling cost a
        # little (R = 0 pulls the moving mean down).
        assert rewards[0] > 0 and rewards[2] < 0 and all(-0.05 < x < 0 for x in rewards[5:])
    with pytest.raises(ValueError, match="reward must be one of"):
        replace(FUTURES, reward="sortino")
    with pytest.raises(ValueError, match="sharpe_eta"):
        replace(FUTURES, reward="differential_sharpe", sharpe_eta=1.0)


def test_the_differential_sharpe_scale_ignores_the_jump_between_two_symbols(make_market) -> None:
    from pipeline.rl.market import MarketArrays

    cheap = make_market(opens=[100.0, 101.0, 99.0, 102.0], closes=[101.0, 99.0, 102.0, 100.0])
    dear = make_market(opens=[50_000.0] * 4, closes=[50_500.0, 50_000.0, 50_500.0, 50_000.0])
    both = MarketArrays.concat([cheap, dear], symbols=["A", "B"])
    config = replace(STOCK, reward="differential_sharpe")
    moves = [np.diff(np.log(m.close)) for m in (cheap, dear)]
    expected = float(np.mean(np.concatenate(moves) ** 2))  # six moves, not the 100 → 50,000 jump
    env = VecTradingEnv(both, config, n_envs=2)
    assert env.ret_sq == pytest.approx([expected, expected], rel=1e-12)
    assert VecTradingEnv(cheap, config).ret_sq[0] == pytest.approx(float(np.mean(moves[0] ** 2)), rel=1e-12)
