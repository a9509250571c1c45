"""LSTM actor-critic: episode resets, the segmented sequence pass and the acting fast path agree."""

from __future__ import annotations

import torch

from pipeline.rl.network import LSTMActorCritic


def _rollout() -> tuple[LSTMActorCritic, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = LSTMActorCritic(obs_dim=5, n_actions=3, hidden_size=16)
    obs = torch.randn(12, 4, 5)  # [T, B, D]
    starts = torch.zeros(12, 4)
    starts[0] = 1.0
    starts[5, 1] = starts[9, 3] = 1.0  # two envs start new episodes mid-rollout
    return model, obs, starts


def test_sequence_pass_equals_step_by_step_and_the_fast_acting_path() -> None:
    model, obs, starts = _rollout()
    with torch.no_grad():
        logits, values, _ = model(obs, model.initial_state(4), starts)
        state, fast_state = model.initial_state(4), model.initial_state(4)
        for t in range(12):
            step_logits, step_value, state = model.step(obs[t], state, starts[t])
            fast_logits, fast_state = model.act_step(obs[t], fast_state, starts[t])
            torch.testing.assert_close(step_logits, logits[t])
            torch.testing.assert_close(step_value, values[t])
            torch.testing.assert_close(fast_logits, logits[t])
    assert logits.shape == (12, 4, 3) and values.shape == (12, 4)


def test_hidden_state_is_reset_where_an_episode_starts() -> None:
    model, obs, starts = _rollout()
    with torch.no_grad():
        base, _, _ = model(obs, model.initial_state(4), starts)
        other = obs.clone()
        other[:5, 1] += 3.0  # change env 1's previous episode only
        changed, _, _ = model(other, model.initial_state(4), starts)
    torch.testing.assert_close(base[5:, 1], changed[5:, 1])  # its new episode does not remember the old one
    assert not torch.allclose(base[:5, 1], changed[:5, 1])
    torch.testing.assert_close(base[:, 0], changed[:, 0])  # other envs untouched
