"""The batched EDM sampler step (design §3) and the whole-trajectory loop around it.

One function, :func:`sampler_step`, implements a transition of the sampling MDP for a batch of
samples, each with its own knobs (``churn``, ``S_noise``, guidance weight ``w``, renoise jump
``k``). The Gymnasium env, the grid-search baselines and policy-guided inference all call it.

Every counted NFE is one evaluated row: the denoiser sees only the rows that take a stage (active,
not renoised; the Heun stage only where ``sigma_{i+1} > 0``) and the guide only the rows with
``w != 1``. When every row needs a stage it is one full-batch call. Which rows need what is read
with one host sync per step (a handful of counts), which also carries the knob validation and
the accumulated finite checks of the previous step (:class:`FiniteCheck`).

Randomness is injected through a :class:`NoiseSource`: either one generator for the whole batch
(fast; the default for training) or per-sample counter-based streams (:class:`PerSampleNoise`),
so that a sample's trajectory does not depend on the batch it is in (EDM's
``StackedRandomGenerator`` idea; common random numbers when evaluating), drawn for the whole batch
in one vectorised call and identical on CPU and GPU (:mod:`diffgym.envs.noise`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import torch

from diffgym.envs.finite import FiniteCheck, NonFiniteDenoiserError
from diffgym.envs.noise import BatchNoise, NoiseSource, PerSampleNoise
from diffgym.envs.step_levels import Levels, euler_point, heun_point, uniform_levels

__all__ = [
    "NoiseSource",
    "BatchNoise",
    "PerSampleNoise",
    "Knobs",
    "KNOB_FIELDS",
    "StepOutput",
    "FiniteCheck",
    "NonFiniteDenoiserError",
    "sampler_step",
    "SampleResult",
    "sample",
    "schedule_actions",
]

Denoise = Callable[..., torch.Tensor]


# --------------------------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------------------------

KNOB_FIELDS = ("churn", "s_noise", "guidance", "renoise", "step")
"""The :class:`Knobs` fields; the menu knobs (``churn``, ``guidance``, ``renoise``, ``step``)
share them."""


def _deprecated_gamma(churn: Any, gamma: Any, where: str) -> Any:
    if gamma is None:
        return churn
    if churn is not None:
        raise TypeError(f"{where}: give churn or its deprecated alias gamma, not both")
    warnings.warn(
        f"{where}(gamma=...) is deprecated; use churn=... (removed in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )
    return gamma


@dataclass(init=False)
class Knobs:
    """Per-sample sampler knobs for one step; each ``(B,)`` tensor or ``None`` (neutral).

    Attributes:
        churn: churn ``gamma >= 0`` (neutral 0): ``sigma_hat = sigma_i (1 + churn)``.
        s_noise: churn noise scale ``S_noise`` (neutral 1).
        guidance: guidance weight ``w`` (neutral 1), finite.
        renoise: renoise jump ``k >= 0`` as int64 (neutral 0).
        step: advance ``a >= 1`` along ``sigmas`` as int64 (neutral: the step's ``advance``,
            1 unless the caller walks a finer base grid): the step goes from ``sigma_i`` to
            ``sigma_min(i + a, N)``, so the last step always lands on ``sigma_N = 0``.

    ``gamma=`` is accepted as a deprecated alias of ``churn=`` (``DeprecationWarning``).
    """

    churn: torch.Tensor | None = None
    s_noise: torch.Tensor | None = None
    guidance: torch.Tensor | None = None
    renoise: torch.Tensor | None = None
    step: torch.Tensor | None = None

    def __init__(
        self,
        churn: torch.Tensor | None = None,
        s_noise: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        renoise: torch.Tensor | None = None,
        step: torch.Tensor | None = None,
        *,
        gamma: torch.Tensor | None = None,
    ) -> None:
        self.churn = _deprecated_gamma(churn, gamma, "Knobs")
        self.s_noise = s_noise
        self.guidance = guidance
        self.renoise = renoise
        self.step = step

    @property
    def gamma(self) -> torch.Tensor | None:
        """Deprecated alias of :attr:`churn`."""
        warnings.warn("Knobs.gamma is deprecated; use Knobs.churn", DeprecationWarning,
                      stacklevel=2)
        return self.churn


# --------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------


@dataclass
class StepOutput:
    """Result of :func:`sampler_step` for a batch of ``B`` samples.

    Attributes:
        x: ``(B, *data_shape)`` samples after the transition.
        step_index: ``(B,)`` int64 new step indices (``i + 1``, or ``j`` after a renoise).
        budget: ``(B,)`` int64 renoise budget left.
        nfe: ``(B,)`` int64 denoiser evaluations spent by each sample in this transition (each
            one an evaluated row: the denoiser's or the guide's).
        renoised: ``(B,)`` bool, the sample took a renoise transition.
        churn_ignored: ``(B,)`` bool, a churn > 0 was asked for but not applied (last step).
        renoise_ignored: ``(B,)`` bool, a renoise was asked for but not applied (step 0 or no
            budget).
            The three flags are read-only: flags of knobs that were not given share one all-False
            tensor.
        unfinished: number of samples with ``step_index < N`` after the transition (a host int,
            read with the step's one host sync).
        rows_evaluated: ``(denoiser rows, guide rows)`` evaluated in this transition (host ints;
            their sum equals ``nfe.sum()``).
        uniform: the step index every sample is at after a step called with ``uniform`` that
            renoised no sample (``None`` otherwise): pass it to the next step.
    """

    x: torch.Tensor
    step_index: torch.Tensor
    budget: torch.Tensor
    nfe: torch.Tensor
    renoised: torch.Tensor
    churn_ignored: torch.Tensor
    renoise_ignored: torch.Tensor
    unfinished: int = -1
    rows_evaluated: tuple[int, int] = (0, 0)
    uniform: int | None = None


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` to broadcast against ``x`` (a 0-dim ``v`` as it is)."""
    return v if v.dim() == 0 else v.reshape(-1, *([1] * (x.ndim - 1)))


def _check_knob_shapes(knobs: Knobs, batch: int) -> None:
    """Shapes and dtypes (host-side, no sync)."""
    for name in KNOB_FIELDS:
        v = getattr(knobs, name)
        if v is not None and v.shape != (batch,):
            raise ValueError(f"knob {name} must have shape ({batch},), got {tuple(v.shape)}")
    for name in ("renoise", "step"):
        v = getattr(knobs, name)
        if v is not None and v.dtype.is_floating_point:
            raise TypeError(f"knob {name} must be an integer tensor, got {v.dtype}")


def _knob_violations(knobs: Knobs) -> list[tuple[str, torch.Tensor, str]]:
    """``(name, bad (B,) bool, what is allowed)`` per given knob (device ops, no sync)."""
    checks = []
    if knobs.churn is not None:
        checks.append(("churn", ~torch.isfinite(knobs.churn) | (knobs.churn < 0), "finite >= 0"))
    if knobs.s_noise is not None:
        checks.append(
            ("s_noise", ~torch.isfinite(knobs.s_noise) | (knobs.s_noise < 0), "finite >= 0")
        )
    if knobs.guidance is not None:
        checks.append(("guidance", ~torch.isfinite(knobs.guidance), "finite"))
    if knobs.renoise is not None:
        checks.append(("renoise", knobs.renoise < 0, "an integer >= 0"))
    if knobs.step is not None:
        checks.append(("step", knobs.step < 1, "an integer >= 1"))
    return checks


def _raise_knob(knobs: Knobs, name: str, bad: torch.Tensor, allowed: str) -> NoReturn:
    b = int(bad.nonzero()[0, 0])
    value = getattr(knobs, name)[b].item()
    raise ValueError(f"knob {name}={value} at sample {b} is not allowed; must be {allowed}")


class _Rows:
    """The batch rows a stage evaluates: all, none, or ``index (n,)`` (``count`` of ``batch``;
    ``mask`` may be ``None`` when ``count`` is 0 or ``batch``)."""

    __slots__ = ("count", "index", "full")

    def __init__(self, mask: torch.Tensor | None, count: int, batch: int) -> None:
        self.count = count
        self.full = count == batch
        self.index = None if self.full or count == 0 else _nonzero(mask, count)


_NO_ROWS = _Rows(None, 0, -1)


def _nonzero(mask: torch.Tensor, count: int) -> torch.Tensor:
    """``(count,)`` int64 indices of the set entries of ``mask``, without a host sync on CUDA."""
    if mask.device.type != "cpu" and hasattr(torch, "nonzero_static"):
        return torch.nonzero_static(mask, size=count).squeeze(1)
    return mask.nonzero().squeeze(1)


def _neutral_uniform_step(denoiser: Denoise, x: torch.Tensor, step_index: torch.Tensor,
                          nxt: torch.Tensor, levels: Levels, nxt_host: int, last_host: bool,
                          labels: torch.Tensor | None, budget: torch.Tensor | None,
                          noise: NoiseSource | None, check_finite: bool,
                          finite: FiniteCheck | None, guide: Denoise | None) -> StepOutput:
    """:func:`sampler_step` with neutral knobs, every sample at one step and nothing to validate
    or read on the host: EDM's Heun step (Euler only into ``sigma = 0``) on the whole batch,
    with the general path's arithmetic (:func:`~diffgym.envs.step_levels.euler_point`,
    :func:`~diffgym.envs.step_levels.heun_point`) and outputs, without its
    per-row bookkeeping."""
    batch, dev = x.shape[0], x.device
    skip = getattr(noise, "skip", None)  # the draw a neutral step skips, as the general path
    if skip is not None:
        skip(x.shape[1:])
    elif noise is not None:
        noise.randn(x.shape[1:], needed=False)
    x0_hat = denoiser(x, levels.t_cur_b, labels)
    outputs = [(x0_hat, None, levels.t_cur_b, "Euler stage")]
    d_cur, x_next = euler_point(x, x0_hat, levels.t_cur, levels.h)
    if not last_host:
        x0_prime = denoiser(x_next, levels.t_next_b, labels)
        outputs.append((x0_prime, None, levels.t_next_b, "Heun stage"))
        x_next = heun_point(x, x_next, x0_prime, d_cur, levels.t_next, levels.h, levels.half)
    if check_finite:
        checker = finite if finite is not None else FiniteCheck()
        checker.record(x_next, outputs, step_index, levels.t_cur)
        if finite is None:
            checker.check()
    stages = 1 if last_host else 2
    none = torch.zeros(batch, dtype=torch.bool, device=dev)
    return StepOutput(
        x=x_next, step_index=nxt,
        budget=torch.zeros(batch, dtype=torch.long, device=dev) if budget is None else budget,
        nfe=torch.full((batch,), stages, dtype=torch.long, device=dev), renoised=none,
        churn_ignored=none, renoise_ignored=none, unfinished=0 if last_host else batch,
        # the general path's columns, also for a denoiser passed as its own guide
        rows_evaluated=(0, stages * batch) if denoiser is guide else (stages * batch, 0),
        uniform=nxt_host,
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
    finite: FiniteCheck | None = None,
    uniform: int | None = None,
    advance: int = 1,
) -> StepOutput:
    """One transition of the sampling MDP for a batch (design §3; EDM Algorithm 2).

    For each sample ``b`` at level ``sigma_i = sigmas[step_index[b]]``, stepping to
    ``sigma_{i'}`` with ``i' = min(i + a, N)`` (``a``: its ``step`` knob, default ``advance``):

    1. Renoise (``k > 0``, ``i > 0`` and budget left): ``j = max(i - k, 0)``,
       ``x <- x + sqrt(sigma_j^2 - sigma_i^2) eps``, ``i <- j``, budget - 1; no NFE.
    2. Otherwise churn: ``sigma_hat = sigma_i (1 + churn)``,
       ``x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise eps`` (no churn at the last step);
    3. guided denoiser ``D_w = G + w (D(., c) - G)`` with ``G`` the guidance source (the
       unconditional branch for classifier-free guidance, a weaker model for autoguidance);
    4. Euler to ``sigma_{i'}``; 5. Heun correction when ``sigma_{i'} > 0``; 6. ``i <- i'``.

    The denoiser is evaluated only on the rows that take a stage and the guide only on those of
    them with ``w != 1``; a stage every row takes is one full-batch call. One host sync per call
    reads the row counts (with the validation flags and ``finite``'s queued checks).

    Args:
        denoiser: ``D(x, sigma, class_labels) -> x0_hat`` (EDM convention).
        x: ``(B, *data_shape)`` current samples.
        step_index: ``(B,)`` int64 indices into ``sigmas``, each in ``[0, N)`` for active rows.
        sigmas: ``(N + 1,)`` schedule ending in 0, on ``x``'s device.
        knobs: per-sample knobs (``None`` entries are neutral).
        labels: ``(B,)`` class labels, or ``None`` for an unconditional task.
        guide: the guidance source ``G(x, sigma, class_labels)``; ``None`` disables guidance (then
            every ``w`` acts as 1).
        budget: ``(B,)`` int64 renoise budget left (``None`` = no renoise possible).
        noise: the noise source (required when churn or renoise can be active).
        active: ``(B,)`` bool; inactive samples are returned unchanged with no NFE.
        validate: check knob shapes and values and the step indices (read with the step's sync).
        check_finite: raise :class:`NonFiniteDenoiserError` naming the step index and sigma if the
            denoiser or guide returns NaN/inf. Without ``finite`` the outputs are checked at the
            end of this call (one more host sync).
        finite: accumulate the finite checks here instead; they are read with the next call's
            host sync that is given the same ``finite`` (or by :meth:`FiniteCheck.check`), so a
            non-finite output raises one step later, before any state changes.
        uniform: the caller knows on the host that every sample is at step index ``uniform``
            (and ``active`` is ``None``): the levels and the last-step decision come from the
            host, and with neutral knobs the step needs no host sync at all. A ``step`` knob
            makes the levels per sample (``uniform`` is then ignored).
        advance: the neutral advance along ``sigmas`` (an int >= 1) of samples without a
            ``step`` knob: 1 for a task's own schedule; ``schedule_factor`` when ``sigmas`` is
            the step knob's finer base grid (:meth:`~diffgym.envs.tasks.Task.base_sigmas`).

    Returns:
        A :class:`StepOutput`. NFE per sample: 2 for a Heun step (1 when ``sigma_{i'} = 0``),
        doubled when guidance needs both branches (``w != 1`` with a guide), 0 for renoise.

    Raises:
        ValueError: knobs of the wrong shape, negative ``churn``/``S_noise``/``k``, non-finite
            ``w``, a ``step`` advance below 1, a step index outside ``[0, N)``.
        NonFiniteDenoiserError: the denoiser returned NaN/inf.
    """
    knobs = knobs or Knobs()
    batch = x.shape[0]
    num_steps = sigmas.shape[0] - 1
    dev, dt = x.device, x.dtype
    if validate:
        _check_knob_shapes(knobs, batch)
        if step_index.shape != (batch,):
            raise ValueError(
                f"step_index must have shape ({batch},), got {tuple(step_index.shape)}"
            )
    if isinstance(advance, bool) or not isinstance(advance, int) or advance < 1:
        raise ValueError(f"advance must be an int >= 1, got {advance!r}")
    sig = sigmas if (sigmas.device == dev and sigmas.dtype == dt) else sigmas.to(dev, dt)
    if knobs.step is not None:
        uniform = None  # per-sample advances: per-sample levels
    if uniform is None:
        i = step_index.clamp(0, num_steps - 1)
        t_cur = sig[i]
        if knobs.step is None and advance == 1:
            nxt = i + 1
        else:  # clipped at the end of the grid: the last step lands on sigma_N = 0
            step = knobs.step.to(dev) if knobs.step is not None else advance
            nxt = (i + step).clamp_max(num_steps)
        t_next = sig[nxt]
        last = t_next == 0
        last_host = None
        nxt_host = None
        levels = None
    else:  # every sample at step `uniform`: 0-dim levels, the last step known on the host
        if active is not None or not 0 <= uniform < num_steps:
            raise ValueError(
                f"uniform={uniform} needs active=None and a step index in 0..{num_steps - 1}"
            )
        i = step_index
        nxt_host = min(uniform + advance, num_steps)
        levels = (uniform_levels if sig is sigmas else Levels)(sig, uniform, nxt_host, batch)
        nxt = i + (levels.advance if i.device == sig.device else nxt_host - uniform)
        t_cur, t_next = levels.t_cur, levels.t_next
        last_host = nxt_host == num_steps
        last = None
        if (batch and not validate and knobs.churn is None and knobs.renoise is None
                and (knobs.guidance is None or guide is None) and not (
                    check_finite and finite is not None
                    and finite.unread >= FiniteCheck.max_pending)):
            return _neutral_uniform_step(denoiser, x, step_index, nxt, levels, nxt_host,
                                         last_host, labels, budget, noise, check_finite, finite,
                                         guide)

    def last_mask() -> torch.Tensor:
        return last if last is not None else torch.full((batch,), last_host, device=dev)
    # Masks are None where they are trivially all (active, euler) or none (renoised, noisy):
    # neutral knobs cost no mask arithmetic and no count.

    # Renoise decision: k > 0, i > 0 and budget left.
    renoised = renoise_ignored = None
    j, bud = i, budget
    if knobs.renoise is not None:
        k = knobs.renoise.to(dev)
        bud = budget.to(dev) if budget is not None else torch.zeros_like(k)
        wants_renoise = k > 0
        renoised = wants_renoise & (i > 0) & (bud > 0)
        if active is not None:
            renoised &= active
        renoise_ignored = wants_renoise & ~renoised
        if active is not None:
            renoise_ignored &= active
        j = torch.where(renoised, (i - k).clamp_min(0), i)

    # Churn (not at the last step; not when renoising).
    churn = churn_ignored = noisy = None
    if knobs.churn is not None:
        churn = knobs.churn.to(dev, dt)
        wants_churn = churn > 0
        blocked = last_mask() if renoised is None else last_mask() | renoised
        churn_ignored = wants_churn & last_mask()
        if renoised is not None:
            churn_ignored &= ~renoised
        if active is not None:
            churn_ignored &= active
        churn = torch.where(blocked, torch.zeros_like(churn), churn)
        noisy = wants_churn & ~blocked
    if renoised is not None:
        noisy = renoised if noisy is None else noisy | renoised
    if noisy is not None and active is not None:
        noisy = noisy & active

    # Rows per stage: Euler where active and not renoised, Heun also where sigma_{i+1} > 0;
    # the guide where w != 1 as well.
    if renoised is None:
        euler = active
    else:
        euler = ~renoised if active is None else active & ~renoised
    if last_host is None:
        heun = ~last if euler is None else euler & ~last
    else:  # None: every row (no last step) or none (the last step), known on the host
        heun = None if (euler is None or last_host) else euler
    w = knobs.guidance.to(dev, dt) if (knobs.guidance is not None and guide is not None) else None
    guided = (w != 1) if w is not None else None
    guided_euler = guided_heun = None
    if guided is not None:
        guided_euler = guided if euler is None else euler & guided
        guided_heun = (guided if heun is None else heun & guided) if not last_host else None
    new_index = nxt if renoised is None else torch.where(renoised, j, nxt)
    if active is not None:
        new_index = torch.where(active, new_index, step_index)
    masks = {} if (heun is None or heun is euler) else {"heun": heun}
    for name, mask in (("euler", euler), ("noisy", noisy), ("renoised", renoised),
                       ("active", active), ("guided_euler", guided_euler),
                       ("guided_heun", guided_heun)):
        if mask is not None:
            masks[name] = mask
    if euler is not None:  # otherwise every row ends at i + 1 (unfinished = Heun rows)
        masks["unfinished"] = new_index < num_steps

    # The step's one host sync: row counts, validation flags and queued finite checks.
    stats = [torch.stack(list(masks.values())).sum(dim=1)] if masks else []
    violations = []
    if validate:
        violations = _knob_violations(knobs)
        bad_index = (step_index < 0) | (step_index >= num_steps)
        if active is not None:
            bad_index &= active
        violations.append(("step index", bad_index, ""))
        stats.append(torch.stack([bad.any() for _, bad, _ in violations]).long())
    queued = len(finite) if (finite is not None and check_finite) else 0
    unread = finite.unread if (finite is not None and check_finite) else 0
    read_now = bool(stats) or unread >= FiniteCheck.max_pending  # what a queue of all would do
    pending = bool(queued) and read_now
    if pending:  # read the queued checks with this step's sync
        stats.append(finite.flags().long())
    host = (torch.cat(stats).tolist() if len(stats) > 1 else stats[0].tolist()) if stats else []
    counts, host = dict(zip(masks, host)), host[len(masks):]
    if violations:
        flags, host = host[: len(violations)], host[len(violations):]
        for (name, bad, allowed), flag in zip(violations, flags):
            if not flag:
                continue
            if name == "step index":
                value = int(step_index[bad][0])
                raise ValueError(
                    f"step index {value} is out of range; allowed 0..{num_steps - 1}"
                )
            _raise_knob(knobs, name, bad, allowed)
    if pending:
        finite.resolve([bool(v) for v in host])
    elif unread and read_now:  # all read on the CPU already: only the count starts over
        finite.check()
    n_euler = counts.get("euler", batch)
    if heun is None:
        n_heun = 0 if last_host else batch
    else:
        n_heun = counts["heun"] if heun is not euler else n_euler
    n_noisy = counts.get("noisy", 0)
    n_renoised = counts.get("renoised", 0)
    n_guided_euler = counts.get("guided_euler", 0)
    n_guided_heun = counts.get("guided_heun", 0)
    unfinished = counts.get("unfinished", n_heun)
    everyone = active is None or counts["active"] == batch

    # One draw serves churn or renoise (they exclude each other within a step).
    if noise is not None and n_noisy:
        eps = noise.randn(x.shape[1:]).to(dt)
    elif noise is not None:
        eps = None
        skip = getattr(noise, "skip", None)  # a user's source may only have randn
        if skip is not None:
            skip(x.shape[1:])
        else:
            noise.randn(x.shape[1:], needed=False)
    elif n_noisy:
        raise ValueError("churn or renoise needs a noise source; pass noise=...")
    else:
        eps = None

    checker = (finite if finite is not None else FiniteCheck()) if check_finite else None
    outputs: list[tuple] = []  # (output, rows, sigma, stage) of every evaluation
    rows_evaluated = [0, 0]

    def evaluate(
        model: Denoise, x_in: torch.Tensor, t_in: torch.Tensor, rows: _Rows, what: str
    ) -> torch.Tensor:
        """``model`` on ``rows`` only: ``(rows.count, *data_shape)`` (the whole batch if full)."""
        if t_in.dim() == 0:
            t_in = levels.expanded(t_in, batch) if levels is not None else t_in.expand(batch)
        if rows.full:
            out = model(x_in, t_in, labels)
        else:
            idx = rows.index
            out = model(x_in[idx], t_in[idx], labels[idx] if labels is not None else None)
        rows_evaluated[model is guide] += rows.count
        outputs.append((out, rows.index, t_in, what))
        return out

    def denoise(
        x_in: torch.Tensor, t_in: torch.Tensor, rows: _Rows, grows: _Rows, what: str
    ) -> torch.Tensor:
        """The guided denoiser ``D_w`` on ``rows``; rows not evaluated get ``x_in`` (``d = 0``)."""
        d = evaluate(denoiser, x_in, t_in, rows, what)
        if not rows.full:
            d = x_in.index_copy(0, rows.index, d)
        if grows.count == 0:
            return d
        g = evaluate(guide, x_in, t_in, grows, what + ", guidance source")
        if grows.full:
            return g + _bcast(w, x_in) * (d - g)
        gi = grows.index
        return d.index_copy(0, gi, g + _bcast(w[gi], g) * (d[gi] - g))

    x_next = x
    if n_euler:
        # Churn: increase noise temporarily.
        if churn is not None and n_noisy:
            t_hat = t_cur * (1 + churn)
            s_noise = knobs.s_noise.to(dev, dt) if knobs.s_noise is not None else None
            scale = torch.sqrt((t_hat**2 - t_cur**2).clamp_min(0))
            if s_noise is not None:
                scale = scale * s_noise
            x_hat = x + _bcast(scale, x) * eps
        else:
            t_hat, x_hat = t_cur, x

        # Euler step.
        grows = _Rows(guided_euler, n_guided_euler, batch) if n_guided_euler else _NO_ROWS
        x0_hat = denoise(x_hat, t_hat, _Rows(euler, n_euler, batch), grows, "Euler stage")
        h = levels.h if (levels is not None and t_hat is t_cur) else _bcast(t_next - t_hat, x)
        d_cur, x_euler = euler_point(x_hat, x0_hat, _bcast(t_hat, x), h)

        # Heun correction where sigma_{i+1} > 0 (rows without it are not evaluated).
        if n_heun:
            whole = n_heun == batch or last_host is False
            t_eval = t_next if whole else torch.where(last, t_cur, t_next)
            grows = _Rows(guided_heun, n_guided_heun, batch) if n_guided_heun else _NO_ROWS
            x0_prime = denoise(x_euler, t_eval, _Rows(heun, n_heun, batch), grows, "Heun stage")
            half = levels.half if levels is not None else 0.5  # a 0-dim 1/2 costs less
            x_heun = heun_point(x_hat, x_euler, x0_prime, d_cur, _bcast(t_eval, x), h, half)
            x_next = x_heun if whole else torch.where(_bcast(last, x), x_euler, x_heun)
        else:
            x_next = x_euler

    # Renoise: x <- x + sqrt(sigma_j^2 - sigma_i^2) eps.
    if n_renoised:
        t_j = sig[j]
        x_renoised = x + _bcast(torch.sqrt((t_j**2 - t_cur**2).clamp_min(0)), x) * eps
        x_next = torch.where(_bcast(renoised, x), x_renoised, x_next)
    if not everyone:
        x_next = torch.where(_bcast(active, x), x_next, x)
    if checker is not None and outputs:
        checker.record(x_next, outputs, i, t_cur)
        if finite is None:
            checker.check()

    # Per-sample results.
    if bud is None:
        bud = torch.zeros(batch, dtype=torch.long, device=dev)
    new_budget = torch.where(renoised, bud - 1, bud) if n_renoised else bud
    if heun is None:
        nfe = torch.full((batch,), 1 if last_host else 2, dtype=torch.long, device=dev)
        if euler is not None:
            nfe *= euler
    else:
        nfe = heun.long()
        nfe += 1 if euler is None else euler
    if guided_euler is not None:
        nfe += guided_euler
    if guided_heun is not None:
        nfe += guided_heun
    none = None
    if renoised is None or churn_ignored is None or renoise_ignored is None:
        none = torch.zeros(batch, dtype=torch.bool, device=dev)
    return StepOutput(
        x=x_next,
        step_index=new_index,
        budget=new_budget,
        nfe=nfe,
        renoised=none if renoised is None else renoised,
        churn_ignored=none if churn_ignored is None else churn_ignored,
        renoise_ignored=none if renoise_ignored is None else renoise_ignored,
        unfinished=unfinished,
        rows_evaluated=(rows_evaluated[0], rows_evaluated[1]),
        uniform=nxt_host if (uniform is not None and not n_renoised) else None,
    )


# --------------------------------------------------------------------------------------------
# Whole trajectories
# --------------------------------------------------------------------------------------------


@dataclass
class SampleResult:
    """Final samples ``x (B, *data_shape)``, ``labels (B,)`` (or None), ``nfe (B,)`` int64, the
    number of transitions each sample took, ``steps (B,)``, and the rows the denoiser and guide
    evaluated in all (``rows_evaluated == nfe.sum()``)."""

    x: torch.Tensor
    labels: torch.Tensor | None
    nfe: torch.Tensor
    steps: torch.Tensor
    rows_evaluated: int = 0


ActionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], Knobs]


def schedule_actions(
    *,
    churn: Sequence[float] | torch.Tensor | None = None,
    s_noise: Sequence[float] | torch.Tensor | None = None,
    guidance: Sequence[float] | torch.Tensor | None = None,
    renoise: Sequence[int] | torch.Tensor | None = None,
    gamma: Sequence[float] | torch.Tensor | None = None,
) -> ActionFn:
    """An action function that reads per-step knob tables: sample at step ``i`` gets ``table[i]``.

    Each table has length ``N`` (one entry per step index). The tables are validated here, once
    (so :func:`sample` skips the per-step knob checks). ``gamma=`` is a deprecated alias of
    ``churn=``. Returns a callable for :func:`sample` (with ``validated = True``).

    Raises:
        ValueError: tables of different lengths, or an entry outside its knob's range (churn,
            ``S_noise`` finite ``>= 0``; guidance finite; renoise an integer ``>= 0``).
    """
    churn = _deprecated_gamma(churn, gamma, "schedule_actions")
    tables = {"churn": churn, "s_noise": s_noise, "guidance": guidance, "renoise": renoise}
    lengths = {name: len(t) for name, t in tables.items() if t is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"schedule tables must have one length, got {lengths}")
    host = {
        name: (t.detach().cpu().to(torch.float64) if torch.is_tensor(t)
               else torch.as_tensor(t, dtype=torch.float64))
        for name, t in tables.items()
        if t is not None
    }
    allowed = {"churn": "finite >= 0", "s_noise": "finite >= 0", "guidance": "finite",
               "renoise": "an integer >= 0"}
    for name, t in host.items():
        bad = ~torch.isfinite(t)
        if name != "guidance":
            bad |= t < 0
        if name == "renoise":
            bad |= t != torch.round(t)
        if bool(bad.any()):
            step = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"schedule table {name}[{step}]={t[step].item()} is not allowed; must be "
                f"{allowed[name]}"
            )
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

    act.validated = True  # type: ignore[attr-defined]
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
    advance: int = 1,
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
        dtype: of the samples.
        check_finite: raise :class:`NonFiniteDenoiserError` if the denoiser or guide returns
            NaN/inf (checks accumulated, read with each step's one host sync and at the end).
        advance: the neutral advance along ``sigmas`` (see :func:`sampler_step`): 1 for a
            task's schedule, ``schedule_factor`` on the step knob's base grid.

    Returns:
        :class:`SampleResult` with the final samples, per-sample NFE and the rows evaluated.

    At most one host sync per transition (:func:`sampler_step`'s; none for neutral knobs while
    every sample is at the same step), plus one at the end for the finite checks. Knobs of
    ``actions`` with ``validated = True`` (:func:`schedule_actions`, a policy's menus) are not
    checked again at every step.
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
    validate = actions is not None and not getattr(actions, "validated", False)
    finite = FiniteCheck() if check_finite else None
    rows_evaluated = 0
    unfinished = batch
    uniform: int | None = 0  # every sample at this step index (until a renoise)
    # Each renoise moves back at most N - 1 levels, so N + budget (N - 1) transitions suffice.
    max_transitions = num_steps + int(renoise_budget) * max(num_steps - 1, 0)
    for _ in range(max_transitions):
        if unfinished == 0:
            break
        active = None if uniform is not None else step_index < num_steps
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
            validate=validate,
            check_finite=check_finite,
            finite=finite,
            uniform=uniform,
            advance=advance,
        )
        x, step_index, budget = out.x, out.step_index, out.budget
        nfe = nfe + out.nfe
        steps = steps + (1 if active is None else active.long())
        unfinished, uniform = out.unfinished, out.uniform
        rows_evaluated += sum(out.rows_evaluated)
    if finite is not None:
        finite.check()
    return SampleResult(x=x, labels=labels, nfe=nfe, steps=steps, rows_evaluated=rows_evaluated)
