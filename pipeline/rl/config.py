"""The one training configuration (CleanRL-style dataclass, a docstring per field), logged whole as params."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from pipeline.features import get_feature_fn
from pipeline.regimes.model import RegimeConfig
from pipeline.rl.env import EnvConfig

Mode = Literal["async", "sync"]
StartMethod = Literal["fork", "spawn", "forkserver"]
LRSchedule = Literal["linear", "constant"]
_POSITIVE = ("learning_rate", "adam_eps", "vf_coef", "max_grad_norm", "reward_scale")


@dataclass
class TrainConfig:
    """A3C training of the LSTM actor-critic on one market."""

    seed: int = 0
    """Seeds the model init, every worker's env starts and action sampling (see ``train``)."""
    mode: Mode = "async"
    """``async``: true A3C over worker processes; ``sync``: the same workers round-robin in this process
    (deterministic, for tests and debugging)."""
    n_workers: int = 2
    """A3C worker processes (Mnih et al. 2016 used 16 CPU threads)."""
    start_method: StartMethod = "fork"
    """multiprocessing start method; ``fork`` works inside Airflow's LocalExecutor, ``spawn`` does not."""
    n_envs: int = 8
    """Envs per worker, stepped together as one batch."""
    n_steps: int = 20
    """Rollout length per update (the n of n-step returns; also the truncated-BPTT length)."""
    total_steps: int | None = 100_000
    """Budget in env steps summed over workers and envs; ``None``: only ``max_seconds`` stops training."""
    max_seconds: float | None = None
    """Budget in wall-clock seconds; ``None``: only ``total_steps`` stops training."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda (Schulman et al. 2016); 1.0 gives A3C's plain n-step returns."""
    bootstrap_truncated: bool = True
    """Bootstrap an episode cut by its time limit (or the end of the data) from V(final observation)
    (Pardo et al. 2018; SB3 ``collect_rollouts``). ``False`` treats time limits as terminal, which biases
    the critic; it exists only to measure that bias."""
    learning_rate: float = 7e-4
    """Initial Adam learning rate of the shared optimiser."""
    lr_schedule: LRSchedule = "linear"
    """``linear`` decays to 0 over the budget (steps or seconds, whichever is further along)."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip per worker update."""
    hidden_size: int = 64
    """Width of the encoder and of the LSTM."""
    reward_scale: float = 10.0
    """Rewards (log-equity changes, ~1e-2 per bar) are multiplied by this before the loss. At 100 the value
    loss spikes and long constant-rate runs collapsed to a deterministic flat policy; 10 stays stable."""
    feature_set: str = "ta-v1"
    """Name of the feature builder (``pipeline.features.FEATURE_SETS``)."""
    progress: bool = True
    """Show a progress bar with steps/s and recent episode return."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Trading rules (instrument, costs, levels, window, episode length)."""
    regimes: RegimeConfig = field(default_factory=RegimeConfig)
    """Regime clustering, fitted on the training bars only."""

    def __post_init__(self) -> None:
        """Refuse, at construction, values that would hang (no workers: the async parent waits forever),
        never stop (no budget) or mean nothing (gamma outside (0, 1], a non-positive learning rate)."""
        for name, allowed in (("mode", Mode), ("start_method", StartMethod), ("lr_schedule", LRSchedule)):
            if getattr(self, name) not in get_args(allowed):
                raise ValueError(f"{name} must be one of {get_args(allowed)}, got {getattr(self, name)!r}")
        if self.total_steps is None and self.max_seconds is None:
            raise ValueError("TrainConfig needs a budget: set total_steps or max_seconds")
        checks: list[tuple[str, Callable[[Any], bool], str]] = [
            *((name, lambda v: v >= 1, "≥ 1") for name in ("n_workers", "n_envs", "n_steps", "hidden_size")),
            ("total_steps", lambda v: v is None or v >= 1, "≥ 1 or None"),
            ("max_seconds", lambda v: v is None or v > 0, "> 0 or None"),
            *((name, lambda v: 0.0 < v <= 1.0, "in (0, 1]") for name in ("gamma", "gae_lambda")),
            *((name, lambda v: v > 0, "> 0") for name in _POSITIVE),
            ("ent_coef", lambda v: v >= 0, "≥ 0"),
        ]
        for name, ok, rule in checks:
            if not ok(getattr(self, name)):
                raise ValueError(f"TrainConfig.{name} must be {rule}, got {getattr(self, name)!r}")
        get_feature_fn(self.feature_set)  # an unknown name raises now, not after the regimes are fitted

    def to_dict(self) -> dict[str, Any]:
        """Nested JSON-able form (round-trips through :meth:`from_dict`)."""
        out = {k: v for k, v in asdict(self).items() if k not in {"env", "regimes"}}
        out["env"] = self.env.to_dict()
        out["regimes"] = asdict(self.regimes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        d["env"] = EnvConfig.from_dict(d["env"])
        d["regimes"] = RegimeConfig(**d["regimes"])
        return cls(**d)

    def flat_params(self) -> dict[str, Any]:
        """Flat ``a.b.c → value`` mapping (MLflow params)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), value)
            else:
                out[prefix] = node

        walk("", self.to_dict())
        return out
