"""LSTM actor-critic: features → linear → LSTM → policy logits and state value."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored after).

    This model's batches are 1-16 rows: waking a thread pool costs more than the maths, badly so on a
    loaded machine (measured 3 ms vs 0.2 ms per step).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    # Orthogonal init as in SB3/CleanRL: small policy gain keeps the initial policy near uniform.
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class LSTMActorCritic(nn.Module):
    """Shared encoder and LSTM, two heads. Hidden state is zeroed where an episode starts."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_size: int = 64) -> None:
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden_size = obs_dim, n_actions, hidden_size
        self.encoder = nn.Sequential(_init(nn.Linear(obs_dim, hidden_size), np.sqrt(2)), nn.Tanh())
        self.lstm = nn.LSTM(hidden_size, hidden_size)
        for name, param in self.lstm.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            else:
                nn.init.orthogonal_(param, 1.0)
        self.policy_head = _init(nn.Linear(hidden_size, n_actions), 0.01)
        self.value_head = _init(nn.Linear(hidden_size, 1), 1.0)

    def initial_state(self, batch: int) -> LSTMState:
        """Zero (h, c), each [1, B, H]."""
        zeros = torch.zeros(1, batch, self.hidden_size)
        return zeros, zeros.clone()

    def forward(
        self, obs: torch.Tensor, state: LSTMState, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
        """Run a sequence: obs [T, B, D], episode_starts [T, B] (1 where obs[t] begins an episode).

        Returns logits [T, B, A], values [T, B] and the final state. The state is multiplied by
        (1 - episode_start) before a step that starts an episode, as in CleanRL's ppo_atari_lstm.
        """
        x = self.encoder(obs)  # [T, B, H]
        h, c = state
        # Split the sequence where any env starts an episode: each segment is one LSTM call (much faster
        # than T single steps) and the state is masked only at segment starts, where resets happen.
        starts_any = episode_starts.any(dim=1)
        cuts = [0, *(i for i in torch.nonzero(starts_any).flatten().tolist() if i > 0), x.shape[0]]
        outputs = []
        for lo, hi in itertools.pairwise(cuts):
            keep = (1.0 - episode_starts[lo]).view(1, -1, 1)
            out, (h, c) = self.lstm(x[lo:hi], (h * keep, c * keep))
            outputs.append(out)
        hidden = torch.cat(outputs)  # [T, B, H]
        return self.policy_head(hidden), self.value_head(hidden).squeeze(-1), (h, c)

    def step(
        self, obs: torch.Tensor, state: LSTMState, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
        """One step: obs [B, D], episode_start [B] → logits [B, A], value [B], state."""
        logits, values, state = self.forward(obs.unsqueeze(0), state, episode_start.unsqueeze(0))
        return logits[0], values[0], state

    def act_step(
        self, obs: torch.Tensor, state: LSTMState, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, LSTMState]:
        """Acting fast path, for use without gradients: logits [B, A] and the next state.

        The same maths as :meth:`step` through functional ops and one fused LSTM cell, about 3x fewer
        dispatches (the per-step cost of acting bounds A3C's throughput with small batches).
        """
        keep = (1.0 - episode_start).unsqueeze(1)  # [B, 1]
        enc = self.encoder[0]
        assert isinstance(enc, nn.Linear)
        w_ih, w_hh, b_ih, b_hh = self.lstm.all_weights[0]  # layer 0: [4H, H], [4H, H], [4H], [4H]
        x = torch.tanh(F.linear(obs, enc.weight, enc.bias))  # [B, H]
        h, c = torch.lstm_cell(x, (state[0][0] * keep, state[1][0] * keep), w_ih, w_hh, b_ih, b_hh)
        logits = F.linear(h, self.policy_head.weight, self.policy_head.bias)
        return logits, (h.unsqueeze(0), c.unsqueeze(0))
