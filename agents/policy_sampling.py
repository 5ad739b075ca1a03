"""Policy-guided sampling at inference: the shared sampler loop driven by a trained policy.

:class:`PolicySampler` runs :func:`diffgym.envs.sampler.sample` (the same step function as the env)
with an action function that featurises the state exactly like the env
(:func:`~diffgym.envs.features.featurize`), runs the policy's actor in torch, and maps menu indices
to knob levels through lookup tables on the device. No numpy and no host sync inside the action
function; the whole loop runs under ``torch.inference_mode``.

:func:`save_samples` writes the result (``.npz`` and a PNG: a scatter for 2-D tasks, an image grid
for image tasks).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from itertools import accumulate

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy

from diffgym.agents.policies import action_menu_sizes
from diffgym.envs.features import featurize, obs_dim, sigma_features
from diffgym.envs.io import atomic_write
from diffgym.envs.menus import ActionMenus
from diffgym.envs.sampler import (
    BatchNoise,
    Knobs,
    NoiseSource,
    PerSampleNoise,
    SampleResult,
    sample,
)
from diffgym.envs.tasks import Task

__all__ = ["ACTION_SEED_OFFSET", "PolicySampler", "save_samples"]

ACTION_SEED_OFFSET = 2**32
"""Seeds of the action noise are ``ACTION_SEED_OFFSET + seed (+ b)``, a stream disjoint from the
sampler noise seeded with ``seed (+ b)``."""

_UNIFORM_EPS = 1e-7


class PolicySampler:
    """Sample with a policy choosing each step's knobs (design §3; inference temperature τ).

    Args:
        policy: an SB3 :class:`~stable_baselines3.common.policies.ActorCriticPolicy` (e.g.
            ``agent.policy``) trained on ``task``'s env with the same menus.
        task: the task (its denoiser, guide, schedule and menus). Moved to ``device`` in place.
        device: where to sample; default the policy's device (the policy is moved there).
        greedy: take the most likely menu entry of each knob (``temperature`` is then unused).
        temperature: logit temperature τ > 0 for stochastic choices (logits / τ).
        mean_action: deterministic *mean-action* inference: each continuous knob (churn,
            guidance) at its expected level under the policy's choice at temperature τ
            (``softmax(logits / τ)`` weighting the menu's levels), each integer knob (renoise,
            step) at its most likely entry. Guidance is linear in ``w`` (``G + w (D - G)``), so
            the mean-action Euler predictor is the τ-policy's expected one in the guidance knob
            (the Heun correction only to first order: it evaluates ``D`` at a point that depends
            on ``w``); the guide is evaluated wherever the mean ``w`` is not 1 (every row where
            the policy gives a non-neutral entry any weight), and the NFE counts it. Not with
            ``greedy``.
        s_noise: ``S_noise`` applied with churn (as the env's ``s_noise``).
        check_finite: raise if the denoiser returns NaN/inf.
        guidance_factor: ``alpha >= 0``; the policy's guidance weight ``w`` is used as
            ``1 + alpha (w - 1)``: 1 leaves it as the policy chose (the default), 0 never guides,
            in between shrinks every guided step towards the unguided one (an inference rule,
            like τ; RESULTS §48). A row left at ``w = 1`` does not evaluate the guide.
        guidance_max_sigma: ``c > 0`` or ``None``; steps that start at ``sigma_i > c`` are not
            guided (``w = 1``) whatever the policy chose: guidance only in the low-noise
            interval, where it sharpens within modes rather than moving mass between them
            (Kynkäänniemi et al. 2024; RESULTS §31). ``None`` (the default): everywhere.

    Raises:
        ValueError: a non-positive or non-finite temperature, a negative ``s_noise``,
            ``greedy`` together with ``mean_action``, a negative or non-finite
            ``guidance_factor``, a non-positive or non-finite ``guidance_max_sigma``, either
            of them on a task without a guidance menu; a policy
            whose observation or action space does not match the task's (menus listed).
    """

    def __init__(
        self,
        policy: ActorCriticPolicy,
        task: Task,
        *,
        device: str | torch.device | None = None,
        greedy: bool = False,
        temperature: float = 1.0,
        mean_action: bool = False,
        s_noise: float = 1.0,
        check_finite: bool = True,
        guidance_factor: float = 1.0,
        guidance_max_sigma: float | None = None,
    ) -> None:
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature}")
        if greedy and mean_action:
            raise ValueError("greedy and mean_action are exclusive: give one inference rule")
        if not (math.isfinite(s_noise) and s_noise >= 0):
            raise ValueError(f"s_noise must be finite and >= 0, got {s_noise}")
        if isinstance(guidance_factor, bool) or not (
            math.isfinite(guidance_factor) and guidance_factor >= 0
        ):
            raise ValueError(f"guidance_factor must be finite and >= 0, got {guidance_factor!r}")
        if guidance_max_sigma is not None and (
            isinstance(guidance_max_sigma, bool)
            or not (math.isfinite(guidance_max_sigma) and guidance_max_sigma > 0)
        ):
            raise ValueError(f"guidance_max_sigma must be None or finite and > 0, got "
                             f"{guidance_max_sigma!r}")
        self.device = torch.device(device) if device is not None else policy.device
        self.policy = policy.to(self.device)
        self.policy.set_training_mode(False)
        self.task = task.to(self.device)
        self.greedy = bool(greedy)
        self.mean_action = bool(mean_action)
        self.temperature = float(temperature)
        self.check_finite = check_finite
        self.dtype = task.dtype
        # As the env: the step knob's base grid (the task's schedule when the knob is off).
        self.sigmas = task.base_sigmas(self.device, self.dtype)
        self.num_steps = task.base_steps
        # Per step index i = 0..N: c_in(sigma_i), the c_noise feature and i / N (as the env).
        step_frac = torch.arange(self.num_steps + 1, device=self.device, dtype=self.dtype)
        self._obs_table = torch.cat(
            [
                sigma_features(self.sigmas, sigma_data=task.sigma_data),
                (step_frac / self.num_steps)[:, None],
            ],
            dim=1,
        )

        # The env's menus: knobs with more than one entry, in KNOBS order (entry 0 neutral).
        self.action_menus = ActionMenus(task, device=self.device, dtype=self.dtype)
        self.knob_names = self.action_menus.names
        self.menus = self.action_menus.menus
        expected = self.action_menus.sizes or (1,)
        got = action_menu_sizes(policy.action_space)
        if got != expected:
            raise ValueError(
                f"the policy's action space {policy.action_space} does not match task "
                f"{task.name!r} menus {self.menus or '(none)'} (sizes {expected})"
            )
        dim = obs_dim(task.data_shape, task.num_classes)
        if not isinstance(policy.observation_space, spaces.Box) or (
            policy.observation_space.shape != (dim,)
        ):
            raise ValueError(
                f"the policy's observation space {policy.observation_space} does not match task "
                f"{task.name!r} (expected a Box of shape ({dim},))"
            )
        self.renoise_budget = self.action_menus.renoise_budget
        self._guide = task.guide if self.action_menus.guided else None
        self.guidance_factor = float(guidance_factor)
        self.guidance_max_sigma = (None if guidance_max_sigma is None
                                   else float(guidance_max_sigma))
        if (self.guidance_factor != 1.0 or self.guidance_max_sigma is not None) and (
            "guidance" not in self.knob_names
        ):
            raise ValueError(f"guidance_factor / guidance_max_sigma need a guidance menu; task "
                             f"{task.name!r} has menus {self.menus or '(none)'}")
        self._s_noise = float(s_noise)
        self._slices = [
            slice(int(o), int(o) + n) for o, n in zip(accumulate((0, *expected)), expected)
        ]
        self._num_logits = sum(expected)
        self._constants: dict[tuple[int, float], torch.Tensor] = {}

    # ----------------------------------------------------------------------------------------

    def observe(
        self,
        x: torch.Tensor,
        step_index: torch.Tensor,
        budget: torch.Tensor,
        labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """The env's observation of a batch of states (``0 <= i <= N``): ``(B, obs_dim)`` float32.

        As the env does, the per-step features (``c_in``, ``c_noise``, ``i/N``) are gathered from
        a table built once, so only the sample's own columns are computed per step.
        """
        if self.renoise_budget > 0:
            budget_frac = budget.to(self.dtype) / self.renoise_budget
        else:
            budget_frac = self._constant(budget.shape[0], 0.0)
        rows = self._obs_table[step_index]  # (B, 3)
        return featurize(
            x,
            None,
            rows[:, 2],
            budget_frac,
            labels,
            sigma_data=self.task.sigma_data,
            num_classes=self.task.num_classes,
            sigma_feats=rows[:, :2],
        )

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """The actor's flat logits ``(B, sum of menu sizes)`` (knob after knob), before τ."""
        policy = self.policy
        features = policy.extract_features(obs, policy.pi_features_extractor)
        return policy.action_net(policy.mlp_extractor.forward_actor(features))

    def select(self, obs: torch.Tensor, action_noise: NoiseSource | None = None) -> torch.Tensor:
        """Menu indices ``(B, num_knobs)`` int64: argmax (greedy) or Gumbel-max over logits/τ.

        ``action_noise`` supplies standard normals, turned into Gumbel noise through the normal
        CDF (so the draws come from an injected generator, never the global RNG).
        """
        logits = self.logits(obs)
        if not self.greedy:
            if action_noise is None:
                raise ValueError("a stochastic PolicySampler needs action_noise")
            z = action_noise.randn((self._num_logits,)).to(logits.dtype)
            u = torch.special.ndtr(z).clamp(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS)
            logits = logits / self.temperature - torch.log(-torch.log(u))
        return torch.stack([logits[:, sl].argmax(dim=1) for sl in self._slices], dim=1)

    def expected_knobs(self, obs: torch.Tensor) -> Knobs:
        """Mean-action knobs of a batch of observations: each continuous knob's level averaged
        over ``softmax(logits / τ)``, each integer knob at its argmax (see ``mean_action``)."""
        logits = self.logits(obs)
        levels = self.action_menus.levels
        kw: dict[str, torch.Tensor] = {}
        for name, sl in zip(self.knob_names, self._slices):
            if levels[name].dtype.is_floating_point:
                probs = torch.softmax(logits[:, sl].to(self.dtype) / self.temperature, dim=1)
                kw[name] = probs @ levels[name]
            else:
                kw[name] = levels[name][logits[:, sl].argmax(dim=1)]
        s_noise = self._s_noise_column(obs.shape[0])
        if s_noise is not None and "churn" in kw:
            kw["s_noise"] = s_noise
        return Knobs(**kw)

    def _constant(self, batch: int, value: float) -> torch.Tensor:
        """A cached ``(batch,)`` tensor filled with ``value`` (never written to)."""
        key = (batch, value)
        if key not in self._constants:
            with torch.inference_mode(False), torch.no_grad():
                self._constants[key] = torch.full(
                    (batch,), value, device=self.device, dtype=self.dtype
                )
        return self._constants[key]

    def _reshape_guidance(self, knobs: Knobs, step_index: torch.Tensor) -> Knobs:
        """``guidance_factor`` and ``guidance_max_sigma`` applied to a step's knobs (unchanged
        when both are neutral, so the default rule stays bit-exact)."""
        w = knobs.guidance
        if w is None or (self.guidance_factor == 1.0 and self.guidance_max_sigma is None):
            return knobs
        if self.guidance_factor != 1.0:
            w = 1.0 + self.guidance_factor * (w - 1.0)  # exactly 1 where w was 1
        if self.guidance_max_sigma is not None:
            w = torch.where(self.sigmas[step_index] > self.guidance_max_sigma,
                            torch.ones_like(w), w)
        return Knobs(churn=knobs.churn, s_noise=knobs.s_noise, guidance=w,
                     renoise=knobs.renoise, step=knobs.step)

    def knobs(self, index: torch.Tensor) -> Knobs:
        """Menu indices ``(B, num_knobs)`` -> per-sample knob tensors via the menus' tables."""
        return self.action_menus.knobs(index, self._s_noise_column(index.shape[0]))

    def _s_noise_column(self, batch: int) -> torch.Tensor | None:
        """``S_noise`` for ``batch`` samples; ``None`` is the neutral 1 (and skips its checks)."""
        return None if self._s_noise == 1.0 else self._constant(batch, self._s_noise)

    def actions(
        self, action_noise: NoiseSource | None = None
    ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], Knobs]:
        """The ``actions`` callable of :func:`~diffgym.envs.sampler.sample`."""

        def act(x, step_index, budget, labels) -> Knobs:
            obs = self.observe(x, step_index, budget, labels)
            if self.mean_action:
                knobs = self.expected_knobs(obs)
            else:
                knobs = self.knobs(self.select(obs, action_noise))
            return self._reshape_guidance(knobs, step_index)

        # menu levels are validated with the task, and a mean of them lies between them (for
        # finite logits; NaN logits give NaN knobs, which the finite check then reports as a
        # non-finite stage): no per-step checks
        act.validated = True
        return act

    def sample(
        self,
        n: int | None = None,
        *,
        noise: NoiseSource | None = None,
        labels: torch.Tensor | None = None,
        seed: int = 0,
        per_sample: bool = False,
        action_noise: NoiseSource | None = None,
    ) -> SampleResult:
        """Draw samples with the policy choosing every step's knobs.

        Args:
            n: number of samples (or give ``noise``).
            noise: the sampler's noise source; default ``BatchNoise(n, seed=seed)``, or
                ``PerSampleNoise([seed + b])`` with ``per_sample=True`` (common random numbers:
                sample ``b`` depends only on ``seed + b``).
            labels: ``(B,)`` class labels (conditional tasks); default drawn from the task's
                label distribution with a CPU generator seeded with ``seed``.
            seed: seed of the default noise, labels and action noise.
            per_sample: per-sample generators for the default noise and action noise.
            action_noise: noise of stochastic choices; default seeded with
                ``ACTION_SEED_OFFSET + seed`` (per sample: ``+ b``). Unused when greedy or
                with ``mean_action``.

        Returns:
            :class:`~diffgym.envs.sampler.SampleResult`: ``x (B, *data_shape)``, ``labels``,
            per-sample ``nfe (B,)`` and transitions ``steps (B,)``.

        Raises:
            ValueError: neither or inconsistent ``n``/``noise``; labels on an unconditional task.
        """
        if noise is None:
            if n is None or isinstance(n, bool) or int(n) < 1:
                raise ValueError(f"give n >= 1 or a noise source, got n={n!r}")
            n = int(n)
            if per_sample:
                noise = PerSampleNoise(
                    [seed + b for b in range(n)], device=self.device, dtype=self.dtype
                )
            else:
                noise = BatchNoise(n, device=self.device, dtype=self.dtype, seed=seed)
        elif n is not None and n != noise.batch_size:
            raise ValueError(f"n={n} does not match the noise batch size {noise.batch_size}")
        batch = noise.batch_size
        per_sample = noise.per_sample
        if labels is None and self.task.num_classes > 0:
            labels = self.task.sample_labels(batch, torch.Generator().manual_seed(seed))
        if labels is not None:
            if self.task.num_classes == 0:
                raise ValueError(f"task {self.task.name!r} is unconditional; labels must be None")
            labels = torch.as_tensor(labels, dtype=torch.long).to(self.device)
        if action_noise is None and not (self.greedy or self.mean_action):
            base = ACTION_SEED_OFFSET + seed
            action_noise = (
                PerSampleNoise([base + b for b in range(batch)], device=self.device)
                if per_sample
                else BatchNoise(batch, device=self.device, seed=base)
            )
        with torch.inference_mode():
            return sample(
                self.task.denoiser,
                self.sigmas,
                noise=noise,
                data_shape=self.task.data_shape,
                labels=labels,
                guide=self._guide,
                actions=self.actions(action_noise),
                renoise_budget=self.renoise_budget,
                dtype=self.dtype,
                check_finite=self.check_finite,
                advance=self.action_menus.schedule_factor,
            )


# --------------------------------------------------------------------------------------------
# Writing results
# --------------------------------------------------------------------------------------------


def save_samples(
    result: SampleResult,
    path_npz: str | os.PathLike | None,
    path_png: str | os.PathLike | None,
    task: Task,
    *,
    max_images: int = 100,
) -> None:
    """Write samples as ``.npz`` (keys ``x``, ``labels``, ``nfe``, ``steps``; atomically) and a PNG.

    The PNG is a scatter of the first two coordinates for vector tasks and a grid of the first
    ``max_images`` samples (grey levels, ``[-1, 1]`` -> black..white) for image tasks. Either path
    may be ``None`` to skip that file.
    """
    x = result.x.detach().cpu().numpy()
    labels = (
        result.labels.detach().cpu().numpy()
        if result.labels is not None
        else np.full(x.shape[0], -1, dtype=np.int64)
    )
    if path_npz is not None:
        arrays = {
            "x": x,
            "labels": labels,
            "nfe": result.nfe.detach().cpu().numpy(),
            "steps": result.steps.detach().cpu().numpy(),
        }

        def write_npz(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(path_npz, write_npz)
    if path_png is not None:
        fig = _figure(x, labels, task, max_images)
        atomic_write(path_png, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _figure(x: np.ndarray, labels: np.ndarray, task: Task, max_images: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if task.feature_kind == "image":
        imgs = x[:max_images]
        cols = max(1, math.ceil(math.sqrt(imgs.shape[0])))
        rows = max(1, math.ceil(imgs.shape[0] / cols))
        fig = Figure(figsize=(cols * 0.8, rows * 0.8))
        FigureCanvasAgg(fig)
        for k, img in enumerate(imgs):
            ax = fig.add_subplot(rows, cols, k + 1)
            pic = np.transpose(img, (1, 2, 0)) if img.shape[0] in (3, 4) else img[0]
            ax.imshow(np.clip((pic + 1) / 2, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if labels[k] >= 0:
                ax.set_title(str(int(labels[k])), fontsize=6, pad=1)
        fig.suptitle(f"{task.name}: {x.shape[0]} samples", fontsize=8)
        return fig
    flat = x.reshape(x.shape[0], -1)
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ycol = flat[:, 1] if flat.shape[1] > 1 else np.zeros(flat.shape[0])
    color = labels if (labels >= 0).any() else None
    ax.scatter(flat[:, 0], ycol, s=2, alpha=0.5, c=color)
    ax.set_aspect("equal")
    ax.set_title(f"{task.name}: {x.shape[0]} samples")
    return fig
