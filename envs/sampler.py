"""The batched EDM sampler step (design §3) and the whole-trajectory loop around it.

One function, :func:`sampler_step`, implements a transition of the sampling MDP for a batch of
samples, each with its own knobs (churn ``gamma``, ``S_noise``, guidance weight ``w``, renoise jump
``k``). The Gymnasium env, the grid-search baselines and policy-guided inference all call it.

Randomness is injected through a :class:`NoiseSource`: either one generator for the whole batch
(fast; the default for training) or one generator per sample, so that a sample's trajectory does not
depend on the batch it is in (EDM's ``StackedRandomGenerator`` idea; used for common random numbers
when evaluating).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "NoiseSource",
    "BatchNoise",
    "PerSampleNoise",
    "Knobs",
    "StepOutput",
    "NonFiniteDenoiserError",
    "sampler_step",
    "SampleResult",
    "sample",
    "schedule_actions",
]

Denoise = Callable[..., torch.Tensor]


class NonFiniteDenoiserError(FloatingPointError):
    """A denoiser returned NaN or inf."""


# --------------------------------------------------------------------------------------------
# Noise sources
# --------------------------------------------------------------------------------------------


class NoiseSource:
    """Standard-normal noise for a batch of ``batch_size`` samples.

    ``randn(shape, needed)`` returns ``(batch_size, *shape)``. ``needed`` says whether any sample
    uses the draw; a source may skip the draw (return zeros) when it is not needed.
    """

    batch_size: int
    per_sample: bool = False

    def randn(self, shape: Sequence[int], *, needed: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The stream positions (plain tensors); :meth:`load_state_dict` restores them."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class BatchNoise(NoiseSource):
    """One generator for the whole batch (fast). Draws nothing when no sample needs noise.

    Args:
        batch_size: number of samples.
        generator: a ``torch.Generator`` on ``device`` (created and seeded from ``seed`` if None).
        device, dtype: of the returned noise.
        seed: seed of the generator created when ``generator`` is None.
    """

    per_sample = False

    def __init__(
        self,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.dtype = dtype
        if generator is None:
            generator = torch.Generator(device=self.device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
        self.generator = generator

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())

    def randn(self, shape: Sequence[int], *, needed: bool = True) -> torch.Tensor:
        full = (self.batch_size, *shape)
        if not needed:
            return torch.zeros(full, device=self.device, dtype=self.dtype)
        return torch.randn(full, generator=self.generator, device=self.device, dtype=self.dtype)


class PerSampleNoise(NoiseSource):
    """One generator per sample: sample ``b``'s noise depends only on its own seed.

    Every call draws one normal vector per sample, whether or not the sample uses it, so a sample's
    random stream advances by exactly one draw per call and never depends on the other samples or
    on the batch size.

    The generators are CPU generators whatever ``device`` is, and each call's batch is copied to
    ``device`` once. So sample ``b``'s noise is the same numbers on every device (results differ
    across devices only by floating-point rounding), and a GPU is not asked for one tiny kernel
    launch per sample per step (2048 of them per step at the comparison's batch size).

    Args:
        seeds: ``batch_size`` integer seeds, one per sample.
        device, dtype: of the returned noise.
    """

    per_sample = True

    def __init__(
        self,
        seeds: Sequence[int] | torch.Tensor,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        seeds = [int(s) for s in (seeds.tolist() if torch.is_tensor(seeds) else seeds)]
        if not seeds:
            raise ValueError("PerSampleNoise needs at least one seed")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = len(seeds)
        self.generators = [torch.Generator() for _ in seeds]
        for g, s in zip(self.generators, seeds):
            g.manual_seed(s)

    def state_dict(self) -> dict[str, Any]:
        return {"generators": [g.get_state() for g in self.generators]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        states = state["generators"]
        if len(states) != len(self.generators):
            raise ValueError(
                f"noise state of {len(states)} samples does not fit {len(self.generators)}"
            )
        for g, s in zip(self.generators, states):
            g.set_state(s.cpu())

    def reseed(self, index: int, seed: int) -> None:
        """Restart sample ``index``'s stream from ``seed``."""
        self.generators[index].manual_seed(int(seed))

    def randn(self, shape: Sequence[int], *, needed: bool = True) -> torch.Tensor:
        noise = torch.stack(
            [torch.randn(tuple(shape), generator=g, dtype=self.dtype) for g in self.generators]
        )
        return noise.to(self.device)


# --------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------


@dataclass
class Knobs:
    """Per-sample sampler knobs for one step; each ``(B,)`` tensor or ``None`` (neutral).

    Attributes:
        gamma: churn ``gamma >= 0`` (neutral 0): ``sigma_hat = sigma_i (1 + gamma)``.
        s_noise: churn noise scale ``S_noise`` (neutral 1).
        guidance: guidance weight ``w`` (neutral 1), finite.
        renoise: renoise jump ``k >= 0`` as int64 (neutral 0).
    """

    gamma: torch.Tensor | None = None
    s_noise: torch.Tensor | None = None
    guidance: torch.Tensor | None = None
    renoise: torch.Tensor | None = None


@dataclass
class StepOutput:
    """Result of :func:`sampler_step` for a batch of ``B`` samples.

    Attributes:
        x: ``(B, *data_shape)`` samples after the transition.
        step_index: ``(B,)`` int64 new step indices (``i + 1``, or ``j`` after a renoise).
        budget: ``(B,)`` int64 renoise budget left.
        nfe: ``(B,)`` int64 denoiser evaluations spent by each sample in this transition.
        renoised: ``(B,)`` bool, the sample took a renoise transition.
        churn_ignored: ``(B,)`` bool, a churn > 0 was asked for but not applied (last step).
        renoise_ignored: ``(B,)`` bool, a renoise was asked for but not applied (step 0 or no
            budget).
    """

    x: torch.Tensor
    step_index: torch.Tensor
    budget: torch.Tensor
    nfe: torch.Tensor
    renoised: torch.Tensor
    churn_ignored: torch.Tensor
    renoise_ignored: torch.Tensor


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` to broadcast against ``x``."""
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def _validate_knobs(knobs: Knobs, batch: int) -> None:
    """Raise ``ValueError`` for knobs of the wrong shape or with illegal values (one host sync)."""
    for name in ("gamma", "s_noise", "guidance", "renoise"):
        v = getattr(knobs, name)
        if v is not None and v.shape != (batch,):
            raise ValueError(f"knob {name} must have shape ({batch},), got {tuple(v.shape)}")
    checks = []
    if knobs.gamma is not None:
        checks.append(("gamma", ~torch.isfinite(knobs.gamma) | (knobs.gamma < 0), "finite >= 0"))
    if knobs.s_noise is not None:
        checks.append(
            ("s_noise", ~torch.isfinite(knobs.s_noise) | (knobs.s_noise < 0), "finite >= 0")
        )
    if knobs.guidance is not None:
        checks.append(("guidance", ~torch.isfinite(knobs.guidance), "finite"))
    if knobs.renoise is not None:
        if knobs.renoise.dtype.is_floating_point:
            raise TypeError(f"knob renoise must be an integer tensor, got {knobs.renoise.dtype}")
        checks.append(("renoise", knobs.renoise < 0, "an integer >= 0"))
    if not checks:
        return
    bad_any = torch.stack([bad.any() for _, bad, _ in checks])
    if not bool(bad_any.any()):
        return
    for (name, bad, allowed), flag in zip(checks, bad_any.tolist()):
        if flag:
            b = int(bad.nonzero()[0, 0])
            value = getattr(knobs, name)[b].item()
            raise ValueError(f"knob {name}={value} at sample {b} is not allowed; must be {allowed}")


def _check_finite(d: torch.Tensor, step_index: torch.Tensor, sigma: torch.Tensor, what: str):
    bad = ~torch.isfinite(d.reshape(d.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise NonFiniteDenoiserError(
            f"the denoiser returned NaN/inf ({what}) at step index {int(step_index[b])}, "
            f"sigma={float(sigma[b]):.6g} (sample {b})"
        )


def sampler_step(
    denoiser: Denoise,
    x: torch.Tensor,
    step_index: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    knobs: Knobs | None = None,
    labels: torch.Tensor | None = None,
    guide: Denoise | None = None,
    budget: torch.Tensor | None = None,
    noise: NoiseSource | None = None,
    active: torch.Tensor | None = None,
    validate: bool = True,
    check_finite: bool = True,
) -> StepOutput:
    """One transition of the sampling MDP for a batch (design §3; EDM Algorithm 2).

    For each sample ``b`` at level ``sigma_i = sigmas[step_index[b]]``:

    1. Renoise (``k > 0``, ``i > 0`` and budget left): ``j = max(i - k, 0)``,
       ``x <- x + sqrt(sigma_j^2 - sigma_i^2) eps``, ``i <- j``, budget - 1; no NFE.
    2. Otherwise churn: ``sigma_hat = sigma_i (1 + gamma)``,
       ``x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise eps`` (no churn at the last step);
    3. guided denoiser ``D_w = G + w (D(., c) - G)`` with ``G`` the guidance source (the
       unconditional branch for classifier-free guidance, a weaker model for autoguidance);
    4. Euler to ``sigma_{i+1}``; 5. Heun correction when ``sigma_{i+1} > 0``; 6. ``i <- i + 1``.

    Args:
        denoiser: ``D(x, sigma, class_labels) -> x0_hat`` (EDM convention).
        x: ``(B, *data_shape)`` current samples.
        step_index: ``(B,)`` int64 indices into ``sigmas``, each in ``[0, N)``.
        sigmas: ``(N + 1,)`` schedule ending in 0, on ``x``'s device.
        knobs: per-sample knobs (``None`` entries are neutral).
        labels: ``(B,)`` class labels, or ``None`` for an unconditional task.
        guide: the guidance source ``G(x, sigma, class_labels)``; ``None`` disables guidance (then
            every ``w`` acts as 1). It is evaluated on the whole batch whenever it is given, so
            pass ``None`` when no sample can use a ``w != 1``.
        budget: ``(B,)`` int64 renoise budget left (``None`` = no renoise possible).
        noise: the noise source (required when churn or renoise can be active).
        active: ``(B,)`` bool; inactive samples are returned unchanged with no NFE.
        validate: check knob shapes and values (one host sync).
        check_finite: raise :class:`NonFiniteDenoiserError` naming the step index and sigma if the
            denoiser returns NaN/inf (one host sync per denoiser stage).

    Returns:
        A :class:`StepOutput`. NFE per sample: 2 for a Heun step (1 when ``sigma_{i+1} = 0``),
        doubled when guidance needs both branches (``w != 1`` with a guide), 0 for renoise.

    Raises:
        ValueError: knobs of the wrong shape, negative ``gamma``/``S_noise``/``k``, non-finite
            ``w``, a step index outside ``[0, N)``.
        NonFiniteDenoiserError: the denoiser returned NaN/inf.
    """
    knobs = knobs or Knobs()
    batch = x.shape[0]
    num_steps = sigmas.shape[0] - 1
    dev, dt = x.device, x.dtype
    if validate:
        _validate_knobs(knobs, batch)
        if step_index.shape != (batch,):
            raise ValueError(
                f"step_index must have shape ({batch},), got {tuple(step_index.shape)}"
            )
        bad = (step_index < 0) | (step_index >= num_steps)
        if active is not None:
            bad = bad & active
        if bool(bad.any()):
            value = int(step_index[bad][0])
            raise ValueError(f"step index {value} is out of range; allowed 0..{num_steps - 1}")
    if active is None:
        active = torch.ones(batch, dtype=torch.bool, device=dev)
    i = step_index.clamp(0, num_steps - 1)
    sig = sigmas.to(dev, dt)
    t_cur = sig[i]
    t_next = sig[i + 1]
    last = t_next == 0

    # Renoise decision: k > 0, i > 0 and budget left.
    zeros_long = torch.zeros(batch, dtype=torch.long, device=dev)
    k = knobs.renoise.to(dev) if knobs.renoise is not None else zeros_long
    bud = budget.to(dev) if budget is not None else zeros_long
    wants_renoise = k > 0
    renoised = wants_renoise & (i > 0) & (bud > 0) & active
    renoise_ignored = wants_renoise & ~renoised & active
    j = torch.where(renoised, (i - k).clamp_min(0), i)

    # Churn (not at the last step; not when renoising).
    gamma = knobs.gamma.to(dev, dt) if knobs.gamma is not None else torch.zeros_like(t_cur)
    churn_ignored = (gamma > 0) & last & ~renoised & active
    gamma = torch.where(last | renoised, torch.zeros_like(gamma), gamma)
    s_noise = knobs.s_noise.to(dev, dt) if knobs.s_noise is not None else torch.ones_like(t_cur)

    # One draw serves churn or renoise (they exclude each other within a step).
    if noise is not None:
        needed = noise.per_sample or bool(((gamma > 0) | renoised).any())
        eps = noise.randn(x.shape[1:], needed=needed).to(dt)
    else:
        if bool(((gamma > 0) | renoised).any()):
            raise ValueError("churn or renoise needs a noise source; pass noise=...")
        eps = torch.zeros_like(x)

    # Renoise: x <- x + sqrt(sigma_j^2 - sigma_i^2) eps.
    t_j = sig[j]
    x_renoised = x + _bcast(torch.sqrt((t_j**2 - t_cur**2).clamp_min(0)), x) * eps

    # Churn: increase noise temporarily.
    t_hat = t_cur * (1 + gamma)
    x_hat = x + _bcast(torch.sqrt((t_hat**2 - t_cur**2).clamp_min(0)) * s_noise, x) * eps

    # Guided denoiser.
    w = knobs.guidance.to(dev, dt) if knobs.guidance is not None else torch.ones_like(t_cur)
    guided = (w != 1) if guide is not None else torch.zeros(batch, dtype=torch.bool, device=dev)

    def denoise(x_in: torch.Tensor, t_in: torch.Tensor, what: str) -> torch.Tensor:
        d_cond = denoiser(x_in, t_in, labels)
        if check_finite:
            _check_finite(d_cond, i, t_in, what)
        if guide is None:
            return d_cond
        d_guide = guide(x_in, t_in, labels)
        if check_finite:
            _check_finite(d_guide, i, t_in, what + ", guidance source")
        w_b = _bcast(w, x_in)
        return torch.where(_bcast(guided, x_in), d_guide + w_b * (d_cond - d_guide), d_cond)

    # Euler step.
    x0_hat = denoise(x_hat, t_hat, "Euler stage")
    d_cur = (x_hat - x0_hat) / _bcast(t_hat, x)
    x_euler = x_hat + _bcast(t_next - t_hat, x) * d_cur

    # Heun correction where sigma_{i+1} > 0 (masked lanes evaluate at t_cur to stay finite).
    t_eval = torch.where(last, t_cur, t_next)
    x0_prime = denoise(torch.where(_bcast(last, x), x_hat, x_euler), t_eval, "Heun stage")
    d_prime = (x_euler - x0_prime) / _bcast(t_eval, x)
    x_heun = x_hat + _bcast(t_next - t_hat, x) * (0.5 * d_cur + 0.5 * d_prime)
    x_next = torch.where(_bcast(last, x), x_euler, x_heun)

    # Assemble per-sample results.
    x_out = torch.where(_bcast(renoised, x), x_renoised, x_next)
    x_out = torch.where(_bcast(active, x), x_out, x)
    new_index = torch.where(renoised, j, i + 1)
    new_index = torch.where(active, new_index, step_index)
    new_budget = torch.where(renoised, bud - 1, bud)
    per_stage = 1 + guided.long()
    nfe = per_stage * torch.where(last, 1, 2)
    nfe = torch.where(renoised | ~active, zeros_long, nfe)
    return StepOutput(
        x=x_out,
        step_index=new_index,
        budget=new_budget,
        nfe=nfe,
        renoised=renoised,
        churn_ignored=churn_ignored,
        renoise_ignored=renoise_ignored,
    )


# --------------------------------------------------------------------------------------------
# Whole trajectories
# --------------------------------------------------------------------------------------------


@dataclass
class SampleResult:
    """Final samples ``x (B, *data_shape)``, ``labels (B,)`` (or None), ``nfe (B,)`` int64, and the
    number of transitions each sample took, ``steps (B,)``."""

    x: torch.Tensor
    labels: torch.Tensor | None
    nfe: torch.Tensor
    steps: torch.Tensor


ActionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], Knobs]


def schedule_actions(
    *,
    gamma: Sequence[float] | torch.Tensor | None = None,
    s_noise: Sequence[float] | torch.Tensor | None = None,
    guidance: Sequence[float] | torch.Tensor | None = None,
    renoise: Sequence[int] | torch.Tensor | None = None,
) -> ActionFn:
    """An action function that reads per-step knob tables: sample at step ``i`` gets ``table[i]``.

    Each table has length ``N`` (one entry per step index). Returns a callable for :func:`sample`.
    """
    tables = {"gamma": gamma, "s_noise": s_noise, "guidance": guidance, "renoise": renoise}
    lengths = {name: len(t) for name, t in tables.items() if t is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"schedule tables must have one length, got {lengths}")
    cache: dict = {}

    def act(x: torch.Tensor, step_index: torch.Tensor, budget: torch.Tensor, labels) -> Knobs:
        key = (x.device, x.dtype)
        if key not in cache:
            cache[key] = {
                name: (
                    torch.as_tensor(t, device=x.device, dtype=torch.long)
                    if name == "renoise"
                    else torch.as_tensor(t, device=x.device, dtype=x.dtype)
                )
                for name, t in tables.items()
                if t is not None
            }
        tab = cache[key]
        n = next(iter(tab.values())).shape[0] if tab else 0
        idx = step_index.clamp(0, max(n - 1, 0))
        return Knobs(**{name: t[idx] for name, t in tab.items()})

    return act


def sample(
    denoiser: Denoise,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource,
    data_shape: Sequence[int],
    labels: torch.Tensor | None = None,
    guide: Denoise | None = None,
    actions: ActionFn | None = None,
    renoise_budget: int = 0,
    dtype: torch.dtype = torch.float32,
    check_finite: bool = True,
) -> SampleResult:
    """Run whole trajectories by looping :func:`sampler_step`; ``x_0 ~ N(0, sigma_0^2 I)``.

    Args:
        denoiser: the EDM-convention denoiser.
        sigmas: ``(N + 1,)`` schedule ending in 0.
        noise: noise source of batch size ``B`` (its first draw is the initial sample).
        data_shape: the shape of one sample.
        labels: ``(B,)`` labels for a conditional task.
        guide: guidance source (``None`` when no step uses ``w != 1``).
        actions: ``f(x, step_index, budget, labels) -> Knobs`` picks each step's knobs (a fixed
            schedule from :func:`schedule_actions`, or a policy); ``None`` = plain Heun.
        renoise_budget: renoise transitions allowed per sample.

    Returns:
        :class:`SampleResult` with the final samples and per-sample NFE.
    """
    batch = noise.batch_size
    dev = noise.device
    sigmas = sigmas.to(dev, dtype)
    num_steps = sigmas.shape[0] - 1
    x = noise.randn(tuple(data_shape)).to(dtype) * sigmas[0]
    step_index = torch.zeros(batch, dtype=torch.long, device=dev)
    budget = torch.full((batch,), int(renoise_budget), dtype=torch.long, device=dev)
    nfe = torch.zeros(batch, dtype=torch.long, device=dev)
    steps = torch.zeros(batch, dtype=torch.long, device=dev)
    # Each renoise moves back at most N - 1 levels, so N + budget (N - 1) transitions suffice.
    max_transitions = num_steps + int(renoise_budget) * max(num_steps - 1, 0)
    for _ in range(max_transitions):
        active = step_index < num_steps
        if not bool(active.any()):
            break
        knobs = actions(x, step_index, budget, labels) if actions is not None else Knobs()
        out = sampler_step(
            denoiser,
            x,
            step_index,
            sigmas,
            knobs=knobs,
            labels=labels,
            guide=guide,
            budget=budget,
            noise=noise,
            active=active,
            check_finite=check_finite,
        )
        x, step_index, budget = out.x, out.step_index, out.budget
        nfe = nfe + out.nfe
        steps = steps + active.long()
    return SampleResult(x=x, labels=labels, nfe=nfe, steps=steps)

