"""SB3 face of the torch vector env: the one numpy boundary (one device->host copy per step)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from diffgym.envs.env import DiffusionSamplingEnv

__all__ = ["SB3VecEnv", "to_sb3", "unwrap_env"]


class SB3VecEnv(VecEnv):
    """Stable-Baselines3 ``VecEnv`` over a :class:`DiffusionSamplingEnv`.

    Per step: actions go to the device once; observation, reward, done and the step's NFE come
    back to the host in one copy (zero-copy views on the CPU), the final observations and
    end-of-episode records in a few more on steps where an episode ends. Finished envs carry
    ``terminal_observation``, ``TimeLimit.truncated`` and ``episode = {"r", "l", "t"}`` (the SB3
    ``Monitor`` form, read by ``ep_info_buffer``; ``t`` is seconds since this adapter was made)
    plus ``nfe`` (the env's ``episode_nfe``); every info has the step's ``nfe``. It works with
    ``PPO("MlpPolicy", venv)`` unmodified and as the ``venv`` of imitation's adversarial trainers.

    SB3 needs same-step autoreset (``terminal_observation`` in the finished env's info), so the
    adapter switches ``env`` to ``AutoresetMode.SAME_STEP``
    (:meth:`~diffgym.envs.env.DiffusionSamplingEnv.set_autoreset_mode`): the env belongs to the
    adapter from then on.

    Raises:
        TypeError: ``env`` is not a bare :class:`DiffusionSamplingEnv` (see :func:`to_sb3`).
        ValueError: ``env`` has finished episodes awaiting a reset in another autoreset mode.
    """

    def __init__(self, env: DiffusionSamplingEnv) -> None:
        _check_unwrapped(env)
        env.set_autoreset_mode(AutoresetMode.SAME_STEP)
        self.env = env
        self._t_start = time.perf_counter()
        self.render_mode = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self.total_nfe = 0
        """Denoiser evaluations spent by all sub-envs since construction (the rollout cost)."""
        self.total_steps = 0
        """Env transitions (summed over sub-envs) since construction."""
        self.total_episodes = 0
        """Episodes finished (summed over sub-envs) since construction."""

    # -- core --------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async must be called before step_wait"
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        done = terminated | truncated
        if self.env.device.type == "cpu":  # zero-copy views
            obs_np, reward_np, done_np = obs.numpy(), reward.numpy(), done.numpy()
            nfe = info["nfe"].numpy()
        else:  # one device -> host copy of obs, reward, done and NFE together
            d = obs.shape[1]
            cols = (reward[:, None], done[:, None], info["nfe"][:, None])
            packed = torch.cat([obs, *(c.to(obs.dtype) for c in cols)], dim=1).cpu().numpy()
            obs_np = np.ascontiguousarray(packed[:, :d])
            reward_np = packed[:, d].copy()
            done_np = packed[:, d + 1] > 0.5
            nfe = packed[:, d + 2].astype(np.int64)
        self.total_nfe += int(nfe.sum())
        self.total_steps += self.num_envs
        self.total_episodes += int(done_np.sum())
        infos: list[dict[str, Any]] = [{"nfe": n} for n in nfe.tolist()]
        if done_np.any():
            final_obs = info["final_obs"].cpu().numpy()
            record = info["final_info"]
            ep = {
                k: record[f"episode_{k}"].cpu().numpy() for k in ("return", "length", "nfe")
            }
            t = round(time.perf_counter() - self._t_start, 6)
            # Python scalars converted once per array (not one numpy scalar per sub-env)
            ret, length, ep_nfe = (ep[k].tolist() for k in ("return", "length", "nfe"))
            trunc = truncated.cpu().numpy().tolist()
            for b in np.flatnonzero(done_np).tolist():
                info_b = infos[b]
                info_b["terminal_observation"] = final_obs[b]
                info_b["TimeLimit.truncated"] = bool(trunc[b])
                info_b["episode"] = {"r": ret[b], "l": int(length[b]), "t": t,
                                     "nfe": int(ep_nfe[b])}
        return obs_np, reward_np, done_np, infos

    def close(self) -> None:
        self.env.close()

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next reset (SB3 convention: sub-env ``b`` gets ``seed + b``)."""
        return super().seed(seed)

    # -- attributes --------------------------------------------------------------------------
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The vector env's attribute, once per requested sub-env index (all share one env)."""
        target = self if attr_name == "render_mode" else self.env
        value = getattr(target, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on the vector env (shared by all sub-envs)."""
        self._indices(indices)
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        """Call a method of the vector env once and return its result per requested index."""
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            indices = [indices]
        out = list(indices)
        for i in out:
            if not 0 <= int(i) < self.num_envs:
                raise IndexError(f"env index {i} out of range 0..{self.num_envs - 1}")
        return out

    @property
    def task(self):
        return self.env.task

    @property
    def torch_device(self) -> torch.device:
        return self.env.device


def to_sb3(vector_env: DiffusionSamplingEnv) -> SB3VecEnv:
    """Wrap a :class:`DiffusionSamplingEnv` as an SB3 VecEnv (switching it to same-step
    autoreset, which SB3 needs).

    Gymnasium vector wrappers are refused rather than dropped: they are written for Gymnasium's
    step API and autoreset mode (``NormalizeObservation`` refuses same-step autoreset), so the
    adapter could not apply them faithfully. Use SB3's own wrappers on the result instead
    (``VecNormalize``, ``VecMonitor``, a ``VecEnvWrapper`` for a reward transform).

    Raises:
        TypeError: ``vector_env`` is a Gymnasium wrapper (the message names the wrappers and the
            SB3 replacements) or not a diffgym env.
    """
    return SB3VecEnv(vector_env)


def _check_unwrapped(env: Any) -> None:
    if isinstance(env, DiffusionSamplingEnv):
        return
    if isinstance(env, (gym.vector.VectorWrapper, gym.Wrapper)) and isinstance(
        env.unwrapped, DiffusionSamplingEnv
    ):
        names, inner = [], env
        while inner is not env.unwrapped:
            names.append(type(inner).__name__)
            inner = inner.env
        raise TypeError(
            f"to_sb3 needs the bare DiffusionSamplingEnv, got it inside Gymnasium wrapper(s) "
            f"{', '.join(names)}, which SB3 would bypass; wrap the SB3 VecEnv instead "
            "(to_sb3(env) then VecNormalize / VecMonitor / a VecEnvWrapper), or pass "
            "env.unwrapped to drop the wrappers on purpose"
        )
    raise TypeError(f"to_sb3 needs a DiffusionSamplingEnv, got {type(env).__name__}")


def unwrap_env(env: Any) -> DiffusionSamplingEnv:
    """The torch env behind ``env``: itself, :func:`~diffgym.envs.sb3.to_sb3`'s adapter, or a
    (Gymnasium or SB3) wrapper of either.

    Raises:
        TypeError: there is no :class:`DiffusionSamplingEnv` behind ``env``.
    """
    inner = env
    while not isinstance(inner, DiffusionSamplingEnv):
        if hasattr(inner, "env"):  # SB3VecEnv, Gymnasium wrappers
            inner = inner.env
        elif hasattr(inner, "venv"):  # SB3 VecEnvWrapper
            inner = inner.venv
        else:
            break
    if not isinstance(inner, DiffusionSamplingEnv):
        raise TypeError(
            f"expected a DiffusionSamplingEnv or a wrapper of one (e.g. to_sb3(env)), "
            f"got {type(env).__name__}"
        )
    return inner
