"""A trained agent: model + config + regime model + feature normalisation, its policy, and save/load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.features import get_feature_fn
from pipeline.regimes.model import RegimeModel
from pipeline.rl.config import TrainConfig
from pipeline.rl.env import VecTradingEnv
from pipeline.rl.market import FeatureNormaliser, MarketArrays
from pipeline.rl.network import LSTMActorCritic, single_threaded

AGENT_FORMAT = 1


def prepare_market(
    bars: pd.DataFrame,
    feature_set: str,
    regime_model: RegimeModel | None,
    normaliser: FeatureNormaliser | None = None,
) -> MarketArrays:
    """Bars → features (+ causal regime labels, + normalisation) → arrays; warm-up rows are dropped."""
    features = get_feature_fn(feature_set)(bars)
    labels = regime_model.predict(bars) if regime_model is not None else None
    n_regimes = regime_model.n_regimes if regime_model is not None else 0
    market = MarketArrays.from_frames(bars, features, labels, n_regimes)
    if normaliser is not None:
        market = market.with_features(normaliser.transform(market.features))
    return market


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

    def market(self, bars: pd.DataFrame) -> MarketArrays:
        """The arrays the agent sees for ``bars`` (features, regimes and scaling fitted in training)."""
        return prepare_market(bars, self.config.feature_set, self.regime_model, self.normaliser)

    def policy(self, deterministic: bool = True, seed: int = 0) -> AgentPolicy:
        """A fresh backtest policy backed by this agent's model."""
        return AgentPolicy(self.model, deterministic, seed)

    def decide(self, bars: pd.DataFrame) -> dict[str, Any]:
        """Action for the bar after the last of ``bars``, replaying the agent over them to build its state.

        The position the agent believes it holds is simulated by the env over the same bars. ``regime`` is
        the last bar's label, or None when the agent was trained without regimes.
        """
        market = self.market(bars)
        env = VecTradingEnv(market, self.config.env, n_envs=1, auto_reset=False)
        obs = env.reset(start=env.lo)
        policy = self.policy()
        policy.reset(market, 1)
        while env.t[0] < len(market) - 1:
            obs, *_ = env.step(policy.act(obs, env.t))
        action = int(policy.act(obs, env.t)[0])
        return {
            "action": action,
            "target_level": float(env.levels[action]),
            "regime": int(market.regimes[-1]) if market.n_regimes else None,
            "simulated_position": float(env.pos[0]),
            "timestamp": None if market.index is None else str(market.index[-1]),
        }

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
