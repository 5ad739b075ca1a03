"""Numpy face of the torch vector env, for Gymnasium's numpy-only vector wrappers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv, VectorWrapper

__all__ = ["TorchToNumpy"]


def _to_numpy(value: Any) -> Any:
    """Tensors (also inside dicts, lists and tuples) -> numpy arrays on the host."""
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value


class TorchToNumpy(VectorWrapper):
    """Numpy in and out for a :class:`~diffgym.envs.env.DiffusionSamplingEnv` (or any vector env
    returning torch tensors): observations ``(num_envs, obs_dim)`` float32, rewards
    ``(num_envs,)`` float32, terminations bool, and every tensor in ``info`` (nested dicts
    included) become numpy arrays; numpy actions pass through (the env takes them directly).

    Put it first, then Gymnasium's vector wrappers, which compute with numpy
    (``RecordEpisodeStatistics``, ``NormalizeObservation``, ``NormalizeReward``,
    ``DictInfoToList``, ...)::

        env = gym.make_vec("diffgym/GMM2D-v0", num_envs=64, vectorization_mode="vector_entry_point")
        env = RecordEpisodeStatistics(TorchToNumpy(env))

    The env's autoreset mode passes through in ``metadata``. One device-to-host copy per
    output per step; a torch-native training loop should use the env directly.
    """

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The env's reset with numpy outputs."""
        obs, info = self.env.reset(seed=seed, options=options)
        return _to_numpy(obs), _to_numpy(info)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """The env's step with numpy outputs: ``(obs, reward, terminated, truncated, info)``."""
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return (
            _to_numpy(obs),
            _to_numpy(reward),
            _to_numpy(terminated),
            _to_numpy(truncated),
            _to_numpy(info),
        )
