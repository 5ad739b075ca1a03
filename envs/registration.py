"""``gymnasium.register`` calls for the embedded tasks (run by ``import diffgym``)."""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_IDS", "register_envs"]

ENV_IDS = {
    "diffgym/GMM2D-v0": "gmm2d",
    "diffgym/GMM2DBias-v0": "gmm2d-bias",
    "diffgym/Digits-v0": "digits",
    "diffgym/DigitsWeak-v0": "digits-weak",
    "diffgym/GMM2DNet-v0": "gmm2d-net",
    "diffgym/GMM2DNet4Step-v0": "gmm2d-net-4step",
    "diffgym/CMix-v0": "cmix",
}
"""Gymnasium id -> task name."""


def register_envs() -> None:
    """Register every embedded task (idempotent): ``entry_point`` is the single env,
    ``vector_entry_point`` the batched torch env; keyword arguments pass through to both."""
    for env_id, task in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="diffgym.envs.env:DiffusionSamplingSingleEnv",
            vector_entry_point="diffgym.envs.env:DiffusionSamplingEnv",
            kwargs={"task": task},
            disable_env_checker=False,
        )
