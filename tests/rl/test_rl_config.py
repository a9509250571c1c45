"""A training configuration refuses values that would hang, diverge or mean nothing, when it is made."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.rl.config import TrainConfig
from pipeline.rl.env import EnvConfig


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_workers": 0}, "n_workers"),
        ({"n_workers": 0, "mode": "sync"}, "n_workers"),
        ({"mode": "threads"}, "mode"),
        ({"start_method": "thread"}, "start_method"),
        ({"n_envs": 0}, "n_envs"),
        ({"n_steps": 0}, "n_steps"),
        ({"total_steps": -5}, "total_steps"),
        ({"total_steps": 0}, "total_steps"),
        ({"max_seconds": -1.0}, "max_seconds"),
        ({"total_steps": None, "max_seconds": None}, "budget"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.01}, "gamma"),
        ({"gae_lambda": 0.0}, "gae_lambda"),
        ({"gae_lambda": 1.5}, "gae_lambda"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"adam_eps": 0.0}, "adam_eps"),
        ({"ent_coef": -0.1}, "ent_coef"),
        ({"vf_coef": 0.0}, "vf_coef"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"reward_scale": 0.0}, "reward_scale"),
        ({"feature_set": "ta-v9"}, "feature set"),
    ],
)
def test_a_bad_training_config_is_refused_when_it_is_made(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"levels": ()}, "levels"),
        ({"window": 0}, "window"),
        ({"episode_length": 0}, "episode_length"),
        ({"initial_cash": 0.0}, "initial_cash"),
        ({"drawdown_penalty": -1.0}, "drawdown_penalty"),
        ({"levels": (-1.0, 1.0)}, "long only"),
    ],
)
def test_a_bad_env_config_is_refused_when_it_is_made(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnvConfig(**overrides)


def test_the_defaults_and_a_round_trip_through_json_form_are_valid() -> None:
    config = TrainConfig(total_steps=None, max_seconds=5.0, gamma=1.0, gae_lambda=1.0)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig().bootstrap_truncated
