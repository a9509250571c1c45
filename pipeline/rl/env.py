"""Vectorised NumPy trading env (B envs step together on precomputed arrays) and a gymnasium view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import gymnasium as gym
import numpy as np

from pipeline.rl.instruments import InstrumentSpec, instrument_from_dict, stock_spec
from pipeline.rl.market import MarketArrays
from pipeline.rl.segments import bar_costs, decision_ranges, feature_windows

Info = dict[str, np.ndarray]
RewardKind = Literal["log_return", "differential_sharpe"]


@dataclass
class EnvConfig:
    """Trading rules of one env: what is traded, which positions are allowed, how long episodes are."""

    instrument: InstrumentSpec = field(default_factory=stock_spec)
    """Kind, fees, tax (by date), multiplier, tick, margin (see :mod:`pipeline.rl.instruments`)."""

    levels: tuple[float, ...] = (0.0, 1.0)
    """Target position per discrete action: fractions of equity in [0, 1] for stocks, signed integer
    contract counts for futures (e.g. ``(-1, 0, 1)``)."""

    window: int = 8
    """Bars of features in each observation (bars t-window+1 … t)."""

    episode_length: int | None = 256
    """Decisions per training episode from a random start; ``None``: the whole range."""

    initial_cash: float = 100_000_000.0
    """Starting equity in account currency (KRW)."""

    drawdown_penalty: float = 0.0
    """Reward penalty per unit increase of drawdown (0 disables)."""

    volatility_penalty: float = 0.0
    """Reward penalty times the squared log return of the step (0 disables)."""

    reward: RewardKind = "log_return"
    """``log_return``: log(equity[t+1] / equity[t]). ``differential_sharpe``: ``sharpe_eta`` times the
    differential Sharpe ratio of that log return (Moody & Saffell 2001, eq. 4), so an episode's rewards sum
    to about the change of its exponentially weighted Sharpe ratio. The penalties apply to either."""

    sharpe_eta: float = 0.01
    """Decay of the differential Sharpe ratio's moving moments (0.01: about 100 bars)."""

    def __post_init__(self) -> None:
        levels = np.asarray(self.levels, dtype=np.float64)
        if levels.size == 0:
            raise ValueError("levels must name at least one target position")
        if not self.instrument.allow_short and ((levels < 0).any() or (levels > 1).any()):
            raise ValueError(
                f"{self.instrument.kind.value} levels are fractions of equity in [0, 1] (long only)"
            )
        if self.instrument.allow_short and (levels != np.round(levels)).any():
            raise ValueError("futures levels are integer contract counts")
        if self.window < 1:
            raise ValueError(f"window must be ≥ 1, got {self.window}")
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError(f"episode_length must be ≥ 1 or None, got {self.episode_length}")
        if self.initial_cash <= 0:
            raise ValueError(f"initial_cash must be > 0, got {self.initial_cash}")
        if self.drawdown_penalty < 0 or self.volatility_penalty < 0:
            raise ValueError("drawdown_penalty and volatility_penalty must be ≥ 0")
        if self.reward not in get_args(RewardKind):
            raise ValueError(f"reward must be one of {get_args(RewardKind)}, got {self.reward!r}")
        if not 0.0 < self.sharpe_eta < 1.0:
            raise ValueError(f"sharpe_eta must be in (0, 1), got {self.sharpe_eta}")

    def action_for(self, level: float) -> int:
        """Index of the action whose target level is closest to ``level`` (the first one on a tie)."""
        return int(np.argmin(np.abs(np.asarray(self.levels, dtype=np.float64) - level)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "instrument": self.instrument.to_dict(),
            "levels": list(self.levels),
            "window": self.window,
            "episode_length": self.episode_length,
            "initial_cash": self.initial_cash,
            "drawdown_penalty": self.drawdown_penalty,
            "volatility_penalty": self.volatility_penalty,
            "reward": self.reward,
            "sharpe_eta": self.sharpe_eta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        d["instrument"] = instrument_from_dict(d["instrument"])
        d["levels"] = tuple(d["levels"])
        return cls(**d)


class VecTradingEnv:
    """B trading envs on one market, stepped together; auto-resets finished envs to a random start.

    Timing (no look-ahead): the observation at bar t uses bars ≤ t; the action chosen at t is sized with
    close[t] and fills at open[t+1] ± slippage; the reward is log(equity[t+1] / equity[t]) net of costs,
    equity marked at close[t+1]. Repeating the previous action holds the position (no drift rebalancing).

    A market of several symbols (``MarketArrays.concat``): a random episode first draws a symbol with
    probability ∝ its decision bars (every bar about equally likely to be trained on), then a start inside
    that symbol; an episode never crosses into the next symbol — reaching its symbol's last bar truncates it
    (bootstrapped like any time limit). Each symbol trades with its own instrument's ticks, fees and tax.
    """

    def __init__(
        self,
        market: MarketArrays,
        config: EnvConfig,
        n_envs: int = 1,
        seed: int | None = None,
        bounds: tuple[int, int] | None = None,
        auto_reset: bool = True,
    ) -> None:
        self.market, self.config, self.n_envs, self.auto_reset = market, config, n_envs, auto_reset
        self.rng = np.random.default_rng(seed)
        # Decisions happen at t ∈ [lo, hi-2] of one symbol; each needs `window` bars of that symbol's
        # history and the next open. One symbol: lo, hi are its range; several: the first's lo, last's hi.
        self.ranges = decision_ranges(market, config.window, bounds)
        self.lo, self.hi = int(self.ranges.lo[0]), int(self.ranges.hi[-1])
        inst = config.instrument
        self.levels = np.asarray(config.levels, dtype=np.float64)
        self.mult, self.short_ok = float(inst.multiplier), inst.allow_short
        self._open, self._close = market.open, market.close
        costs = bar_costs(market, inst)  # per bar, from the instrument of the bar's symbol
        self._slip = costs.slippage  # [T] price slippage per unit at each open
        self.sell_tax = costs.sell_tax  # [T] rate on a sell filled at t
        self._buy_fee, self._sell_fee = costs.buy_fee, costs.sell_fee  # [T] fee rates on a fill at t
        self._regimes, self._n_reg = market.regimes, market.n_regimes
        self._eye = np.eye(max(market.n_regimes, 1), dtype=np.float32)
        self._win = feature_windows(market, config.window)  # [T, W*F] float32, row t = bars t-W+1..t
        self.obs_dim = self._win.shape[1] + self._n_reg + 2
        self.n_actions = len(self.levels)
        z = np.zeros(n_envs)
        self.t, self.end = np.zeros(n_envs, np.int64), np.zeros(n_envs, np.int64)
        self.cash, self.pos, self.entry, self.equity, self.peak = z.copy(), z.copy(), z.copy(), z.copy(), z
        self.prev_action = np.full(n_envs, -1, np.int64)
        self.ep_cost, self.ep_len = np.zeros(n_envs), np.zeros(n_envs, np.int64)
        # Differential Sharpe ratio: moving first and second moments of the step's log return, per env. The
        # second starts at the market's own mean squared bar return (not 0: the ratio divides by it), taken
        # within each symbol (the jump from one symbol's last close to the next one's first is no return).
        moves = np.diff(np.log(market.close))
        inside = np.ones(len(moves), dtype=bool)
        inside[[o - 1 for o in market.offsets[1:-1]]] = False
        self._sharpe_b0 = max(float(np.mean(moves[inside] ** 2)) if inside.any() else 0.0, 1e-8)
        self.ret_mean, self.ret_sq = z.copy(), np.full(n_envs, self._sharpe_b0)

    # ---- reset ------------------------------------------------------------------------------------------
    def reset(
        self,
        seed: int | None = None,
        start: int | np.ndarray | None = None,
        end: int | np.ndarray | None = None,
    ) -> np.ndarray:
        """Reset every env; ``start``/``end`` (one bar, or one per env [B]) pin the episodes to decisions
        at bars start … end-1 (clipped to the start's symbol)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._reset_envs(np.ones(self.n_envs, dtype=bool), start, end)
        return self._obs()

    def _reset_envs(
        self, mask: np.ndarray, start: int | np.ndarray | None = None, end: int | np.ndarray | None = None
    ) -> None:
        n = int(mask.sum())
        starts, ends = self._random_episodes(n) if start is None else self._pinned_episodes(n, start, end)
        self.t[mask], self.end[mask] = starts, ends
        cash = self.config.initial_cash
        self.cash[mask], self.equity[mask], self.peak[mask] = cash, cash, cash
        self.pos[mask], self.entry[mask], self.ep_cost[mask], self.ep_len[mask] = 0.0, 0.0, 0.0, 0
        self.prev_action[mask] = -1
        self.ret_mean[mask], self.ret_sq[mask] = 0.0, self._sharpe_b0

    def _pinned_episodes(
        self, n: int, start: int | np.ndarray, end: int | np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """[n] starts and ends of episodes pinned to ``start`` (one, or one per env), cut at the symbol's
        last bar that can be marked to market."""
        rows = np.broadcast_to(np.asarray(start, dtype=np.int64), (n,))
        seg = self.ranges.segment_of(rows)
        last = self.ranges.hi[seg] - 1
        starts = np.maximum(rows, self.ranges.lo[seg])
        if self.market.n_segments > 1 and (starts >= last).any():
            bad = starts[starts >= last]
            raise ValueError(f"starts {bad} leave no decision before their symbol's last bar")
        ends = last if end is None else np.minimum(end, last)
        return starts.astype(np.int64), np.broadcast_to(ends, (n,)).astype(np.int64)

    def _random_episodes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """[n] random starts and ends: a symbol ∝ its decision bars, then ``episode_length`` decisions
        from a uniform start inside it (the whole symbol when it is not longer than one episode)."""
        r = self.ranges
        one = len(r.lo) == 1  # one symbol: no draw of the symbol, the same stream as a plain market
        seg = np.zeros(n, np.int64) if one else self.rng.choice(len(r.lo), size=n, p=r.weights)
        lo, last = r.lo[seg], r.hi[seg] - 1  # [n] first decision, last bar that can be marked
        length = self.config.episode_length
        if length is None:
            return lo, last
        whole = lo + length >= last
        if whole.all():
            return lo, last
        starts = self.rng.integers(lo, np.where(whole, lo + 1, last - length + 1))
        return np.where(whole, lo, starts), np.where(whole, last, starts + length)

    # ---- step -------------------------------------------------------------------------------------------
    def _target_units(self, actions: np.ndarray, t: np.ndarray) -> np.ndarray:
        close_t = self._close[t]
        level = self.levels[actions]
        eq = np.maximum(self.equity, 0.0)
        if self.short_ok:  # futures: contracts, capped by the initial margin that equity can post
            rate = self.config.instrument.margin_rate
            cap = np.floor(eq / (close_t * self.mult * rate))
            target = np.clip(level, -cap, cap)
        else:  # stock: whole shares worth `level` of equity including the buy fee
            fee = 1.0 + self._buy_fee[t]
            target = np.floor(level * eq / (close_t * self.mult * fee))
        return np.where(actions == self.prev_action, self.pos, target)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Info]:
        """Apply one action per env → (obs [B, D], reward [B], terminated [B], truncated [B], info).

        ``terminated``: the episode truly ended (the account is wiped out: nothing follows);
        ``truncated``: its time limit or the end of the data cut it (the market goes on). With auto-reset,
        finished envs restart at once and ``info["final_obs"]`` holds what they ended on."""
        a = np.array(actions, dtype=np.int64)  # a copy: prev_action must not alias the caller's array
        t = self.t
        t1 = t + 1
        dq = self._target_units(a, t) - self.pos
        side = np.sign(dq)
        slip = self._slip[t1]
        fill = self._open[t1] + side * slip  # buys fill above the open, sells below
        if not self.short_ok:  # cash account: a gap up at the open can only shrink a buy
            afford = np.floor(self.cash / (fill * self.mult * (1.0 + self._buy_fee[t1])))
            dq = np.where(dq > 0, np.minimum(dq, np.maximum(afford, 0.0)), dq)
        notional = np.abs(dq) * fill * self.mult
        fee = notional * np.where(dq > 0, self._buy_fee[t1], self._sell_fee[t1] + self.sell_tax[t1])
        new_pos = self.pos + dq
        self._update_entry(new_pos, dq, fill)
        self.cash = self.cash - dq * fill * self.mult - fee
        self.pos = new_pos
        equity = self.cash + new_pos * self._close[t1] * self.mult
        reward, terminated = self._reward(equity)
        self.t, self.prev_action, self.ep_len = t1, a, self.ep_len + 1
        self.ep_cost = self.ep_cost + fee + np.abs(dq) * slip * self.mult
        truncated = (t1 >= self.end) & ~terminated
        info: Info = {
            "t": t1.copy(),  # a copy: auto-reset rewrites self.t (which is t1) in place
            "equity": equity.copy(),  # a copy: auto-reset rewrites self.equity (which is equity) in place
            "position": new_pos.copy(),
            "fee": fee,
            "slippage": np.abs(dq) * slip * self.mult,
            "traded_notional": notional,
        }
        obs = self._obs()
        done = terminated | truncated
        if done.any():
            info["episode_return"] = np.where(
                done, np.log(np.maximum(equity, 1e-12) / self.config.initial_cash), 0.0
            )
            info["episode_length"] = self.ep_len.copy()
            info["episode_cost"] = self.ep_cost.copy()
            if self.auto_reset:
                # Gymnasium vector envs / SB3 keep the observation a finished episode ended on: a truncated
                # episode bootstraps from V(final_obs) (Pardo et al. 2018). [B, D]; rows of envs that did
                # not finish equal the returned obs.
                info["final_obs"] = obs.copy()
                self._reset_envs(done)
                obs[done] = self._obs(done)
        return obs, reward, terminated, truncated, info

    def _update_entry(self, new_pos: np.ndarray, dq: np.ndarray, fill: np.ndarray) -> None:
        # Average entry price: reset on open/flip, volume-weighted when adding, unchanged when reducing.
        pos = self.pos
        opened = (pos == 0) | (np.sign(new_pos) != np.sign(pos))
        adding = np.abs(new_pos) > np.abs(pos)
        denom = np.where(new_pos == 0, 1.0, new_pos)
        averaged = (pos * self.entry + dq * fill) / denom
        self.entry = np.where(
            new_pos == 0, 0.0, np.where(opened, fill, np.where(adding, averaged, self.entry))
        )

    def _reward(self, equity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        floor = 1e-9 * self.config.initial_cash
        terminated = equity <= floor  # bankrupt (futures can lose more than margin)
        log_ret = np.log(np.maximum(equity, floor) / self.equity)
        cfg = self.config
        reward = self._differential_sharpe(log_ret) if cfg.reward == "differential_sharpe" else log_ret
        if cfg.drawdown_penalty or cfg.volatility_penalty:
            new_peak = np.maximum(self.peak, equity)
            dd_old, dd_new = 1.0 - self.equity / self.peak, 1.0 - equity / new_peak
            reward = reward - cfg.drawdown_penalty * np.maximum(dd_new - dd_old, 0.0)
            reward = reward - cfg.volatility_penalty * log_ret**2
        self.peak = np.maximum(self.peak, equity)
        self.equity = equity
        return reward, terminated

    def _differential_sharpe(self, log_ret: np.ndarray) -> np.ndarray:
        """eta * D_t, D_t = (B dA - A dB / 2) / (B - A^2)^(3/2) with dA = R - A, dB = R^2 - B; then the
        moments move by eta (Moody & Saffell 2001, "Learning to trade via direct reinforcement", eq. 4)."""
        eta, a, b = self.config.sharpe_eta, self.ret_mean, self.ret_sq
        da, db = log_ret - a, log_ret**2 - b
        variance = np.maximum(b - a**2, 1e-12)
        d = (b * da - 0.5 * a * db) / variance**1.5
        self.ret_mean, self.ret_sq = a + eta * da, b + eta * db
        return eta * d

    # ---- observation ------------------------------------------------------------------------------------
    def _obs(self, rows: np.ndarray | None = None) -> np.ndarray:
        """[B, D] float32 (or [rows, D] for a boolean mask ``rows``): feature window (W*F), regime one-hot
        (K), exposure, unrealised PnL / equity."""
        sel = slice(None) if rows is None else rows
        t = self.t[sel]
        obs = np.empty((len(t), self.obs_dim), dtype=np.float32)
        wf = self._win.shape[1]
        obs[:, :wf] = self._win[t]
        if self._n_reg:
            obs[:, wf : wf + self._n_reg] = self._eye[self._regimes[t]]
        close_t = self._close[t]
        pos, eq = self.pos[sel], np.maximum(self.equity[sel], 1e-12)
        obs[:, -2] = pos * close_t * self.mult / eq
        obs[:, -1] = pos * (close_t - self.entry[sel]) * self.mult / eq
        return obs


class TradingEnv(gym.Env[np.ndarray, np.int64]):
    """The same env as one gymnasium env (B = 1, no auto-reset); ``options`` may pin ``start``/``end``."""

    def __init__(
        self, market: MarketArrays, config: EnvConfig, bounds: tuple[int, int] | None = None
    ) -> None:
        self.metadata = {"render_modes": []}
        self.vec = VecTradingEnv(market, config, n_envs=1, bounds=bounds, auto_reset=False)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.vec.obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.vec.n_actions)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        opts = options or {}
        obs = self.vec.reset(seed=seed, start=opts.get("start"), end=opts.get("end"))
        return obs[0], {"t": int(self.vec.t[0])}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, term, trunc, info = self.vec.step(np.array([int(action)]))
        return (
            obs[0],
            float(reward[0]),
            bool(term[0]),
            bool(trunc[0]),
            {k: v[0].item() for k, v in info.items()},
        )
