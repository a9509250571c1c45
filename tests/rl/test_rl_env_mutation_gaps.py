"""The trading env's rules that the mutation run of ``pipeline/rl/env.py`` found unguarded: config validation
and its messages, the JSON form, seeded episodes, costs of one-share trades and gap-ups, the average entry
price behind the unrealised PnL, penalties on their own, wipe-outs, episode statistics and the gymnasium
view. Every expected number is worked out by hand from small markets with round prices."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

from pipeline.market import FUTURES_FEE_RATE, FUTURES_MULTIPLIER, FUTURES_TICK
from pipeline.rl.env import EnvConfig, TradingEnv, VecTradingEnv
from pipeline.rl.instruments import etf_spec, kospi200_futures_spec, stock_spec
from pipeline.rl.market import MarketArrays
from tests.rl.conftest import hand_market

#: A stock with round costs: 1-KRW ticks, 0.1 % buy fee, 0.2 % sell fee, 0.3 % sell tax on every date.
ROUND_STOCK = stock_spec(tick_size=1.0, buy_fee=0.001, sell_fee=0.002, sell_tax=0.003)
#: A stock that trades at the open exactly, for free.
FREE_STOCK = stock_spec(tick_size=1.0, slippage_ticks=0.0, buy_fee=0.0, sell_fee=0.0, sell_tax=0.0)
#: KOSPI200 futures without costs: equity moves by exactly points × multiplier.
FREE_FUTURES = kospi200_futures_spec(slippage_ticks=0.0, buy_fee=0.0, sell_fee=0.0)
M = FUTURES_MULTIPLIER


def _env(market: MarketArrays, *, auto_reset: bool = False, n_envs: int = 1, **config: Any) -> VecTradingEnv:
    """An env on ``market`` with a one-bar window and episodes to the end of the data unless ``config`` says
    otherwise."""
    settings: dict[str, Any] = {"window": 1, "episode_length": None, **config}
    return VecTradingEnv(market, EnvConfig(**settings), n_envs=n_envs, auto_reset=auto_reset)


# ---- config validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"levels": ()}, "levels must name at least one target position"),
        ({"levels": (0.0, 1.5)}, "stock levels are fractions of equity in [0, 1] (long only)"),
        ({"levels": (-0.5, 1.0)}, "stock levels are fractions of equity in [0, 1] (long only)"),
        (
            {"instrument": etf_spec(), "levels": (0.0, 2.0)},
            "etf levels are fractions of equity in [0, 1] (long only)",
        ),
        (
            {"instrument": kospi200_futures_spec(), "levels": (-1.0, 0.5)},
            "futures levels are integer contract counts",
        ),
        ({"window": 0}, "window must be ≥ 1, got 0"),
        ({"episode_length": 0}, "episode_length must be ≥ 1 or None, got 0"),
        ({"initial_cash": 0.0}, "initial_cash must be > 0, got 0.0"),
        ({"initial_cash": -1.0}, "initial_cash must be > 0, got -1.0"),
        ({"drawdown_penalty": -0.1}, "drawdown_penalty and volatility_penalty must be ≥ 0"),
        ({"volatility_penalty": -0.1}, "drawdown_penalty and volatility_penalty must be ≥ 0"),
    ],
)
def test_an_invalid_config_is_refused_with_a_message_naming_the_rule(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):  # the whole message, nothing around it
        EnvConfig(**fields)


def test_the_smallest_valid_settings_are_accepted() -> None:
    # One level, one bar of window, one decision per episode, one won of cash, small penalties.
    config = EnvConfig(
        levels=(1.0,),
        window=1,
        episode_length=1,
        initial_cash=1.0,
        drawdown_penalty=0.5,
        volatility_penalty=0.5,
    )
    assert config.levels == (1.0,) and config.initial_cash == 1.0
    futures = EnvConfig(instrument=kospi200_futures_spec(), levels=(-2.0, 0.0, 2.0))  # short counts are fine
    assert futures.levels == (-2.0, 0.0, 2.0)


def test_a_one_decision_episode_is_truncated_after_its_single_step() -> None:
    market = hand_market([100.0] * 6, [100.0] * 6)
    env = _env(market, episode_length=1, levels=(1.0,), instrument=FREE_STOCK, initial_cash=1e4)
    env.reset(start=2, end=3)
    _, _, terminated, truncated, info = env.step(np.array([0]))
    assert truncated[0] and not terminated[0] and info["episode_length"][0] == 1
    assert env.n_actions == 1


def test_a_config_round_trips_through_its_json_form() -> None:
    config = EnvConfig(
        instrument=kospi200_futures_spec(),
        levels=(-2.0, 0.0, 2.0),
        window=5,
        episode_length=7,
        initial_cash=3e7,
        drawdown_penalty=0.5,
        volatility_penalty=2.0,
        reward="differential_sharpe",
        sharpe_eta=0.05,
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert set(data) == {
        "reward",
        "sharpe_eta",
        "instrument",
        "levels",
        "window",
        "episode_length",
        "initial_cash",
        "drawdown_penalty",
        "volatility_penalty",
    }
    assert data["levels"] == [-2.0, 0.0, 2.0] and data["instrument"]["kind"] == "futures"
    assert EnvConfig.from_dict(data) == config
    whole = EnvConfig(episode_length=None)
    assert EnvConfig.from_dict(json.loads(json.dumps(whole.to_dict()))) == whole


# ---- episodes ---------------------------------------------------------------------------------------------
def _walk_market(n: int) -> MarketArrays:
    closes = np.linspace(100.0, 130.0, n).tolist()
    return hand_market(closes, closes, n_features=2)


def test_the_same_seed_draws_the_same_episodes_and_reset_seed_restarts_the_stream() -> None:
    market = _walk_market(300)
    config = EnvConfig(window=3, episode_length=10)
    a, b = (VecTradingEnv(market, config, n_envs=16, seed=7) for _ in range(2))
    a.reset()
    b.reset()
    np.testing.assert_array_equal(a.t, b.t)
    first = a.t.copy()
    a.reset()  # no seed: the stream goes on, so other starts
    assert not np.array_equal(a.t, first)
    other = VecTradingEnv(market, config, n_envs=16, seed=99)
    other.reset(seed=7)  # a seed at reset restarts the stream as if built with it
    np.testing.assert_array_equal(other.t, first)
    gym_env = TradingEnv(market, config)
    starts = {gym_env.reset(seed=5)[1]["t"] for _ in range(3)}
    assert len(starts) == 1


def test_a_one_symbol_market_draws_uniform_starts_from_the_seeded_generator() -> None:
    # Seeded training runs keep their episodes: one symbol draws no symbol, only the start in
    # [window - 1, last bar - episode_length].
    market = _walk_market(60)
    env = VecTradingEnv(market, EnvConfig(window=4, episode_length=10), n_envs=32, seed=11)
    env.reset()
    rng = np.random.default_rng(11)
    expected = rng.integers(np.full(32, 3), np.full(32, 59 - 10 + 1))
    np.testing.assert_array_equal(env.t, expected)
    np.testing.assert_array_equal(env.end, expected + 10)


def test_random_starts_cover_every_bar_from_the_warm_up_to_the_last_full_episode() -> None:
    market = _walk_market(40)
    env = VecTradingEnv(market, EnvConfig(window=3, episode_length=10), n_envs=4000, seed=2)
    env.reset()
    assert env.t.min() == 2 and env.t.max() == 39 - 10
    assert ((env.end - env.t) == 10).all()


def test_without_an_episode_length_random_episodes_run_the_whole_market() -> None:
    market = _walk_market(12)
    env = VecTradingEnv(market, EnvConfig(window=3, episode_length=None), n_envs=3, seed=0)
    env.reset()
    assert (env.t == 2).all() and (env.end == 11).all()
    steps = 0
    while True:
        *_, truncated, info = env.step(np.ones(3, np.int64))
        steps += 1
        if truncated.any():
            break
    assert truncated.all() and steps == 11 - 2 and (info["t"] == 11).all()


def test_a_symbol_shorter_than_an_episode_runs_whole_while_a_longer_one_runs_episode_length() -> None:
    short, long = _walk_market(10), _walk_market(100)
    market = MarketArrays.concat([short, long], symbols=("SHORT", "LONG"))
    env = VecTradingEnv(market, EnvConfig(window=2, episode_length=20), n_envs=400, seed=3)
    env.reset()
    in_short = env.t < 10
    assert in_short.any() and (~in_short).any()
    assert (env.t[in_short] == 1).all() and (env.end[in_short] == 9).all()  # bars 1 … 9 of SHORT
    assert ((env.end[~in_short] - env.t[~in_short]) == 20).all()
    assert env.t[~in_short].min() >= 11 and env.end[~in_short].max() <= 109


def test_bounds_keep_random_episodes_inside_them() -> None:
    market = _walk_market(200)
    config = EnvConfig(window=3, episode_length=None)
    env = VecTradingEnv(market, config, n_envs=8, seed=0, bounds=(50, 80))
    env.reset()
    assert (env.t == 50).all() and (env.end == 79).all()  # bars before 50 may still fill its window
    gym_env = TradingEnv(market, config, bounds=(50, 80))
    _, info = gym_env.reset(seed=0)
    assert info["t"] == 50 and gym_env.vec.end[0] == 79


def test_a_pinned_end_past_the_data_is_cut_at_the_last_bar() -> None:
    market = hand_market([100.0] * 10, [100.0] * 10)
    env = _env(market)
    env.reset(start=3, end=50)
    assert env.t[0] == 3 and env.end[0] == 9


def test_a_pinned_start_on_a_symbols_last_bar_is_refused_and_one_before_it_gets_one_decision() -> None:
    one = hand_market([100.0] * 10, [100.0] * 10)
    market = MarketArrays.concat([one, one], symbols=("A", "B"))
    env = _env(market)
    with pytest.raises(
        ValueError, match=re.escape("starts [9] leave no decision before their symbol's last bar")
    ):
        env.reset(start=9)
    with pytest.raises(ValueError, match="no decision"):
        env.reset(start=np.array([19]))
    env.reset(start=8)
    *_, truncated, info = env.step(np.array([1]))
    assert truncated[0] and info["t"][0] == 9


# ---- fills, sizing and costs ------------------------------------------------------------------------------
def test_a_gap_up_buy_is_cut_to_what_cash_affords_including_the_buy_fee() -> None:
    # Sized at close 5,000: floor(1e6 / (5,000 × 1.001)) = 199 shares. The next open is 9,999 (+1 tick):
    # 1e6 buys 100 shares at 10,000 before the fee, but only floor(1e6 / 10,010) = 99 with it.
    market = hand_market([5_000.0, 9_999.0, 9_999.0], [5_000.0, 10_000.0, 10_000.0])
    env = _env(market, instrument=ROUND_STOCK, initial_cash=1e6)
    env.reset(start=0)
    *_, info = env.step(np.array([1]))
    assert info["position"][0] == 99
    assert env.cash[0] == pytest.approx(1e6 - 99 * 10_000 * 1.001, rel=1e-12)
    assert info["fee"][0] == pytest.approx(99 * 10_000 * 0.001, rel=1e-12)


def test_a_gap_up_that_makes_even_one_share_unaffordable_leaves_the_account_flat() -> None:
    # 10,000 KRW buys one share at the decision close of 6,000, none at the next open of 11,000.
    market = hand_market([6_000.0, 10_999.0, 11_000.0], [6_000.0, 11_000.0, 11_000.0])
    env = _env(market, instrument=ROUND_STOCK, initial_cash=1e4)
    env.reset(start=0)
    _, reward, *_, info = env.step(np.array([1]))
    assert info["position"][0] == 0 and info["fee"][0] == 0.0 and info["traded_notional"][0] == 0.0
    assert env.cash[0] == 1e4 and reward[0] == 0.0


def test_a_one_share_buy_pays_the_buy_fee_not_the_sell_fee_and_tax() -> None:
    market = hand_market([6_000.0, 6_000.0, 6_000.0], [6_000.0, 6_100.0, 6_100.0])
    env = _env(market, instrument=ROUND_STOCK, initial_cash=1e4)
    env.reset(start=0)
    *_, info = env.step(np.array([1]))
    assert info["position"][0] == 1 and info["traded_notional"][0] == 6_001.0
    assert info["fee"][0] == pytest.approx(6_001.0 * 0.001, rel=1e-12)
    assert info["equity"][0] == pytest.approx(1e4 - 6_001.0 * 1.001 + 6_100.0, rel=1e-12)


def test_a_one_share_sell_pays_the_sell_fee_and_tax() -> None:
    market = hand_market([6_000.0] * 4, [6_000.0] * 4)
    env = _env(market, instrument=ROUND_STOCK, initial_cash=1e4)
    env.reset(start=0)
    env.step(np.array([1]))
    *_, info = env.step(np.array([0]))
    assert info["position"][0] == 0 and info["traded_notional"][0] == 5_999.0
    assert info["fee"][0] == pytest.approx(5_999.0 * (0.002 + 0.003), rel=1e-12)


def test_episode_statistics_add_up_every_fee_and_slippage_of_the_episode() -> None:
    # 1e4 KRW at 100: sized floor(1e4 / 100.1) = 99, but at the fill of 101 (+1 tick) cash affords
    # floor(1e4 / 101.101) = 98 shares; they are sold at 99 (-1 tick) with 0.2 % fee and 0.3 % tax.
    market = hand_market([100.0] * 5, [100.0] * 5)
    env = _env(market, instrument=ROUND_STOCK, initial_cash=1e4, auto_reset=True)
    env.reset(start=0, end=3)
    _, _, _, truncated, info = env.step(np.array([1]))
    assert info["position"][0] == 98 and not truncated[0] and "episode_cost" not in info
    env.step(np.array([0]))
    _, _, terminated, truncated, info = env.step(np.array([0]))  # holds: no trade
    assert truncated[0] and not terminated[0]
    buy_fee, sell_fee = 98 * 101 * 0.001, 98 * 99 * (0.002 + 0.003)
    assert info["episode_cost"][0] == pytest.approx(buy_fee + sell_fee + 98 * 1 + 98 * 1, rel=1e-12)
    final = 1e4 - 98 * 101 - buy_fee + 98 * 99 - sell_fee
    assert info["episode_return"][0] == pytest.approx(math.log(final / 1e4), rel=1e-12)
    assert info["episode_length"][0] == 3
    assert env.ep_cost[0] == 0.0 and env.ep_len[0] == 0 and env.pos[0] == 0.0  # restarted afresh


def test_an_auto_reset_env_reports_the_equity_its_episode_ended_with() -> None:
    market = hand_market([100.0] * 4, [100.0, 110.0, 110.0, 110.0])
    env = _env(market, instrument=FREE_STOCK, initial_cash=1e4, auto_reset=True)
    env.reset(start=0, end=1)
    *_, truncated, info = env.step(np.array([1]))  # 100 shares at 100, marked at 110
    assert truncated[0]
    assert info["equity"][0] == 11_000.0


def test_only_finished_envs_report_an_episode_and_restart() -> None:
    market = hand_market([100.0] * 8, [100.0, 110.0, 121.0, 121.0, 121.0, 121.0, 121.0, 121.0])
    env = _env(market, instrument=FREE_STOCK, initial_cash=1e4, auto_reset=True, n_envs=2)
    env.reset(start=np.array([0, 0]), end=np.array([1, 4]))
    obs, _, terminated, truncated, info = env.step(np.array([1, 1]))  # 100 shares each at 100
    assert truncated.tolist() == [True, False] and not terminated.any()
    assert info["episode_return"][0] == pytest.approx(math.log(11_000 / 1e4), rel=1e-12)
    assert info["episode_return"][1] == 0.0 and info["episode_length"].tolist() == [1, 1]
    final = info["final_obs"]
    assert final[0, -2] == pytest.approx(100 * 110 / 11_000) and obs[0, -2] == 0.0  # env 0 restarted
    np.testing.assert_array_equal(obs[1], final[1])  # env 1 goes on
    assert obs[1, -2] == pytest.approx(100 * 110 / 11_000)
    assert env.pos.tolist() == [0.0, 100.0]


@pytest.mark.parametrize(("next_open", "units"), [(50.0, 9), (200.0, 4)])
def test_a_long_only_instrument_with_a_multiplier_is_sized_and_afforded_in_currency(
    next_open: float, units: int
) -> None:
    # 10 KRW per price point per unit, 0.1 % buy fee: at the decision close of 100 1e4 KRW is worth
    # floor(1e4 / 1,001) = 9 units. A gap down to 50 still buys 9; a gap up to 200 affords only
    # floor(1e4 / 2,002) = 4.
    spec = stock_spec(multiplier=10.0, tick_size=1.0, slippage_ticks=0.0, buy_fee=0.001, sell_tax=0.0)
    market = hand_market([100.0, next_open, next_open], [100.0, next_open, next_open])
    env = _env(market, instrument=spec, initial_cash=1e4)
    env.reset(start=0)
    *_, info = env.step(np.array([1]))
    assert info["position"][0] == units
    assert info["traded_notional"][0] == units * next_open * 10
    assert info["equity"][0] == pytest.approx(1e4 - units * next_open * 10 * 0.001, rel=1e-12)


def test_a_vectorised_env_is_one_env_unless_told_otherwise() -> None:
    market = hand_market([100.0] * 6, [100.0] * 6)
    env = VecTradingEnv(market, EnvConfig(window=1, episode_length=None), auto_reset=False)
    obs = env.reset(start=0)
    assert env.n_envs == 1 and obs.shape == (1, env.obs_dim)
    obs, reward, *_ = env.step(np.array([1]))
    assert obs.shape == (1, env.obs_dim) and reward.shape == (1,)


def test_repeating_an_action_holds_the_shares_while_the_price_moves() -> None:
    # Half the equity in at 100; the price doubles, so half the equity would now be 37 shares, not 50.
    market = hand_market([100.0, 100.0, 200.0, 200.0], [100.0, 200.0, 200.0, 200.0])
    env = _env(market, instrument=FREE_STOCK, initial_cash=1e4, levels=(0.0, 0.5))
    env.reset(start=0)
    env.step(np.array([1]))
    *_, info = env.step(np.array([1]))
    assert info["position"][0] == 50 and info["traded_notional"][0] == 0.0 and info["fee"][0] == 0.0
    assert info["equity"][0] == 5_000 + 50 * 200


def test_futures_slippage_and_episode_cost_are_in_currency_not_points() -> None:
    # One contract bought one tick above 350, two sold one tick below 352 (a flip to short).
    market = hand_market([350.0, 350.0, 352.0, 352.0], [350.0, 351.0, 352.0, 352.0])
    env = _env(
        market, instrument=kospi200_futures_spec(), levels=(-1.0, 0.0, 1.0), initial_cash=1e8, auto_reset=True
    )
    env.reset(start=0, end=2)
    *_, info = env.step(np.array([2]))
    assert info["slippage"][0] == pytest.approx(FUTURES_TICK * M, rel=1e-12)
    buy_fee = (350.0 + FUTURES_TICK) * M * FUTURES_FEE_RATE
    assert info["fee"][0] == pytest.approx(buy_fee, rel=1e-12)
    *_, truncated, info = env.step(np.array([0]))
    assert truncated[0]
    assert info["slippage"][0] == pytest.approx(2 * FUTURES_TICK * M, rel=1e-12)
    sell_fee = 2 * (352.0 - FUTURES_TICK) * M * FUTURES_FEE_RATE
    cost = buy_fee + sell_fee + 3 * FUTURES_TICK * M
    assert info["episode_cost"][0] == pytest.approx(cost, rel=1e-12)


# ---- average entry price, seen through the unrealised PnL -------------------------------------------------
@pytest.mark.filterwarnings("error::RuntimeWarning")  # closing a position divides by nothing
def test_the_unrealised_pnl_follows_the_average_entry_price() -> None:
    opens = [100.0, 100.0, 80.0, 110.0, 100.0, 100.0]
    closes = [100.0, 100.0, 100.0, 110.0, 100.0, 105.0]
    market = hand_market(opens, closes)
    env = _env(market, instrument=FREE_STOCK, initial_cash=1e4, levels=(0.0, 0.5, 1.0))
    env.reset(start=0)
    obs, *_ = env.step(np.array([1]))  # 50 shares at 100
    assert obs[0, -1] == 0.0 and obs[0, -2] == pytest.approx(0.5)
    obs, *_ = env.step(np.array([2]))  # 50 more at 80: average entry 90, 100 shares, cash 1,000
    assert env.pos[0] == 100 and env.cash[0] == 1_000.0
    assert obs[0, -1] == pytest.approx(100 * (100 - 90) / 11_000)
    obs, *_ = env.step(np.array([1]))  # sells 45 of 100 at 110: the entry of the rest stays 90
    assert env.pos[0] == 55 and env.cash[0] == 1_000.0 + 45 * 110
    assert obs[0, -1] == pytest.approx(55 * (110 - 90) / 12_000)
    obs, *_ = env.step(np.array([0]))  # flat at 100
    assert obs[0, -1] == 0.0 and obs[0, -2] == 0.0 and env.cash[0] == 11_450.0
    obs, *_ = env.step(np.array([2]))  # reopens: 114 shares, entry is the new fill of 100
    assert env.pos[0] == 114
    assert obs[0, -1] == pytest.approx(114 * 5 / (50 + 114 * 105))


def test_a_futures_flip_from_long_to_short_takes_the_flip_fill_as_entry() -> None:
    market = hand_market([350.0, 350.0, 360.0, 340.0], [350.0, 355.0, 345.0, 340.0])
    env = _env(market, instrument=FREE_FUTURES, levels=(-1.0, 0.0, 1.0), initial_cash=1e8)
    env.reset(start=0)
    obs, *_ = env.step(np.array([2]))  # long 1 at 350, closes 355
    equity = 1e8 + 5 * M
    assert obs[0, -1] == pytest.approx(5 * M / equity, rel=1e-6)
    obs, *_, info = env.step(np.array([0]))  # sells 2 at 360: +10 on the long, short from 360 to 345
    equity = 1e8 + (10 + 15) * M
    assert info["position"][0] == -1 and info["equity"][0] == pytest.approx(equity, rel=1e-12)
    assert obs[0, -1] == pytest.approx(15 * M / equity, rel=1e-6)
    assert obs[0, -2] == pytest.approx(-345 * M / equity, rel=1e-6)


def test_adding_a_second_contract_averages_the_entry_of_the_first() -> None:
    market = hand_market([350.0, 350.0, 360.0, 360.0], [350.0, 352.0, 364.0, 364.0])
    env = _env(market, instrument=FREE_FUTURES, levels=(0.0, 1.0, 2.0), initial_cash=1e8)
    env.reset(start=0)
    env.step(np.array([1]))  # one contract at 350
    obs, *_, info = env.step(np.array([2]))  # a second at 360: two at an average of 355, marked at 364
    equity = 1e8 + (364 - 350) * M + (364 - 360) * M
    assert info["position"][0] == 2 and info["equity"][0] == pytest.approx(equity, rel=1e-12)
    assert obs[0, -1] == pytest.approx(2 * (364 - 355) * M / equity, rel=1e-6)


# ---- rewards ----------------------------------------------------------------------------------------------
CLOSES = [350.0, 352.0, 356.0, 348.0, 352.0, 360.0]


def _equities() -> list[float]:
    """Equity after each bar of one free contract bought at 350 and held."""
    return [1e8, *(1e8 + (c - 350.0) * M for c in CLOSES[1:])]


def _rewards(**penalties: Any) -> list[float]:
    market = hand_market([350.0, *CLOSES[:-1]], CLOSES)
    env = _env(market, instrument=FREE_FUTURES, levels=(0.0, 1.0), initial_cash=1e8, **penalties)
    env.reset(start=0)
    return [float(env.step(np.array([1]))[1][0]) for _ in CLOSES[1:]]


def test_a_drawdown_penalty_alone_charges_only_a_deepening_drawdown() -> None:
    eq = _equities()
    peak = np.maximum.accumulate(eq)
    drawdown = 1.0 - np.array(eq) / peak
    expected = [
        math.log(eq[i] / eq[i - 1]) - 3.0 * max(drawdown[i] - drawdown[i - 1], 0.0) for i in range(1, len(eq))
    ]
    np.testing.assert_allclose(_rewards(drawdown_penalty=3.0), expected, rtol=1e-9, atol=1e-15)
    assert drawdown[3] > 0  # the fall to 348 opens a drawdown


def test_a_volatility_penalty_alone_charges_the_squared_log_return() -> None:
    eq = _equities()
    logs = [math.log(eq[i] / eq[i - 1]) for i in range(1, len(eq))]
    expected = [r - 40.0 * r * r for r in logs]
    np.testing.assert_allclose(_rewards(volatility_penalty=40.0), expected, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(_rewards(), logs, rtol=1e-12)


def test_a_wipe_out_on_the_last_bar_terminates_with_a_floored_reward_and_return() -> None:
    # Long one contract at 350 with 2e7: a fall of 50 points leaves some equity, 100 more points (on the
    # last bar) leave less than nothing.
    market = hand_market([350.0, 350.0, 300.0], [350.0, 300.0, 200.0])
    env = _env(market, instrument=FREE_FUTURES, levels=(0.0, 1.0), initial_cash=2e7)
    env.reset(start=0)
    _, reward, terminated, truncated, info = env.step(np.array([1]))
    left = 2e7 - 50 * M
    assert 0 < left < 2e7 and 2e7 - 150 * M < 0
    assert reward[0] == pytest.approx(math.log(left / 2e7), rel=1e-12) and not (terminated[0] or truncated[0])
    obs, reward, terminated, truncated, info = env.step(np.array([1]))
    assert terminated[0] and not truncated[0]  # the account is gone: no time limit to bootstrap
    assert info["equity"][0] == pytest.approx(2e7 - 150 * M, rel=1e-12)
    floor = 1e-9 * 2e7  # the reward marks a wiped-out account at a billionth of the initial cash
    assert reward[0] == pytest.approx(math.log(floor / left), rel=1e-12)
    assert info["episode_return"][0] == pytest.approx(math.log(1e-12 / 2e7), rel=1e-12)
    # The last observation divides by equity floored at 1e-12 KRW: finite, and long stays positive.
    assert np.isfinite(obs).all() and obs[0, -2] == pytest.approx(200 * M / 1e-12, rel=1e-6)


# ---- observations -----------------------------------------------------------------------------------------
def test_observations_are_float32_window_regimes_and_two_account_columns() -> None:
    market = hand_market([100.0] * 8, [100.0] * 8, regimes=[0] * 8, n_regimes=1, n_features=3)
    env = _env(market, window=2, instrument=FREE_STOCK, initial_cash=1e4, n_envs=2)
    obs = env.reset(start=np.array([1, 4]))
    assert env.obs_dim == 2 * 3 + 1 + 2 and obs.shape == (2, env.obs_dim) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[:, 6], [1.0, 1.0])  # the one regime is always on
    np.testing.assert_allclose(obs[1, :6], [3.0, 3.1, 3.2, 4.0, 4.1, 4.2], rtol=1e-6)
    obs, *_ = env.step(np.array([1, 0]))
    assert obs.dtype == np.float32
    np.testing.assert_allclose(obs[:, -2], [1.0, 0.0])


# ---- the gymnasium view -----------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*Box observation space:UserWarning")
def test_the_gymnasium_env_declares_its_spaces_and_stops_at_the_pinned_end() -> None:
    market = hand_market([100.0] * 20, [100.0] * 20, n_features=2)
    config = EnvConfig(instrument=FREE_STOCK, levels=(0.0, 0.5, 1.0), window=3, initial_cash=1e4)
    env = TradingEnv(market, config)
    assert env.metadata["render_modes"] == []
    space, actions = env.observation_space, env.action_space
    assert isinstance(space, spaces.Box) and isinstance(actions, spaces.Discrete)
    assert space.shape == (3 * 2 + 2,) and space.dtype == np.float32
    assert (space.low == -np.inf).all() and (space.high == np.inf).all()
    assert actions.n == 3 and env.vec.n_envs == 1
    obs, info = env.reset(options={"start": 5, "end": 7})
    assert info == {"t": 5}
    np.testing.assert_allclose(obs[:6], [3.0, 3.1, 4.0, 4.1, 5.0, 5.1], rtol=1e-6)
    obs, reward, terminated, truncated, info = env.step(2)
    assert (terminated, truncated) == (False, False) and type(reward) is float and reward == 0.0
    assert info["t"] == 6 and info["position"] == 100.0 and type(info["position"]) is float
    obs, reward, terminated, truncated, info = env.step(2)
    assert truncated is True and terminated is False and info["t"] == 7
    assert info["episode_length"] == 2 and type(info["episode_length"]) is int
    np.testing.assert_allclose(obs[:6], [5.0, 5.1, 6.0, 6.1, 7.0, 7.1], rtol=1e-6)  # not reset: bar 7's view
    assert obs[-2] == pytest.approx(1.0)


def test_the_gymnasium_env_reports_a_wipe_out_as_terminated() -> None:
    market = hand_market([350.0, 350.0, 300.0, 300.0], [350.0, 300.0, 200.0, 200.0])
    config = EnvConfig(instrument=FREE_FUTURES, levels=(0.0, 1.0), window=1, initial_cash=2e7)
    env = TradingEnv(market, config)
    env.reset(options={"start": 0})
    *_, terminated, truncated, _ = env.step(1)
    assert (terminated, truncated) == (False, False)
    _, reward, terminated, truncated, info = env.step(1)  # 150 points down on 1 contract: more than 2e7
    assert terminated is True and truncated is False
    assert info["equity"] == pytest.approx(2e7 - 150 * M) and reward < math.log(1e-8)
