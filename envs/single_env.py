"""One sub-env of the batched sampling env as a plain ``gymnasium.Env`` (numpy in and out), for
clients that build their own vector env (``SyncVectorEnv``, SB3's ``DummyVecEnv``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from diffgym.envs.env import DiffusionSamplingEnv, _check_seed_range
from diffgym.envs.tasks import Task

__all__ = ["DiffusionSamplingSingleEnv"]


class DiffusionSamplingSingleEnv(gym.Env):
    """One sub-env of :class:`DiffusionSamplingEnv` as a plain ``gymnasium.Env`` (numpy in/out).

    Built on the same code with ``num_envs=1`` and ``AutoresetMode.DISABLED``: after
    ``terminated`` call :meth:`reset`. Accepts the vector env's keyword arguments (except
    ``autoreset_mode``). ``info`` holds the vector env's keys as Python scalars (``final_x`` a
    numpy array); the terminal step adds the end-of-episode record (``episode_nfe``,
    ``episode_return``, ``episode_length``, ``final_x``, ``label``) and no ``episode`` key, which
    is ``gymnasium.wrappers.RecordEpisodeStatistics``'s.
    """

    metadata = {"render_modes": []}

    def __init__(self, task: Task | str = "gmm2d", render_mode: str | None = None, **kwargs: Any):
        if "autoreset_mode" in kwargs:
            raise TypeError(
                f"{type(self).__name__}.__init__() got an unexpected keyword argument "
                "'autoreset_mode' (a single env does not autoreset; call reset())"
            )
        if render_mode is not None:
            raise TypeError(
                f"render_mode={render_mode!r} is not supported (diffgym envs do not render; "
                f"allowed: None): {type(self).__name__}.__init__() got an unexpected keyword "
                f"argument 'render_mode'"
            )
        self.vec = DiffusionSamplingEnv(task, 1, autoreset_mode=AutoresetMode.DISABLED, **kwargs)
        self.render_mode = None
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.task = self.vec.task
        self.sigmas = self.vec.sigmas

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` an int in ``[0, 2**64 - 1]`` or ``None``.

        Raises:
            ValueError: a seed out of range.
        """
        if seed is not None:
            _check_seed_range([seed])
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        obs, _ = self.vec.reset(seed=seed)
        return obs[0].cpu().numpy(), {}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Raises: ``RuntimeError`` when called after ``terminated`` without :meth:`reset`."""
        a = np.asarray(action)[None]
        obs, reward, terminated, truncated, info = self.vec.step(a)
        out_info: dict[str, Any] = {}
        for key, value in info.items():
            mask = info.get("_" + key)
            if key.startswith("_") or (mask is not None and not bool(mask[0])):
                continue
            out_info[key] = value[0].item() if value.dim() == 1 else value[0].cpu().numpy()
        return (
            obs[0].cpu().numpy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]),
            out_info,
        )

    def close(self) -> None:
        self.vec.close()
