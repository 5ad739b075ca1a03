"""The sampling MDP as a batched Gymnasium vector env (torch, CPU or GPU), and a single-env face."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from diffgym.envs.features import (
    C_NOISE_BOUND,
    SCALED_X_BOUND,
    featurize,
    obs_dim,
    sigma_features,
)
from diffgym.envs.menus import KNOBS, ActionMenus
from diffgym.envs.sampler import BatchNoise, FiniteCheck, Knobs, PerSampleNoise, sampler_step
from diffgym.envs.tasks import Task, make_task, validate_menus, with_step_factor

__all__ = ["DiffusionSamplingEnv", "DiffusionSamplingSingleEnv", "KNOBS", "REWARDS"]


REWARDS = ("none", "terminal_logp")
NOISE_MODES = ("batch", "per_sample")


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda[:N]'") from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available")
    return dev


class DiffusionSamplingEnv(VectorEnv):
    """The sampler of a frozen denoiser as a batched finite-horizon MDP (design §3).

    All state lives in torch tensors on ``device`` (allocated once); one :meth:`step` advances every
    sub-env with one call of :func:`~diffgym.envs.sampler.sampler_step` (one batched denoiser call
    per NFE stage). Observations, rewards, terminations and infos are torch tensors on ``device``;
    :func:`~diffgym.envs.sb3.to_sb3` converts them to numpy once per step for SB3.

    * **Observation**: flat ``Box`` (:func:`~diffgym.envs.features.featurize`):
      ``c_in(sigma_i) x`` flattened, ``c_noise(sigma_i)``, ``i/N``, renoise-budget fraction,
      one-hot label. With the step knob, ``i`` and ``N`` are on the base grid (``i/M``).
    * **Action**: one menu index per active knob (``churn``, ``guidance``, ``renoise``, ``step``
      — those whose menu has more than one entry): ``Discrete`` for one, ``MultiDiscrete`` for
      several.
      Index 0 is neutral, so the all-zero action is EDM's deterministic Heun step. Choices that
      are not allowed at a step (renoise at step 0 or without budget, churn at the last step) act
      as neutral and are flagged in ``info["renoise_ignored"]`` / ``info["churn_ignored"]``.
    * **Step knob** (off unless the task's ``step_advances`` menu has more than one entry): the
      state walks the task's base grid (:meth:`~diffgym.envs.tasks.Task.base_sigmas`, ``M =
      schedule_factor (N - 1) + 1`` levels whose every ``schedule_factor``-th level is the
      default schedule); ``step_advances[k]`` base levels per step (entry 0 the neutral
      ``schedule_factor``: the default sampler), clipped so the last step lands on ``sigma =
      0``. Renoise jumps stay in the task's default steps (``schedule_factor`` base levels
      each). ``env.sigmas`` and ``env.num_steps`` are the base grid's (the task's schedule when
      the knob is off).
    * **Reward**: 0 (the IRL wrapper supplies the learning signal) minus ``nfe_penalty`` times the
      step's NFE; with ``reward="terminal_logp"`` (mixture tasks) plus the exact log density of
      the final sample under the target mixture, paid at the last step.
    * **Start**: ``x ~ N(0, sigma_0^2 I)``, ``i = 0``, label from the task's label distribution,
      full renoise budget.
    * **End**: terminated when ``i = N``; never truncated. Episodes have ``N`` steps plus one per
      renoise taken (with the step knob, as many steps as the advances take to reach ``M``).
    * **Autoreset**: ``AutoresetMode.SAME_STEP``: a finished sub-env resets within the step; its
      last observation is ``info["final_obs"]`` and its info ``info["final_info"]`` (masks
      ``info["_final_obs"]``, ``info["_final_info"]``), and its episode statistics are
      ``info["episode"] = {"r", "l", "t", "nfe"}`` with mask ``info["_episode"]``.

    Args:
        task: a :class:`~diffgym.envs.tasks.Task` or a task name for
            :func:`~diffgym.envs.tasks.make_task`.
        num_envs: number of sub-envs (>= 1).
        device: ``"cpu"`` or ``"cuda"``.
        churn_levels, guidance_levels, renoise_jumps, renoise_budget: menu overrides.
        step_advances, schedule_factor: step knob overrides (``step_advances`` alone sets
            ``schedule_factor = step_advances[0]``), e.g.
            :data:`~diffgym.envs.tasks.RECOMMENDED_STEP_MENU`.
        s_noise: ``S_noise`` applied with churn.
        nfe_penalty: reward ``-nfe_penalty * NFE`` per step (>= 0).
        reward: ``"none"`` or ``"terminal_logp"``.
        noise: ``"batch"`` (one generator; default, fast) or ``"per_sample"`` (one generator per
            sub-env: sub-env ``b``'s randomness depends only on ``seed + b``).
        check_finite: raise if the denoiser returns NaN/inf.
        render_mode: only ``None`` is supported.
        **task_overrides: passed to :func:`make_task` when ``task`` is a name.

    Raises:
        ValueError: ``num_envs < 1``, unknown device, reward or noise mode, bad menus.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        task: Task | str = "gmm2d",
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        churn_levels: Sequence[float] | None = None,
        guidance_levels: Sequence[float] | None = None,
        renoise_jumps: Sequence[int] | None = None,
        renoise_budget: int | None = None,
        step_advances: Sequence[int] | None = None,
        schedule_factor: int | None = None,
        s_noise: float = 1.0,
        nfe_penalty: float = 0.0,
        reward: str = "none",
        noise: str = "batch",
        check_finite: bool = True,
        render_mode: str | None = None,
        **task_overrides: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        self.device = _resolve_device(device)
        if isinstance(task, str):
            task = make_task(task, **task_overrides)
        elif task_overrides:
            raise TypeError(
                f"task overrides {sorted(task_overrides)} need a task name, not a Task object"
            )
        menus = {
            "churn_levels": churn_levels,
            "guidance_levels": guidance_levels,
            "renoise_jumps": renoise_jumps,
            "renoise_budget": renoise_budget,
        }
        changes = {
            k: (v if k == "renoise_budget" else tuple(v)) for k, v in menus.items() if v is not None
        }
        if changes:
            validate_menus(**{**_menus_of(task), **changes})
        steps = {"step_advances": step_advances, "schedule_factor": schedule_factor}
        steps = with_step_factor({k: v for k, v in steps.items() if v is not None})
        if "step_advances" in steps:
            steps["step_advances"] = tuple(steps["step_advances"])
        changes.update(steps)
        if changes:
            task = task.replace(**changes)
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}; allowed: {', '.join(REWARDS)}")
        if reward == "terminal_logp" and task.target is None:
            raise ValueError(f"reward='terminal_logp' needs a mixture task; {task.name!r} has none")
        if noise not in NOISE_MODES:
            raise ValueError(f"unknown noise mode {noise!r}; allowed: {', '.join(NOISE_MODES)}")
        if not math.isfinite(nfe_penalty) or nfe_penalty < 0:
            raise ValueError(f"nfe_penalty must be finite and >= 0, got {nfe_penalty}")
        if not math.isfinite(s_noise) or s_noise < 0:
            raise ValueError(f"s_noise must be finite and >= 0, got {s_noise}")
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported; allowed: None")
        self.render_mode = None
        self.task = task.to(self.device)
        self.num_envs = num_envs
        self.reward_kind = reward
        self.nfe_penalty = float(nfe_penalty)
        self.noise_mode = noise
        self.check_finite = check_finite
        self.dtype = task.dtype
        # The state walks the step knob's base grid (the task's own schedule when it is off).
        self.sigmas = task.base_sigmas(self.device, self.dtype)
        self.num_steps = task.base_steps
        self.schedule_factor = task.schedule_factor
        self.data_shape = task.data_shape
        self.num_classes = task.num_classes

        # Active knobs and their menus (entry 0 neutral).
        self.action_menus = ActionMenus(task, device=self.device, dtype=self.dtype)
        self.knob_names = self.action_menus.names
        self.menus = self.action_menus.menus
        self._menu_sizes = np.array(self.action_menus.sizes, dtype=np.int64)
        self.renoise_budget = self.action_menus.renoise_budget
        self._guide = task.guide if self.action_menus.guided else None
        self._s_noise = torch.full(
            (num_envs,), float(s_noise), device=self.device, dtype=self.dtype
        )

        # Spaces.
        dim = obs_dim(self.data_shape, self.num_classes)
        d = int(math.prod(self.data_shape))
        low = np.zeros(dim, dtype=np.float32)
        high = np.ones(dim, dtype=np.float32)
        low[:d], high[:d] = -SCALED_X_BOUND, SCALED_X_BOUND
        low[d], high[d] = -C_NOISE_BOUND, C_NOISE_BOUND
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        if len(self.knob_names) <= 1:
            n = int(self._menu_sizes[0]) if len(self.knob_names) == 1 else 1
            self.single_action_space = spaces.Discrete(n)
        else:
            self.single_action_space = spaces.MultiDiscrete(self._menu_sizes)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        # State, allocated once on the device.
        dev = self.device
        self.x = torch.zeros((num_envs, *self.data_shape), device=dev, dtype=self.dtype)
        self.step_index = torch.zeros(num_envs, dtype=torch.long, device=dev)
        self.labels = (
            torch.zeros(num_envs, dtype=torch.long, device=dev) if self.num_classes > 0 else None
        )
        self.budget = torch.zeros(num_envs, dtype=torch.long, device=dev)
        self.episode_nfe = torch.zeros(num_envs, dtype=torch.long, device=dev)
        self.episode_return = torch.zeros(num_envs, dtype=torch.float64, device=dev)
        self.episode_length = torch.zeros(num_envs, dtype=torch.long, device=dev)
        self._label_probs = (
            task.label_probs.to(dev, torch.float64) if task.label_probs is not None else None
        )
        self._noise: BatchNoise | PerSampleNoise | None = None
        # Finite checks of the denoiser outputs, read with the next step's one host sync.
        self._finite = FiniteCheck()
        self._uniform_step: int | None = None  # every sub-env at this step index, if known
        self._t_start = time.perf_counter()
        self._needs_reset = True

        # Constants of step() and _observe(), built once (each saves a tensor op per step).
        k = max(len(self.knob_names), 1)
        self._action_shape = (num_envs,) if not self._multi else (num_envs, k)
        self._menu_sizes_np = self._menu_sizes if self.knob_names else np.ones(1, np.int64)
        self._menu_sizes_t = torch.as_tensor(self._menu_sizes_np, device=dev)
        # Per (base-grid) step index i = 0..N: c_in(sigma_i), c_noise feature, i / N (rows of
        # _observe).
        step_frac = torch.arange(self.num_steps + 1, device=dev, dtype=self.dtype) / self.num_steps
        self._obs_table = torch.cat(
            [sigma_features(self.sigmas, sigma_data=task.sigma_data), step_frac[:, None]], dim=1
        )
        self._no_budget = torch.zeros(num_envs, device=dev, dtype=self.dtype)

    # ----------------------------------------------------------------------------------------
    # Gymnasium API
    # ----------------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset every sub-env; ``seed`` makes the episode sequence reproducible.

        Args:
            seed: an int, or a list of ``num_envs`` ints (``"per_sample"`` noise: sub-env ``b``
                is seeded with ``seed[b]``; ``"batch"`` noise: the one generator with
                ``seed[0]``). An int ``s`` stands for ``[s, s + 1, ...]``. ``None``: continue
                the current random streams (fresh entropy on the first reset), as Gymnasium
                envs do.
            options: unused.

        Returns:
            ``(obs (num_envs, obs_dim), info)`` with torch tensors on ``device``.
        """
        seeds = None
        if isinstance(seed, (list, tuple)):
            if len(seed) != self.num_envs or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seed
            ):
                raise ValueError(
                    f"seed must be an int or a list of {self.num_envs} ints, got {seed!r}"
                )
            seeds = [int(s) for s in seed]
            seed = seeds[0]
        elif isinstance(seed, np.integer):
            seed = int(seed)
        super().reset(seed=seed)
        if seed is None and self._noise is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        if seed is None:
            pass  # Gymnasium convention: reset() without a seed continues the current streams
        elif self.noise_mode == "per_sample":
            seeds = seeds or [seed + b for b in range(self.num_envs)]
            self._noise = PerSampleNoise(seeds, device=self.device, dtype=self.dtype)
        else:
            self._noise = BatchNoise(self.num_envs, device=self.device, dtype=self.dtype, seed=seed)
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._reset_envs(everyone)
        self._uniform_step = 0
        self._t_start = time.perf_counter()
        self._needs_reset = False
        return self._observe(), {}

    def step(
        self, actions: np.ndarray | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance every sub-env one transition.

        Args:
            actions: ``(num_envs,)`` (``Discrete``) or ``(num_envs, num_knobs)``
                (``MultiDiscrete``) menu indices, numpy or torch.

        Returns:
            ``(obs, reward, terminated, truncated, info)``: ``(num_envs, obs_dim)`` float32,
            ``(num_envs,)`` float32, bool, bool, and a dict of tensors.

        Raises:
            ValueError: wrong action shape or dtype, a NaN, or an index outside its menu (names
                the sub-env and the value); the env state is unchanged.
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        idx, used = self._validate_actions(actions, used=True)
        out = sampler_step(
            self.task.denoiser,
            self.x,
            self.step_index,
            self.sigmas,
            knobs=self.action_menus.knobs(idx, self._s_noise, used=used),
            labels=self.labels,
            guide=self._guide,
            budget=self.budget,
            noise=self._noise,
            validate=False,
            check_finite=self.check_finite,
            finite=self._finite,
            uniform=self._uniform_step,
            advance=self.schedule_factor,
        )
        self.x, self.step_index, self.budget = out.x, out.step_index, out.budget
        self._uniform_step = out.uniform
        if out.unfinished == 0:  # every sub-env ends: they start over together
            self._uniform_step = 0
            if self.check_finite:
                self._finite.check()  # once per episode
        terminated = self.step_index >= self.num_steps
        any_done = out.unfinished < self.num_envs  # read with the step's one host sync
        # Reward: accumulated in float64, returned as float32; constant 0 unless configured.
        if self.nfe_penalty or self.reward_kind != "none":
            reward = out.nfe.to(torch.float64) * -self.nfe_penalty
            if self.reward_kind == "terminal_logp" and any_done:
                assert self.task.target is not None
                logp = self.task.target.log_prob(self.x.to(torch.float64))
                reward = reward + torch.where(terminated, logp, torch.zeros_like(logp))
            self.episode_return += reward
            reward = reward.to(torch.float32)
        else:
            reward = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
        self.episode_nfe += out.nfe
        self.episode_length += 1
        info: dict[str, Any] = {
            "nfe": out.nfe,
            "renoised": out.renoised,
            "churn_ignored": out.churn_ignored,
            "renoise_ignored": out.renoise_ignored,
        }
        if any_done:
            final_obs = self._observe()
            episode = {
                "r": self.episode_return.clone(),
                "l": self.episode_length.clone(),
                "t": torch.full(
                    (self.num_envs,), round(time.perf_counter() - self._t_start, 6),
                    device=self.device, dtype=torch.float64,
                ),
                "nfe": self.episode_nfe.clone(),
            }
            info["final_obs"], info["_final_obs"] = final_obs, terminated
            info["final_info"] = {
                "episode": episode,
                "_episode": terminated,
                "final_x": self.x.clone(),
                "_final_x": terminated,
            }
            if self.labels is not None:
                info["final_info"]["label"] = self.labels.clone()
                info["final_info"]["_label"] = terminated
            info["_final_info"] = terminated
            info["episode"], info["_episode"] = episode, terminated
            self._reset_envs(terminated)
        truncated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return self._observe(), reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self._noise = None

    # ----------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------

    def _reset_envs(self, mask: torch.Tensor) -> None:
        """Start new episodes in the sub-envs where ``mask`` (``(num_envs,)`` bool) is set."""
        assert self._noise is not None
        idx = mask.nonzero().squeeze(1)
        # Per-sample noise: sub-env b's draws come from its own stream (the same on every device).
        eps = self._noise.randn_rows(idx, self.data_shape)
        self.x[idx] = eps * self.sigmas[0]
        self.step_index[idx] = 0
        self.budget[idx] = self.renoise_budget
        self.episode_nfe[idx] = 0
        self.episode_return[idx] = 0
        self.episode_length[idx] = 0
        if self.labels is not None:
            assert self._label_probs is not None
            new = self._noise.categorical_rows(idx, self._label_probs)
            self.labels[idx] = new

    def _observe(self) -> torch.Tensor:
        """``(num_envs, obs_dim)`` observation of the current state (``0 <= i <= N``)."""
        rows = self._obs_table[self.step_index]  # one gather for every per-step feature
        return featurize(
            self.x,
            None,
            rows[:, 2],
            self._budget_fraction(self.budget),
            self.labels,
            sigma_data=self.task.sigma_data,
            num_classes=self.num_classes,
            sigma_feats=rows[:, :2],
        )

    def _budget_fraction(self, budget: torch.Tensor) -> torch.Tensor:
        if self.renoise_budget == 0:
            return self._no_budget  # read-only: featurize copies it
        return budget.to(self.dtype) / self.renoise_budget

    def _validate_actions(self, actions: np.ndarray | torch.Tensor, used: bool = False) -> Any:
        """Menu indices as ``(num_envs, num_knobs)`` int64 on the device; ``ValueError`` if bad.

        One host sync (the range check) for tensors; numpy actions are checked on the host. With
        ``used``, also (read in the same sync) whether each knob is off neutral in any sub-env:
        ``(indices, [bool per knob])``, so that neutral knobs cost the sampler nothing.
        """
        n, k = self.num_envs, max(len(self.knob_names), 1)
        shape = tuple(actions.shape) if torch.is_tensor(actions) else np.shape(actions)
        if shape != self._action_shape and not (k == 1 and shape == (n, 1)):
            raise ValueError(f"actions must have shape {self._action_shape}, got {shape}")
        if torch.is_tensor(actions):
            a = actions.detach().reshape(n, k)
            if a.dtype == torch.bool or a.is_complex():
                raise ValueError(f"actions must be integer menu indices, got dtype {a.dtype}")
            sizes = self._menu_sizes_t
            if sizes.device != a.device:
                sizes = sizes.to(a.device)
            bad = (a < 0) | (a >= sizes)
            if a.dtype.is_floating_point:
                bad |= ~torch.isfinite(a) | (a != torch.round(a))
            flags = torch.cat([bad.any().reshape(1), (a != 0).any(dim=0)]).tolist()
            if flags[0]:
                b, j = (int(v) for v in bad.nonzero()[0])
                raise ValueError(self._bad_action_message(b, j, a[b, j].item()))
            idx = a.to(self.device, torch.long)
            return (idx, [bool(f) for f in flags[1:]]) if used else idx
        a = np.asarray(actions)
        if a.dtype.kind not in "iuf":
            raise ValueError(f"actions must be integer menu indices, got dtype {a.dtype}")
        a = a.reshape(n, k)
        with np.errstate(invalid="ignore"):
            bad = (a < 0) | (a >= self._menu_sizes_np)
            if a.dtype.kind == "f":
                bad |= ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            b, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(self._bad_action_message(b, j, a[b, j].item()))
        idx = torch.as_tensor(a.astype(np.int64, copy=False), device=self.device)
        return (idx, (a != 0).any(axis=0).tolist()) if used else idx

    @property
    def _multi(self) -> bool:
        return isinstance(self.single_action_space, spaces.MultiDiscrete)

    def _bad_action_message(self, env_index: int, knob: int, value: Any) -> str:
        name = self.knob_names[knob] if self.knob_names else "action"
        size = int(self._menu_sizes[knob]) if self.knob_names else 1
        return (
            f"invalid action {value!r} for knob {name!r} in sub-env {env_index}; "
            f"allowed menu indices are integers 0..{size - 1}"
        )

    def _knobs(self, idx: torch.Tensor) -> Knobs:
        """Menu indices ``(num_envs, num_knobs)`` -> per-env knob tensors via lookup tables."""
        return self.action_menus.knobs(idx, self._s_noise)

    def knob_values(self, actions: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Menu indices -> ``{knob name: (num_envs,) level}`` (e.g. for logging a policy)."""
        idx = self._validate_actions(actions)
        levels = self.action_menus.levels
        return {name: levels[name][idx[:, j]] for j, name in enumerate(self.knob_names)}


def _menus_of(task: Task) -> dict[str, Any]:
    return {
        "churn_levels": task.churn_levels,
        "guidance_levels": task.guidance_levels,
        "renoise_jumps": task.renoise_jumps,
        "renoise_budget": task.renoise_budget,
    }


class DiffusionSamplingSingleEnv(gym.Env):
    """One sub-env of :class:`DiffusionSamplingEnv` as a plain ``gymnasium.Env`` (numpy in/out).

    Built on the same code with ``num_envs=1``; no autoreset: after ``terminated`` call
    :meth:`reset`. Accepts the vector env's keyword arguments.
    """

    metadata = {"render_modes": []}

    def __init__(self, task: Task | str = "gmm2d", render_mode: str | None = None, **kwargs: Any):
        self.vec = DiffusionSamplingEnv(task, 1, render_mode=render_mode, **kwargs)
        self.render_mode = None
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.task = self.vec.task
        self.sigmas = self.vec.sigmas

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        obs, _ = self.vec.reset(seed=seed)
        return obs[0].cpu().numpy(), {}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action)[None]
        obs, reward, terminated, truncated, info = self.vec.step(a)
        done = bool(terminated[0])
        out_info: dict[str, Any] = {
            "nfe": int(info["nfe"][0]),
            "churn_ignored": bool(info["churn_ignored"][0]),
            "renoise_ignored": bool(info["renoise_ignored"][0]),
        }
        if done:
            obs = info["final_obs"]
            ep = info["episode"]
            out_info["episode"] = {k: v[0].item() for k, v in ep.items()}
        return obs[0].cpu().numpy(), float(reward[0]), done, bool(truncated[0]), out_info

    def close(self) -> None:
        self.vec.close()
