"""A trained agent: model + config + regime model + feature normalisation, its policy, and save/load."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.features.sets import OhlcvArrays, feature_values
from pipeline.regimes.model import RegimeModel
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import VecTradingEnv
from pipeline.rl.market import FeatureNormaliser, MarketArrays
from pipeline.rl.network import LSTMActorCritic, single_threaded
from pipeline.rl.replay import Float64Policy, Replayed, replay_window, undated

AGENT_FORMAT = 1


def _with_position(
    env: VecTradingEnv, obs: np.ndarray, positions: list[float | None], entries: list[float | None]
) -> np.ndarray:
    """``obs`` with the given positions (levels) in place of the simulated ones, where one is given."""
    rows = [i for i, p in enumerate(positions) if p is not None and not math.isnan(p)]
    if not rows:
        return obs
    idx = np.asarray(rows)
    level = np.asarray([positions[i] for i in rows], dtype=np.float64)
    close = env.market.close[env.t[idx]]
    mult = env.mult
    # Futures levels are contracts; stock levels are fractions of (simulated) equity, as in training.
    units = level if env.short_ok else level * np.maximum(env.equity[idx], 1e-12) / (close * mult)
    entry = np.asarray([close[k] if entries[i] is None else entries[i] for k, i in enumerate(rows)])
    env.pos[idx], env.entry[idx] = units, entry
    out = obs.copy()
    out[idx] = env._obs()[idx]  # the env's own observation formula: exposure and unrealised PnL
    return out


def prepare_market(
    bars: pd.DataFrame,
    feature_set: str,
    regime_model: RegimeModel | None,
    normaliser: FeatureNormaliser | None = None,
) -> MarketArrays:
    """Bars → features (+ causal regime labels, + normalisation) → arrays; warm-up rows are dropped."""
    return prepare_markets([OhlcvArrays.from_frame(bars)], feature_set, regime_model, normaliser)[0]


def prepare_markets(
    windows: Sequence[OhlcvArrays],
    feature_set: str,
    regime_model: RegimeModel | None,
    normaliser: FeatureNormaliser | None = None,
) -> list[MarketArrays]:
    """:func:`prepare_market` of many series (one window per symbol), the regimes labelled in one pass:
    the arrays ``MarketArrays.from_frames`` builds from each series' feature frame and labels."""
    if regime_model is None:
        labels: list[np.ndarray] = [np.zeros(len(w), np.int64) for w in windows]
    else:
        labels = regime_model.predict_many(windows)
    n_regimes = regime_model.n_regimes if regime_model is not None else 0
    markets = []
    for bars, label in zip(windows, labels, strict=True):
        values, names = feature_values(feature_set, bars)
        keep = ~np.isnan(values).any(axis=1) & (label >= 0)  # from_frames' rule: no NaN, no warm-up label
        features = values[keep].astype(np.float32)
        markets.append(
            MarketArrays(
                **{k: getattr(bars, k)[keep] for k in ("open", "high", "low", "close")},
                features=np.ascontiguousarray(normaliser.transform(features) if normaliser else features),
                regimes=label[keep],
                n_regimes=n_regimes,
                index=bars.index[keep],
                feature_names=names,
            )
        )
    return markets


class AgentPolicy:
    """The agent as a backtest policy: carries the LSTM state across bars; greedy unless told otherwise."""

    name = "agent"

    def __init__(self, model: LSTMActorCritic, deterministic: bool = True, seed: int = 0) -> None:
        self.model, self.deterministic = model, deterministic
        self.generator = torch.Generator().manual_seed(seed)
        self.state = model.initial_state(1)
        self.start = torch.ones(1)

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        """Start of an episode: zero state."""
        self.state = self.model.initial_state(n_envs)
        self.start = torch.ones(n_envs)

    @torch.no_grad()
    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Action per env for observation ``obs`` [B, D] at bars ``t`` [B]."""
        with single_threaded():
            logits, self.state = self.model.act_step(torch.from_numpy(obs), self.state, self.start)
        self.start = torch.zeros_like(self.start)
        if self.deterministic:
            return logits.argmax(-1).numpy()
        return torch.multinomial(logits.softmax(-1), 1, generator=self.generator).squeeze(1).numpy()


class EnsemblePolicy:
    """Several agents (one per seed, trained on the same bars) as one backtest policy: each carries its
    own LSTM state; the action is the argmax of their mean action probabilities."""

    name = "ensemble"

    def __init__(self, models: Sequence[LSTMActorCritic]) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)
        self.states = [m.initial_state(1) for m in self.models]
        self.start = torch.ones(1)

    def reset(self, market: MarketArrays, n_envs: int) -> None:
        """Start of an episode: every member's state zero."""
        self.states = [m.initial_state(n_envs) for m in self.models]
        self.start = torch.ones(n_envs)

    @torch.no_grad()
    def act(self, obs: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Action per env: the most probable under the members' mean probabilities."""
        x = torch.from_numpy(obs)
        total = torch.zeros(())
        with single_threaded():
            for k, model in enumerate(self.models):
                logits, self.states[k] = model.act_step(x, self.states[k], self.start)
                total = total + logits.softmax(-1)
        self.start = torch.zeros_like(self.start)
        return total.argmax(-1).numpy()


FAST_REPLAY_MAX = 16
"""Windows of one length replayed by the compiled loop one by one; more go to the batched reference."""


class TradingAgent:
    """Everything needed to turn raw OHLCV bars into actions, exactly as in training."""

    def __init__(
        self,
        config: TrainConfig,
        model: LSTMActorCritic,
        normaliser: FeatureNormaliser,
        regime_model: RegimeModel | None,
    ) -> None:
        self.config, self.model, self.normaliser, self.regime_model = config, model, normaliser, regime_model
        self.model.eval()
        self._float64: tuple[tuple[tuple[int, int], ...], Float64Policy] | None = None

    def market(self, bars: pd.DataFrame) -> MarketArrays:
        """The arrays the agent sees for ``bars`` (features, regimes and scaling fitted in training)."""
        return prepare_market(bars, self.config.feature_set, self.regime_model, self.normaliser)

    def policy(self, deterministic: bool = True, seed: int = 0) -> AgentPolicy:
        """A fresh backtest policy backed by this agent's model."""
        return AgentPolicy(self.model, deterministic, seed)

    def decide(
        self, bars: pd.DataFrame, position: float | None = None, entry_price: float | None = None
    ) -> dict[str, Any]:
        """Action for the bar after the last of ``bars``, replaying the agent over them to build its state.

        The position the agent believes it holds is simulated by the env over the same bars; ``position``
        (a level: contracts for futures, a fraction of equity for stocks and ETFs) replaces it in the last
        observation, with ``entry_price`` (default: the last close, no unrealised PnL). Returns ``action``,
        ``target_level``, ``probabilities`` (one per action), ``value`` (the critic, in scaled reward
        units), ``regime`` (the last bar's label, or None without regimes), ``simulated_position`` (units)
        and ``timestamp`` (of the last bar).
        """
        return self.decide_batch([bars], [position], [entry_price])[0]

    def decide_batch(
        self,
        windows: Sequence[pd.DataFrame],
        positions: Sequence[float | None] | None = None,
        entry_prices: Sequence[float | None] | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`decide` for many windows (e.g. one per symbol): windows whose feature arrays have the same
        length replay together as one batch of envs and one batched LSTM. Same results as one at a time."""
        return self.decide_arrays([OhlcvArrays.from_frame(w) for w in windows], positions, entry_prices)

    def decide_arrays(
        self,
        windows: Sequence[OhlcvArrays],
        positions: Sequence[float | None] | None = None,
        entry_prices: Sequence[float | None] | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`decide_batch` of windows given as arrays (the pyfunc's path, no frames)."""
        n = len(windows)
        pos = list(positions) if positions is not None else [None] * n
        entries = list(entry_prices) if entry_prices is not None else [None] * n
        if len(pos) != n or len(entries) != n:
            raise ValueError(f"{n} windows need {n} positions and entry prices ({len(pos)}, {len(entries)})")
        markets = prepare_markets(windows, self.config.feature_set, self.regime_model, self.normaliser)
        groups: dict[int, list[int]] = {}
        for i, market in enumerate(markets):
            groups.setdefault(len(market), []).append(i)
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        for rows in groups.values():
            picked = [markets[i] for i in rows]
            replayed = self._replay(picked, [pos[i] for i in rows], [entries[i] for i in rows])
            for i, market, r in zip(rows, picked, replayed, strict=True):
                out[i] = self._decision(market, r)
        return out

    def _replay(
        self, markets: list[MarketArrays], positions: list[float | None], entries: list[float | None]
    ) -> list[Replayed]:
        """Up to :data:`FAST_REPLAY_MAX` windows: the compiled float64 replay of each, or the reference where
        a step is too close to call; more of the same length: the reference, batched (one torch LSTM over
        all rows beats one compiled loop per window from about that many on)."""
        length = len(markets[0])
        if length - (self.config.env.window - 1) < 2:
            raise ValueError(f"range [0, {length}) is too short for window {self.config.env.window}")
        if len(markets) > FAST_REPLAY_MAX:
            return self.replay_reference(markets, positions, entries)
        policy, env = self._float64_policy(), self.config.env
        fast = [
            replay_window(policy, m, env, p, e) for m, p, e in zip(markets, positions, entries, strict=True)
        ]
        close = [i for i, r in enumerate(fast) if r is None]
        if close:
            exact = self.replay_reference(
                [markets[i] for i in close], [positions[i] for i in close], [entries[i] for i in close]
            )
            for i, r in zip(close, exact, strict=True):
                fast[i] = r
        return [r for r in fast if r is not None]

    def _float64_policy(self) -> Float64Policy:
        # Rebuilt whenever a parameter changed in place (training, load_state_dict bump its version).
        key = tuple((id(p), p._version) for p in self.model.parameters())
        if self._float64 is None or self._float64[0] != key:
            self._float64 = (key, Float64Policy.of(self.model))
        return self._float64[1]

    def _decision(self, market: MarketArrays, r: Replayed) -> dict[str, Any]:
        return {
            "action": r.action,
            "target_level": float(self.config.env.levels[r.action]),
            "probabilities": r.probabilities,
            "value": r.value,
            "regime": int(market.regimes[-1]) if market.n_regimes else None,
            "simulated_position": r.simulated_position,
            "timestamp": None if market.index is None else str(market.index[-1]),
        }

    @torch.no_grad()
    def replay_reference(
        self, markets: list[MarketArrays], positions: list[float | None], entries: list[float | None]
    ) -> list[Replayed]:
        """Greedy replay of B equal-length markets as the segments of one market (env b steps through
        segment b only), with one batched LSTM; B = 1 is exactly the backtest loop over one market."""
        b, length, inst = len(markets), len(markets[0]), self.config.env.instrument
        undated_markets = [undated(m, inst) for m in markets]  # dates only where the costs need them
        market = undated_markets[0] if b == 1 else MarketArrays.concat(undated_markets)  # a segment each
        env = VecTradingEnv(market, self.config.env, n_envs=b, auto_reset=False)
        obs = env.reset(start=np.arange(b, dtype=np.int64) * length)  # each from its segment's first decision
        state, start = self.model.initial_state(b), torch.ones(b)
        with single_threaded():
            for _ in range(int(env.end[0] - env.t[0])):  # the loop of AgentPolicy.act over a backtest
                logits, state = self.model.act_step(torch.from_numpy(obs), state, start)
                start = torch.zeros_like(start)
                obs, *_ = env.step(logits.argmax(-1).numpy())
            simulated = env.pos.copy()
            obs = _with_position(env, obs, positions, entries)
            logits, state = self.model.act_step(torch.from_numpy(obs), state, start)
            values = self.model.value_head(state[0][0]).squeeze(-1)
        probabilities = logits.softmax(-1).double().numpy()
        actions = logits.argmax(-1).numpy()
        return [
            Replayed(int(actions[i]), probabilities[i].tolist(), float(values[i]), float(simulated[i]))
            for i in range(b)
        ]

    # ---- persistence --------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``agent.json`` (config, shapes, scaling), ``model.pt`` and ``regimes/`` to ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": AGENT_FORMAT,
            "config": self.config.to_dict(),
            "obs_dim": self.model.obs_dim,
            "n_actions": self.model.n_actions,
            "normaliser": self.normaliser.to_dict(),
            "has_regimes": self.regime_model is not None,
        }
        (d / "agent.json").write_text(json.dumps(meta, indent=2))
        torch.save(self.model.state_dict(), d / "model.pt")
        if self.regime_model is not None:
            self.regime_model.save(d / "regimes")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> TradingAgent:
        """Inverse of :meth:`save`."""
        d = Path(directory)
        meta = json.loads((d / "agent.json").read_text())
        if meta["format"] != AGENT_FORMAT:
            raise ValueError(f"agent format {meta['format']} is not {AGENT_FORMAT}")
        config = TrainConfig.from_dict(meta["config"])
        model = LSTMActorCritic(meta["obs_dim"], meta["n_actions"], config.hidden_size)
        model.load_state_dict(torch.load(d / "model.pt", weights_only=True))
        regimes = RegimeModel.load(d / "regimes") if meta["has_regimes"] else None
        return cls(config, model, FeatureNormaliser.from_dict(meta["normaliser"]), regimes)
