"""The sampling MDP as a batched Gymnasium vector env (torch, CPU or GPU), and a single-env face."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from diffgym.envs.features import (
    C_NOISE_BOUND,
    SCALED_X_BOUND,
    featurize,
    featurize_at_step,
    label_features,
    obs_dim,
    sigma_features,
)
from diffgym.envs.menus import KNOBS, ActionMenus
from diffgym.envs.sampler import (
    BatchNoise,
    FiniteCheck,
    PerSampleNoise,
    StepOutput,
    sampler_step,
)
from diffgym.envs.tasks import Task, make_task, validate_menus, with_step_factor

__all__ = ["DiffusionSamplingEnv", "KNOBS", "REWARDS"]

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


AUTORESET_MODES = tuple(AutoresetMode)
_NUMPY_CHECKED = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.float64,
                  torch.float32, torch.float16)
"""CPU action dtypes validated as numpy views (the others by torch ops)."""
SEED_MAX = 2**64 - 1
"""Largest seed torch's generators accept (``torch.Generator.manual_seed``)."""


def _autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    try:
        return AutoresetMode(mode)
    except ValueError:
        allowed = ", ".join(f"AutoresetMode.{m.name} ({m.value!r})" for m in AUTORESET_MODES)
        raise ValueError(f"unknown autoreset_mode {mode!r}; allowed: {allowed}") from None


def _check_seed_range(seeds: Sequence[int]) -> None:
    for s in seeds:
        if not 0 <= s <= SEED_MAX:
            raise ValueError(
                f"seed {s} is out of range: seeds must be ints in [0, 2**64 - 1] (torch's "
                "generators; an int seed s also seeds s + 1, ..., s + num_envs - 1)"
            )


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
    * **Autoreset** (``autoreset_mode``, also ``metadata["autoreset_mode"]``; Gymnasium's
      conventions, https://farama.org/Vector-Autoreset-Mode):

      - ``AutoresetMode.NEXT_STEP`` (default, Gymnasium's own): the step that ends an episode
        returns its terminal observation and, in ``info``, its end-of-episode record (below);
        the next :meth:`step` resets that sub-env (its action is ignored, reward 0, no NFE).
        What Gymnasium's vector wrappers expect (``NormalizeObservation`` accepts only this).
      - ``AutoresetMode.SAME_STEP`` (what SB3 needs; :func:`~diffgym.envs.sb3.to_sb3` switches
        to it): a finished sub-env resets within the step; its last observation is
        ``info["final_obs"]`` and its end-of-episode record ``info["final_info"]`` (masks
        ``info["_final_obs"]``, ``info["_final_info"]``).
      - ``AutoresetMode.DISABLED``: finished sub-envs wait for
        ``reset(options={"reset_mask": mask})``; stepping one before is a ``RuntimeError``.

      The end-of-episode record (each key with its ``_key`` mask of finished sub-envs):
      ``episode_nfe`` (denoiser evaluations of the episode), ``episode_return`` (float64),
      ``episode_length`` (transitions, renoise ones included), ``final_x`` (the sample) and, for
      conditional tasks, ``label``. The env writes no ``episode`` key: episode statistics
      (``r``, ``l``, ``t``) are the job of ``RecordEpisodeStatistics``/``VecMonitor``.
    * **Info** every step: ``nfe``, ``renoised``, ``churn_ignored``, ``renoise_ignored``, each
      ``(num_envs,)`` and describing the transition just taken (all zero/False on an autoreset).

    Outputs are torch tensors; for Gymnasium's numpy-only wrappers put
    :class:`~diffgym.envs.wrappers.TorchToNumpy` first.

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
        autoreset_mode: an :class:`~gymnasium.vector.AutoresetMode` or its value
            (``"NextStep"``, ``"SameStep"``, ``"Disabled"``).
        render_mode: only ``None`` (the env does not render).
        **task_overrides: passed to :func:`make_task` when ``task`` is a name.

    Raises:
        ValueError: ``num_envs < 1``, unknown device, reward, noise or autoreset mode, bad menus.
        TypeError: a ``render_mode`` other than ``None`` or a keyword the task does not accept,
            in Python's own words (``got an unexpected keyword argument 'frameskip'``), so that
            tools which retry without such keywords (SB3's ``make_vec_env``, TorchRL's
            ``GymEnv``) do.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    """Class default; each instance holds its own copy with its ``autoreset_mode``."""

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
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        **task_overrides: Any,
    ) -> None:
        if render_mode is not None:
            raise TypeError(
                f"render_mode={render_mode!r} is not supported (diffgym envs do not render; "
                f"allowed: None): {type(self).__name__}.__init__() got an unexpected keyword "
                f"argument 'render_mode'"
            )
        mode = _autoreset_mode(autoreset_mode)
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
        self.render_mode = None
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
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
        self._label_cache: tuple[Any, ...] = (None, -1, None)  # (labels, version, one-hot)
        # Finite checks of the denoiser outputs, read with the next step's one host sync.
        self._finite = FiniteCheck()
        self._uniform_step: int | None = None  # every sub-env at this step index, if known
        self._uniform_stamp: tuple[int, int] | None = None  # step_index it was known for
        self._needs_reset = True
        # Sub-envs whose episode ended at the last step and that have not been reset yet
        # (NEXT_STEP: reset by the next step; DISABLED: by reset(options={"reset_mask": ...})).
        self._done = torch.zeros(num_envs, dtype=torch.bool, device=dev)
        self._any_done = False

        # Constants of step() and _observe(), built once (each saves a tensor op per step).
        k = max(len(self.knob_names), 1)
        self._action_shape = (num_envs,) if not self._multi else (num_envs, k)
        self._menu_sizes_np = self._menu_sizes if self.knob_names else np.ones(1, np.int64)
        self._menu_sizes_list = self._menu_sizes_np.tolist()
        self._menu_sizes_t = torch.as_tensor(self._menu_sizes_np, device=dev)
        # Per (base-grid) step index i = 0..N: c_in(sigma_i), c_noise feature, i / N (rows of
        # _observe).
        step_frac = torch.arange(self.num_steps + 1, device=dev, dtype=self.dtype) / self.num_steps
        self._obs_table = torch.cat(
            [sigma_features(self.sigmas, sigma_data=task.sigma_data), step_frac[:, None]], dim=1
        )
        self._no_budget = torch.zeros(num_envs, device=dev, dtype=self.dtype)
        self._one = torch.ones((), dtype=torch.long, device=dev)  # a 0-dim 1 costs less than 1
        self._every_row = torch.arange(num_envs, device=dev)  # _reset_envs(None)
        # Unconditional and no renoise budget: every sub-env at step i has the same per-step
        # columns (c_noise feature, i / N, budget fraction 0), one row of this table.
        self._obs_tail = None
        if self.num_classes == 0 and self.renoise_budget == 0:
            self._obs_tail = torch.cat(
                [self._obs_table[:, 1:], torch.zeros_like(step_frac)[:, None]], dim=1
            )
        # ... and those rows per step, repeated for every sub-env (cat copies them faster than a
        # broadcast view), so an observation indexes no table.
        self._obs_rows = None if self._obs_tail is None else [
            (self._obs_table[i, 0], self._obs_tail[i].expand(num_envs, -1).contiguous())
            for i in range(self.num_steps + 1)
        ]

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
                envs do. Seeds are ints in ``[0, 2**64 - 1]`` (what torch's generators take),
                ``seed + num_envs - 1`` included for an int.
            options: ``{"reset_mask": mask}`` (``(num_envs,)`` bool, numpy or torch, at least one
                ``True``) resets only those sub-envs, continuing the random streams (Gymnasium's
                partial reset; needs an earlier full reset and no ``seed``); other keys unused.

        Returns:
            ``(obs (num_envs, obs_dim), info)`` with torch tensors on ``device``.

        Raises:
            ValueError: a seed that is not an int in range, or a bad ``reset_mask``.
        """
        mask = self._reset_mask(options)
        if mask is not None:
            if seed is not None:
                raise ValueError(
                    "seed cannot be combined with options['reset_mask']: a partial reset "
                    "continues the random streams; seed a full reset() instead"
                )
            if self._noise is None or self._needs_reset:
                raise RuntimeError("call reset() without a reset_mask first")
            self._reset_envs(mask)
            self._done &= ~mask
            self._any_done = bool(self._done.any())
            self._set_uniform_hint(None)  # the reset sub-envs restart at step 0, the others not
            return self._observe(), {}
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
        _check_seed_range(seeds or ([] if seed is None else [seed, seed + self.num_envs - 1]))
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
        self._reset_envs(None)
        self._done.zero_()
        self._any_done = False
        self._set_uniform_hint(0)
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
            RuntimeError: no :meth:`reset` yet, or (``DISABLED``) a finished sub-env not reset.
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        idx, used = self._validate_actions(actions, used=True)
        active = None  # every sub-env takes a sampler step
        uniform = self._uniform_hint()
        if uniform is not None and uniform >= self.num_steps:
            uniform = None  # all finished (NEXT_STEP / DISABLED): the reset below clears it
        if self._any_done:  # episodes ended at the previous step and were not reset
            if self.autoreset_mode == AutoresetMode.DISABLED:
                finished = self._done.nonzero().squeeze(1).tolist()
                raise RuntimeError(
                    f"sub-env(s) {finished} finished their episodes and autoreset_mode is "
                    f"DISABLED; reset them with reset(options={{'reset_mask': mask}}) first"
                )
            # NEXT_STEP: this step only resets them (their actions are ignored).
            active = ~self._done
            self._reset_envs(self._done)
            self._done.zero_()
            self._any_done = False
            uniform = None
        if active is not None and self.noise_mode == "batch" and not bool(active.any()):
            out = self._no_transition()  # all sub-envs reset: no denoiser call
        else:
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
                active=active,
                validate=False,
                check_finite=self.check_finite,
                finite=self._finite,
                uniform=uniform,
                advance=self.schedule_factor,
            )
        self.x, self.step_index, self.budget = out.x, out.step_index, out.budget
        # Where every sub-env is now, when the host knows it (N when all ended together):
        # _observe gathers nothing then.
        self._set_uniform_hint(out.uniform)
        if out.unfinished == 0 and self.check_finite:
            self._finite.check()  # once per episode
        terminated = self.step_index >= self.num_steps if out.uniform is None else torch.full(
            (self.num_envs,), out.uniform >= self.num_steps, dtype=torch.bool, device=self.device
        )  # with the uniform hint the host knows it
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
        self.episode_length += self._one if active is None else active.long()
        info: dict[str, Any] = {
            "nfe": out.nfe,
            "renoised": out.renoised,
            "churn_ignored": out.churn_ignored,
            "renoise_ignored": out.renoise_ignored,
        }
        if any_done:
            record = self._episode_record(terminated)
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                info["final_obs"], info["_final_obs"] = self._observe(), terminated
                info["final_info"], info["_final_info"] = record, terminated
                # All ended together: they start over together at step 0.
                self._uniform_step = 0 if out.unfinished == 0 else None
                self._reset_envs(None if out.unfinished == 0 else terminated)
            else:  # NEXT_STEP / DISABLED: the terminal step reports its own record
                info.update(record)
                self._done, self._any_done = terminated.clone(), True
        truncated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return self._observe(), reward, terminated, truncated, info

    @property
    def autoreset_mode(self) -> AutoresetMode:
        """How finished sub-envs are reset (see the class docstring); ``metadata`` holds it too."""
        return self.metadata["autoreset_mode"]

    def set_autoreset_mode(self, mode: AutoresetMode | str) -> None:
        """Switch the autoreset mode (what :func:`~diffgym.envs.sb3.to_sb3` does for SB3).

        Raises:
            ValueError: an unknown mode, or sub-envs whose finished episodes await a reset (the
                switch would change what the observation already returned means).
        """
        mode = _autoreset_mode(mode)
        if self._any_done and mode != self.autoreset_mode:
            raise ValueError(
                f"cannot switch autoreset_mode to {mode.name} while sub-env(s) "
                f"{self._done.nonzero().squeeze(1).tolist()} await a reset; call reset() first"
            )
        self.metadata = {**self.metadata, "autoreset_mode": mode}

    def close_extras(self, **kwargs: Any) -> None:
        self._noise = None

    def _episode_record(self, done: torch.Tensor) -> dict[str, torch.Tensor]:
        """End-of-episode info for the sub-envs in ``done`` (``(num_envs,)`` bool), with masks."""
        record = {
            "episode_nfe": self.episode_nfe.clone(),
            "episode_return": self.episode_return.clone(),
            "episode_length": self.episode_length.clone(),
            "final_x": self.x.clone(),
        }
        if self.labels is not None:
            record["label"] = self.labels.clone()
        for key in list(record):
            record["_" + key] = done
        return record

    def _no_transition(self) -> StepOutput:
        """The outcome of a step in which every sub-env only resets (NEXT_STEP autoreset): all
        start over at step 0 together."""
        no = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return StepOutput(
            x=self.x,
            step_index=self.step_index,
            budget=self.budget,
            nfe=torch.zeros(self.num_envs, dtype=torch.long, device=self.device),
            renoised=no,
            churn_ignored=no.clone(),
            renoise_ignored=no.clone(),
            unfinished=self.num_envs,
            uniform=0,
        )

    def _reset_mask(self, options: dict[str, Any] | None) -> torch.Tensor | None:
        """``options["reset_mask"]`` as a ``(num_envs,)`` bool tensor on the device, or ``None``."""
        if not options or options.get("reset_mask") is None:
            return None
        mask = options["reset_mask"]
        if not isinstance(mask, (np.ndarray, torch.Tensor)):
            raise TypeError(
                f"options['reset_mask'] must be a numpy array or torch tensor, got "
                f"{type(mask).__name__}"
            )
        if tuple(mask.shape) != (self.num_envs,) or mask.dtype not in (np.bool_, torch.bool):
            raise ValueError(
                f"options['reset_mask'] must be a ({self.num_envs},) bool array, got shape "
                f"{tuple(mask.shape)} and dtype {mask.dtype}"
            )
        mask = torch.as_tensor(mask, device=self.device)
        if not bool(mask.any()):
            raise ValueError("options['reset_mask'] must select at least one sub-env")
        return mask

    # ----------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------

    def _reset_envs(self, mask: torch.Tensor | None) -> None:
        """Start new episodes in the sub-envs where ``mask`` (``(num_envs,)`` bool) is set, or in
        every sub-env when it is ``None`` (whole-tensor writes, no gather)."""
        assert self._noise is not None
        idx = self._every_row if mask is None else mask.nonzero().squeeze(1)
        rows = slice(None) if mask is None else idx
        # Per-sample noise: sub-env b's draws come from its own stream (the same on every device).
        eps = self._noise.randn_rows(idx, self.data_shape)
        self.x[rows] = eps * self.sigmas[0]
        self.step_index[rows] = 0
        self.budget[rows] = self.renoise_budget
        self.episode_nfe[rows] = 0
        self.episode_return[rows] = 0
        self.episode_length[rows] = 0
        if self.labels is not None:
            assert self._label_probs is not None
            new = self._noise.categorical_rows(idx, self._label_probs)
            self.labels[rows] = new
        self._set_uniform_hint(self._uniform_step)  # step_index was written: stamp it again

    def _uniform_hint(self) -> int | None:
        """The step index every sub-env is at, when the host knows it and ``step_index`` has not
        been written since (anyone restoring the state by hand drops the hint)."""
        try:
            stamp = (id(self.step_index), self.step_index._version)
        except RuntimeError:  # inference tensors keep no version counter
            return None
        return self._uniform_step if stamp == self._uniform_stamp else None

    def _set_uniform_hint(self, step: int | None) -> None:
        self._uniform_step = step
        try:
            self._uniform_stamp = (id(self.step_index), self.step_index._version)
        except RuntimeError:
            self._uniform_stamp = None

    def _observe(self) -> torch.Tensor:
        """``(num_envs, obs_dim)`` observation of the current state (``0 <= i <= N``)."""
        uniform = self._uniform_hint()
        if uniform is not None and 0 <= uniform < self._obs_table.shape[0]:
            if self._obs_rows is not None:  # every sub-env at one step, the same tail
                return featurize_at_step(self.x, *self._obs_rows[uniform])
            rows = self._obs_table[uniform].expand(self.num_envs, -1)  # every sub-env at one step
        else:
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
            label_feats=self._label_features(),
        )

    def _label_features(self) -> torch.Tensor | None:
        """The one-hot label columns, kept while ``labels`` is the same tensor at the same
        version (labels change only at reset; a write through the tensor bumps the version,
        one through ``.data`` or a numpy view of it does not)."""
        labels = self.labels
        if labels is None:
            return None
        try:
            version = labels._version
        except RuntimeError:  # inference tensors keep no version counter
            return label_features(labels, self.num_classes, self.dtype)
        cached, cached_version, cols = self._label_cache
        if cached is not labels or cached_version != version:
            cols = label_features(labels, self.num_classes, self.dtype)
            self._label_cache = (labels, version, cols)
        return cols

    def _budget_fraction(self, budget: torch.Tensor) -> torch.Tensor:
        if self.renoise_budget == 0:
            return self._no_budget  # read-only: featurize copies it
        return budget.to(self.dtype) / self.renoise_budget

    def _validate_actions(self, actions: np.ndarray | torch.Tensor, used: bool = False) -> Any:
        """Menu indices as ``(num_envs, num_knobs)`` int64 on the device; ``ValueError`` if bad.

        One host sync (the range check) for tensors; numpy actions are checked on the host. With
        ``used``, also (read in the same sync) whether each knob is off neutral in any sub-env:
        ``(indices, [bool per knob])``, so that neutral knobs cost the sampler nothing (the
        indices are ``None`` when every knob is neutral in every sub-env: nothing reads them).
        """
        n, k = self.num_envs, max(len(self.knob_names), 1)
        shape = tuple(actions.shape) if torch.is_tensor(actions) else np.shape(actions)
        if shape != self._action_shape and not (k == 1 and shape == (n, 1)):
            raise ValueError(f"actions must have shape {self._action_shape}, got {shape}")
        if torch.is_tensor(actions) and actions.device.type == "cpu" and (
            actions.dtype in _NUMPY_CHECKED and actions.layout == torch.strided
            and not (actions.requires_grad or actions.is_neg() or actions.is_conj())
        ):
            actions = actions.numpy()  # a view: numpy's checks cost less than torch ops here
        if torch.is_tensor(actions):
            a = actions.detach().reshape(n, k)
            if a.dtype == torch.bool or a.is_complex():
                raise ValueError(f"actions must be integer menu indices, got dtype {a.dtype}")
            sizes = self._menu_sizes_t
            if sizes.device != a.device:
                sizes = sizes.to(a.device)
            if a.dtype.is_floating_point:
                bad = (a < 0) | (a >= sizes) | ~torch.isfinite(a) | (a != torch.round(a))
                flags = torch.cat([bad.any().reshape(1), (a != 0).any(dim=0)]).tolist()
                is_bad, knob_used = flags[0], flags[1:]
            else:  # per-knob min and max: one reduction, one sync (0 is every knob's neutral)
                lo_hi = torch.cat(torch.aminmax(a, dim=0)).tolist()
                lo, hi = lo_hi[:k], lo_hi[k:]
                is_bad = min(lo) < 0 or any(v >= m for v, m in zip(hi, self._menu_sizes_list))
                knob_used = [v > 0 for v in hi]
                bad = None
            if is_bad:
                if bad is None:
                    bad = (a < 0) | (a >= sizes)
                b, j = (int(v) for v in bad.nonzero()[0])
                raise ValueError(self._bad_action_message(b, j, a[b, j].item()))
            idx = a.to(self.device, torch.long)
            return (idx, [bool(f) for f in knob_used]) if used else idx
        a = np.asarray(actions)
        if a.dtype.kind not in "iuf":
            raise ValueError(f"actions must be integer menu indices, got dtype {a.dtype}")
        a = a.reshape(n, k)
        if used and a.dtype.kind != "f" and not np.count_nonzero(a):
            return None, [False] * k  # all neutral: no knob needs the indices
        if a.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                bad = (a < 0) | (a >= self._menu_sizes_np) | ~np.isfinite(a) | (a != np.round(a))
            is_bad = bool(bad.any())
        else:  # whole-array min and max first: numpy's per-column reductions of a (n, k) array
            lo, hi = a.min(), a.max()  # cost several times more when k is small
            is_bad = lo < 0 or (hi >= min(self._menu_sizes_list) and any(
                a[:, j].max() >= m for j, m in enumerate(self._menu_sizes_list)))
            bad = None
        if is_bad:
            bad = (a < 0) | (a >= self._menu_sizes_np) if bad is None else bad
            b, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(self._bad_action_message(b, j, a[b, j].item()))
        idx = torch.as_tensor(a.astype(np.int64, copy=False), device=self.device)
        if not used:
            return idx
        return idx, [bool(a[:, j].any()) for j in range(k)]

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

    def knob_values(self, actions: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Menu indices -> ``{knob name: (num_envs,) level}`` (e.g. for logging a policy)."""
        idx = self._validate_actions(actions)
        levels = self.action_menus.levels
        return {name: levels[name][idx[:, j]] for j, name in enumerate(self.knob_names)}

    # ----------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------

    _STATE_TENSORS = ("x", "step_index", "budget", "episode_nfe", "episode_return",
                      "episode_length", "_done")

    def state_dict(self) -> dict[str, Any]:
        """The env's dynamic state (samples, step indices, labels, budgets, episode counters and
        the noise source's state) as tensors and plain values; :meth:`load_state_dict` restores
        it, so a checkpointed run continues exactly."""
        state: dict[str, Any] = {k: getattr(self, k).clone() for k in self._STATE_TENSORS}
        state["labels"] = None if self.labels is None else self.labels.clone()
        state["noise"] = None if self._noise is None else self._noise.state_dict()
        state["needs_reset"] = self._needs_reset
        state["autoreset_mode"] = self.autoreset_mode.value
        state["uniform_step"] = self._uniform_step
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (from an env built with the same arguments).

        Raises:
            ValueError: a state of another shape (another ``num_envs`` or task), or a noise
                state that does not fit this env's noise mode.
        """
        for key in self._STATE_TENSORS:
            if tuple(state[key].shape) != tuple(getattr(self, key).shape):
                raise ValueError(
                    f"env state {key!r} has shape {tuple(state[key].shape)}, this env's is "
                    f"{tuple(getattr(self, key).shape)}"
                )
        if state["noise"] is not None and self._noise is None:
            self.reset(seed=0)  # allocates the noise source; its state is overwritten below
        for key in self._STATE_TENSORS:
            getattr(self, key).copy_(state[key])
        if self.labels is not None:
            self.labels.copy_(state["labels"])
        if state["noise"] is not None:
            self._noise.load_state_dict(state["noise"])
        self._needs_reset = state["needs_reset"]
        self._any_done = bool(self._done.any())
        self._set_uniform_hint(state["uniform_step"])  # None unless all are at one step
        self.set_autoreset_mode(state["autoreset_mode"])


def _menus_of(task: Task) -> dict[str, Any]:
    keys = ("churn_levels", "guidance_levels", "renoise_jumps", "renoise_budget")
    return {k: getattr(task, k) for k in keys}


def __getattr__(name: str) -> Any:
    # DiffusionSamplingSingleEnv lives in single_env; its entry point and old imports name this.
    if name == "DiffusionSamplingSingleEnv":
        from diffgym.envs.single_env import DiffusionSamplingSingleEnv

        return DiffusionSamplingSingleEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
