"""Grid-search baselines: fixed per-step sampler schedules, tuned by brute force (design §5).

Families, each available where the task has the knob:

* ``churn``: the EDM stochastic sampler (Karras et al. 2022, Algorithm 2):
  ``gamma_i = min(S_churn / N, sqrt(2) - 1)`` when ``S_min <= sigma_i <= S_max``, else 0; grid over
  ``S_churn x S_min x S_max x S_noise``.
* ``guidance``: constant guidance weight ``w``.
* ``interval``: guidance in a limited interval (Kynkäänniemi et al. 2024): ``w`` for
  ``sigma_lo <= sigma_i <= sigma_hi``, else 1; grid over ``w x sigma_lo x sigma_hi``.
* ``schedule`` (every task; searched only when named): plain Heun on the EDM schedule with its
  own number of steps and ``rho``; grid over ``num_steps x rho``. Its points change the task
  (:meth:`GridFamily.task_changes`, applied by :func:`point_task`) instead of per-step knob
  tables, so their NFE per sample differs from the default sampler's.

Every point, and the default sampler (plain Heun), is evaluated by :func:`evaluate_sampler` with
the same protocol a learned policy is evaluated with — common random numbers: sample ``b`` draws
its noise from its own generator seeded ``seed + b`` (:class:`~diffgym.envs.PerSampleNoise`),
labels are drawn once from a generator seeded ``seed``, and the metrics' reference data from one
seeded ``seed + 1`` (the convention of ``diffgym sample --per-sample-noise``). A point's result
therefore depends only on the task, the point, ``n`` and ``seed``.

:func:`run_grid` writes ``grid.json`` and ``grid.csv`` atomically after every point; a rerun with
the same ``out_dir`` reuses every finished point (points are keyed by a hash of the task, family,
parameters, ``n`` and ``seed``). ``backend="ray"`` runs the pending points as a Ray Tune
``grid_search`` and records the same table.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from diffgym.benchmarks.cost import Cost, Stopwatch
from diffgym.benchmarks.evaluate import (
    METRIC_DIRECTIONS,
    add_fid_argument,
    measured_metrics,
    task_metrics,
    with_fid,
)
from diffgym.envs.denoisers import GaussianMixture
from diffgym.envs.io import atomic_write_json, atomic_write_text
from diffgym.envs.sampler import ActionFn, PerSampleNoise, SampleResult, sample, schedule_actions
from diffgym.envs.tasks import Task, make_task

__all__ = [
    "BACKENDS",
    "DEFAULT_N",
    "FAMILIES",
    "POINT_PRESETS",
    "ChurnFamily",
    "GridFamily",
    "GridResult",
    "GuidanceFamily",
    "IntervalFamily",
    "PointResult",
    "ScheduleFamily",
    "SamplerEvaluation",
    "add_grid_parser",
    "crn_sample",
    "default_metric",
    "edm_churn_gammas",
    "evaluate_point",
    "evaluate_sampler",
    "guidance_interval_weights",
    "make_families",
    "point_task",
    "point_key",
    "print_grid_table",
    "reference_seed",
    "run_grid",
    "run_grid_cli",
    "task_fingerprint",
    "task_knobs",
]

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
POINT_PRESETS = ("small", "default")
DEFAULT_N = 2048  # samples per grid point (and per evaluation of any method)
DEFAULT_FAMILY = "default"  # the record name of the default sampler (all knobs neutral)
PROTOCOL_VERSION = 1  # bump when the evaluation protocol changes: old records stop matching
GRID_FORMAT = "diffgym-grid/1"
CHURN_CAP = math.sqrt(2.0) - 1.0  # EDM's bound on gamma: at most doubles the noise variance
RAY_INSTALL_HINT = "pip install 'diffgym[ray]'"


# --------------------------------------------------------------------------------------------
# Schedules (pure functions)
# --------------------------------------------------------------------------------------------


def edm_churn_gammas(
    sigmas: torch.Tensor, *, s_churn: float, s_min: float, s_max: float
) -> torch.Tensor:
    """EDM churn per step (Karras et al. 2022, Algorithm 2, line 5).

    ``gamma_i = min(S_churn / N, sqrt(2) - 1)`` if ``S_min <= sigma_i <= S_max`` else 0.

    Args:
        sigmas: ``(N + 1,)`` schedule ending in 0.
        s_churn, s_min, s_max: EDM's ``S_churn``, ``S_min``, ``S_max``.

    Returns:
        ``(N,)`` float64 ``gamma_i`` for ``i = 0..N-1``. The sampler applies no churn at the last
        step (``sigma_{i+1} = 0``) whatever the table says.
    """
    sig = sigmas[:-1].double()
    num_steps = sig.shape[0]
    gamma = min(float(s_churn) / num_steps, CHURN_CAP)
    inside = (sig >= float(s_min)) & (sig <= float(s_max))
    return torch.where(inside, torch.full_like(sig, gamma), torch.zeros_like(sig))


def guidance_interval_weights(
    sigmas: torch.Tensor, *, w: float, sigma_lo: float, sigma_hi: float
) -> torch.Tensor:
    """Guidance weight per step, on only in an interval (Kynkäänniemi et al. 2024).

    ``w_i = w`` if ``sigma_lo <= sigma_i <= sigma_hi`` else 1.

    Args:
        sigmas: ``(N + 1,)`` schedule ending in 0.

    Returns:
        ``(N,)`` float64 weights.
    """
    sig = sigmas[:-1].double()
    inside = (sig >= float(sigma_lo)) & (sig <= float(sigma_hi))
    return torch.where(inside, torch.full_like(sig, float(w)), torch.ones_like(sig))


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------


def task_knobs(task: Task) -> tuple[str, ...]:
    """The knobs ``task`` offers: those whose action menu has a non-neutral entry."""
    knobs = []
    if len(task.churn_levels) > 1:
        knobs.append("churn")
    if task.guide is not None and len(task.guidance_levels) > 1:
        knobs.append("guidance")
    if len(task.renoise_jumps) > 1 and task.renoise_budget > 0:
        knobs.append("renoise")
    return tuple(knobs)


def _axis(family: str, name: str, values: Sequence[float], *, minimum: float, strict: bool):
    """Validate one grid axis: non-empty, finite, above ``minimum``; returns a float tuple."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError(f"{family} grid axis {name} must not be empty")
    for v in values:
        if not math.isfinite(v) or v < minimum or (strict and v == minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise ValueError(f"{family} grid axis {name} has {v!r}; values must be finite {bound}")
    if len(set(values)) != len(values):
        raise ValueError(f"{family} grid axis {name} has repeated values: {values}")
    return values


@dataclass(frozen=True)
class GridFamily:
    """A family of fixed schedules: enumerates points and turns a point into per-step tables.

    Subclasses set ``name`` (the family's registry key), ``knob`` (the task knob it needs, see
    :func:`task_knobs`; ``None``: every task), ``opt_in`` (searched only when named), ``axes``
    (the parameter names of a point, which are also the dataclass fields holding each axis's
    values), ``bounds`` (per axis: the minimum value and whether it is excluded) and optionally
    ``ordered`` (``(lo, hi)``: a point needs ``lo < hi``). Axes are validated and normalised on
    construction. A family changes either per-step knob tables (:meth:`tables`) or the task
    itself (:meth:`task_changes`, e.g. the schedule family).
    """

    name: ClassVar[str]
    knob: ClassVar[str | None]
    opt_in: ClassVar[bool] = False
    axes: ClassVar[tuple[str, ...]]
    bounds: ClassVar[dict[str, tuple[float, bool]]]
    ordered: ClassVar[tuple[str, str] | None] = None

    def __post_init__(self) -> None:
        for axis in self.axes:
            minimum, strict = self.bounds[axis]
            values = _axis(self.name, axis, getattr(self, axis), minimum=minimum, strict=strict)
            object.__setattr__(self, axis, values)
        if self.ordered is not None and not self.points():
            lo, hi = self.ordered
            raise ValueError(
                f"{self.name} grid has no point with {lo} < {hi}: {lo}={getattr(self, lo)}, "
                f"{hi}={getattr(self, hi)}"
            )

    def valid(self, point: Mapping[str, float]) -> bool:
        """Whether a combination of axis values is a meaningful point (``lo < hi`` if ordered)."""
        return self.ordered is None or point[self.ordered[0]] < point[self.ordered[1]]

    def points(self) -> list[dict[str, float]]:
        """Every valid point, in the order of the product of the axes."""
        values = [getattr(self, a) for a in self.axes]
        combos = (dict(zip(self.axes, combo)) for combo in itertools.product(*values))
        return [p for p in combos if self.valid(p)]

    def tables(self, point: Mapping[str, float], sigmas: torch.Tensor) -> dict[str, list[float]]:
        """Per-step knob tables (keyword arguments of ``schedule_actions``), each of length N."""
        raise NotImplementedError

    @classmethod
    def task_changes(cls, point: Mapping[str, float]) -> dict[str, Any]:
        """Task fields the point changes (``Task.replace`` arguments); none for knob families."""
        return {}

    @classmethod
    def preset(cls, task: Task, points: str = "default") -> GridFamily:
        """The family's ``"small"`` or ``"default"`` grid for ``task``."""
        raise NotImplementedError

    def config(self) -> dict[str, list[float]]:
        """The axis values, JSON-ready."""
        return {a: list(getattr(self, a)) for a in self.axes}

    def __len__(self) -> int:
        return len(self.points())


def _capped(values: Sequence[float], cap: float) -> tuple[float, ...]:
    """Values clipped to ``cap``, repeats removed, order kept."""
    out: list[float] = []
    for v in values:
        v = min(float(v), cap)
        if v not in out:
            out.append(v)
    return tuple(out)


def _check_preset(points: str) -> None:
    if points not in POINT_PRESETS:
        raise ValueError(f"unknown points preset {points!r}; allowed: {', '.join(POINT_PRESETS)}")


@dataclass(frozen=True)
class ChurnFamily(GridFamily):
    """EDM churn: ``S_churn x S_min x S_max x S_noise`` (points with ``S_min >= S_max`` skipped).

    Raises:
        ValueError: an empty axis, a non-finite value, ``S_churn <= 0`` (the default sampler is
            evaluated separately), ``S_min < 0``, ``S_max <= 0``, ``S_noise < 0``, no valid point.
    """

    name: ClassVar[str] = "churn"
    knob: ClassVar[str] = "churn"
    axes: ClassVar[tuple[str, ...]] = ("s_churn", "s_min", "s_max", "s_noise")
    bounds: ClassVar[dict[str, tuple[float, bool]]] = {
        "s_churn": (0.0, True), "s_min": (0.0, False), "s_max": (0.0, True),
        "s_noise": (0.0, False),
    }
    ordered: ClassVar[tuple[str, str] | None] = ("s_min", "s_max")

    s_churn: tuple[float, ...]
    s_min: tuple[float, ...]
    s_max: tuple[float, ...]
    s_noise: tuple[float, ...] = (1.0,)

    def tables(self, point: Mapping[str, float], sigmas: torch.Tensor) -> dict[str, list[float]]:
        churn = edm_churn_gammas(
            sigmas, s_churn=point["s_churn"], s_min=point["s_min"], s_max=point["s_max"]
        )
        return {"churn": churn.tolist(), "s_noise": [point["s_noise"]] * churn.shape[0]}

    @classmethod
    def preset(cls, task: Task, points: str = "default") -> ChurnFamily:
        """``S_churn = N * gamma`` for ``gamma`` in (0.05, 0.1, 0.2, 0.4) (default; 0.1 and 0.4
        small), ``S_min`` in (0, 0.05, 0.5), ``S_max`` in (1, 10, sigma_max), ``S_noise`` in
        (1, 1.003, 1.007) (EDM's published values): 108 points; small: 4."""
        _check_preset(points)
        n = task.num_steps
        if points == "small":
            return cls(
                s_churn=tuple(round(n * g, 3) for g in (0.1, 0.4)),
                s_min=(0.05,),
                s_max=_capped((10.0,), task.sigma_max),
                s_noise=(1.0, 1.007),
            )
        return cls(
            s_churn=tuple(round(n * g, 3) for g in (0.05, 0.1, 0.2, 0.4)),
            s_min=(0.0, 0.05, 0.5),
            s_max=_capped((1.0, 10.0, task.sigma_max), task.sigma_max),
            s_noise=(1.0, 1.003, 1.007),
        )


@dataclass(frozen=True)
class GuidanceFamily(GridFamily):
    """Constant guidance weight ``w`` at every step.

    Raises:
        ValueError: an empty axis or a non-finite ``w``.
    """

    name: ClassVar[str] = "guidance"
    knob: ClassVar[str] = "guidance"
    axes: ClassVar[tuple[str, ...]] = ("w",)
    bounds: ClassVar[dict[str, tuple[float, bool]]] = {"w": (-math.inf, False)}

    w: tuple[float, ...]

    def tables(self, point: Mapping[str, float], sigmas: torch.Tensor) -> dict[str, list[float]]:
        return {"guidance": [point["w"]] * (sigmas.shape[0] - 1)}

    @classmethod
    def preset(cls, task: Task, points: str = "default") -> GuidanceFamily:
        """``w`` in (1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6): 10 points; small (1.5, 2, 3)."""
        _check_preset(points)
        if points == "small":
            return cls(w=(1.5, 2.0, 3.0))
        return cls(w=(1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0))


@dataclass(frozen=True)
class IntervalFamily(GridFamily):
    """Guidance ``w`` on only for ``sigma_lo <= sigma_i <= sigma_hi``, 1 elsewhere
    (points with ``sigma_lo >= sigma_hi`` skipped).

    Raises:
        ValueError: an empty axis, a non-finite value, ``sigma_lo < 0``, ``sigma_hi <= 0``, no
            valid point.
    """

    name: ClassVar[str] = "interval"
    knob: ClassVar[str] = "guidance"
    axes: ClassVar[tuple[str, ...]] = ("w", "sigma_lo", "sigma_hi")
    bounds: ClassVar[dict[str, tuple[float, bool]]] = {
        "w": (-math.inf, False), "sigma_lo": (0.0, False), "sigma_hi": (0.0, True),
    }
    ordered: ClassVar[tuple[str, str] | None] = ("sigma_lo", "sigma_hi")

    w: tuple[float, ...]
    sigma_lo: tuple[float, ...]
    sigma_hi: tuple[float, ...]

    def tables(self, point: Mapping[str, float], sigmas: torch.Tensor) -> dict[str, list[float]]:
        w = guidance_interval_weights(
            sigmas, w=point["w"], sigma_lo=point["sigma_lo"], sigma_hi=point["sigma_hi"]
        )
        return {"guidance": w.tolist()}

    @classmethod
    def preset(cls, task: Task, points: str = "default") -> IntervalFamily:
        """``w`` in (1.5, 2, 3, 4, 5) x ``sigma_lo`` in (0, 0.1, 0.3, 1) x ``sigma_hi`` in
        (0.5, 2, 5, sigma_max): 75 points; small: ``w`` in (2, 3), (0.3, 5) only: 2."""
        _check_preset(points)
        if points == "small":
            return cls(w=(2.0, 3.0), sigma_lo=(0.3,), sigma_hi=_capped((5.0,), task.sigma_max))
        return cls(
            w=(1.5, 2.0, 3.0, 4.0, 5.0),
            sigma_lo=(0.0, 0.1, 0.3, 1.0),
            sigma_hi=_capped((0.5, 2.0, 5.0, task.sigma_max), task.sigma_max),
        )


# -- The schedule family (issue 16) -----------------------------------------------------------


@dataclass(frozen=True)
class ScheduleFamily(GridFamily):
    """Plain Heun on the EDM schedule with its own ``num_steps x rho`` (the baseline users tune
    first: fewer steps cost fewer NFE). Every task has it; it is searched only when named.

    A point runs the task with ``Task.replace(num_steps=N, rho=rho)`` (:meth:`task_changes`,
    applied by :func:`point_task`) and no knob tables, under the same CRN protocol; its NFE per
    sample is ``2 N - 1``.

    Raises:
        ValueError: an empty axis, a non-integer or non-positive ``num_steps``, ``rho <= 0``.
    """

    name: ClassVar[str] = "schedule"
    knob: ClassVar[str | None] = None
    opt_in: ClassVar[bool] = True
    axes: ClassVar[tuple[str, ...]] = ("num_steps", "rho")
    bounds: ClassVar[dict[str, tuple[float, bool]]] = {
        "num_steps": (1.0, False), "rho": (0.0, True),
    }

    num_steps: tuple[float, ...]
    rho: tuple[float, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        for v in self.num_steps:
            if v != int(v):
                raise ValueError(
                    f"schedule grid axis num_steps has {v!r}; values must be integers >= 1"
                )

    def tables(self, point: Mapping[str, float], sigmas: torch.Tensor) -> dict[str, list[float]]:
        return {}

    @classmethod
    def task_changes(cls, point: Mapping[str, float]) -> dict[str, Any]:
        return {"num_steps": int(point["num_steps"]), "rho": float(point["rho"])}

    @classmethod
    def preset(cls, task: Task, points: str = "default") -> ScheduleFamily:
        """``num_steps`` in (6, 9, 12, 18, 24) x ``rho`` in (3, 5, 7, 9): 20 points; small:
        (6, 12) x (5, 7): 4."""
        _check_preset(points)
        if points == "small":
            return cls(num_steps=(6.0, 12.0), rho=(5.0, 7.0))
        return cls(num_steps=(6.0, 9.0, 12.0, 18.0, 24.0), rho=(3.0, 5.0, 7.0, 9.0))


def point_task(task: Task, family: str, params: Mapping[str, float]) -> Task:
    """The task a point of ``family`` runs on: ``task`` with the family's
    :meth:`~GridFamily.task_changes` (``task`` itself for knob families and the default)."""
    cls = FAMILIES.get(family)
    changes = cls.task_changes(params) if cls is not None else {}
    return task.replace(**changes) if changes else task


FAMILIES: dict[str, type[GridFamily]] = {
    ChurnFamily.name: ChurnFamily,
    GuidanceFamily.name: GuidanceFamily,
    IntervalFamily.name: IntervalFamily,
    ScheduleFamily.name: ScheduleFamily,
}
"""The grid families by name."""


def _families_for(task: Task) -> list[str]:
    """The families searched by default: every knob family the task supports (not opt-in)."""
    knobs = task_knobs(task)
    return [name for name, cls in FAMILIES.items() if not cls.opt_in and cls.knob in knobs]


def _check_family(task: Task, name: str) -> type[GridFamily]:
    if name not in FAMILIES:
        raise ValueError(f"unknown grid family {name!r}; allowed: {', '.join(FAMILIES)}")
    cls = FAMILIES[name]
    if cls.knob is not None and cls.knob not in task_knobs(task):
        available = _families_for(task)
        raise ValueError(
            f"grid family {name!r} needs the {cls.knob} knob, which task {task.name!r} lacks; "
            f"families for this task: {', '.join(available) or 'none'}"
        )
    return cls


def make_families(
    task: Task,
    names: Sequence[str] | None = None,
    *,
    points: str = "default",
    **axes: Sequence[float] | None,
) -> list[GridFamily]:
    """The preset grids of ``names`` (default: every family ``task`` supports).

    Args:
        task: the task (its knobs, step count and ``sigma_max`` shape the presets).
        names: family names, keys of :data:`FAMILIES`.
        points: ``"small"`` or ``"default"`` preset.
        **axes: explicit values that replace a preset axis (``s_churn=(2, 4)``, ``w=(2, 3)``);
            ``None`` keeps the preset. An axis shared by several families (``w``) replaces it in
            each of them.

    Raises:
        ValueError: an unknown family or one whose knob the task lacks, an unknown preset, an
            axis no selected family has, bad axis values.
    """
    names = list(_families_for(task) if names is None else names)
    if not names:
        raise ValueError(f"task {task.name!r} has no knob any grid family can tune")
    if len(set(names)) != len(names):
        raise ValueError(f"grid families must not repeat, got {names}")
    classes = [_check_family(task, name) for name in names]
    axes = {k: v for k, v in axes.items() if v is not None}
    known = sorted({a for cls in classes for a in cls.axes})
    unknown = sorted(set(axes) - set(known))
    if unknown:
        raise ValueError(
            f"grid axis {unknown[0]!r} belongs to none of the families {names}; "
            f"their axes: {', '.join(known)}"
        )
    families = []
    for cls in classes:
        family = cls.preset(task, points)
        own = {k: tuple(v) for k, v in axes.items() if k in cls.axes}
        families.append(dataclasses.replace(family, **own) if own else family)
    return families


# --------------------------------------------------------------------------------------------
# Evaluation with common random numbers
# --------------------------------------------------------------------------------------------


@dataclass
class SamplerEvaluation:
    """One evaluated sampler: ``metrics`` from :func:`task_metrics`, its ``cost`` (NFE summed over
    samples; seconds under the sampling category and ``"metrics"``) and the raw ``result``."""

    metrics: dict[str, float]
    cost: Cost
    result: SampleResult


def reference_seed(seed: int) -> int:
    """Seed of the real reference set that an evaluation on protocol seed ``seed`` is scored
    against (``seed + 1``; the samples themselves use ``seed + b``)."""
    return int(seed) + 1


def eval_seeds(n: int, seed: int) -> range:
    """Per-sample noise seeds of the evaluation protocol: ``seed, ..., seed + n - 1``."""
    return range(int(seed), int(seed) + int(n))


def eval_labels(task: Task, n: int, seed: int) -> torch.Tensor | None:
    """``(n,)`` labels of the evaluation protocol (CPU), drawn from a generator seeded ``seed``."""
    return task.sample_labels(n, torch.Generator().manual_seed(int(seed)))


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (samples per point), got {n!r}")
    return n


def crn_sample(
    task: Task,
    actions: ActionFn | None = None,
    *,
    n: int,
    seed: int,
    guided: bool = False,
    renoise_budget: int = 0,
    device: torch.device | str = "cpu",
    base_grid: bool = False,
) -> SampleResult:
    """``n`` trajectories of the common-random-numbers protocol (no scoring).

    Sample ``b`` uses noise seed ``seed + b``; labels come from :func:`eval_labels`. Arguments as
    in :func:`evaluate_sampler`.

    Raises:
        ValueError: ``guided`` on a task without a guide.
    """
    if guided and task.guide is None:
        raise ValueError(f"task {task.name!r} has no guidance source; guided must be False")
    labels = eval_labels(task, n, seed)
    if labels is not None:
        labels = labels.to(device)
    return sample(
        task.denoiser,
        task.base_sigmas(device) if base_grid else task.sigmas(device),
        noise=PerSampleNoise(eval_seeds(n, seed), device=device, dtype=task.dtype),
        data_shape=task.data_shape,
        labels=labels,
        guide=task.guide if guided else None,
        actions=actions,
        renoise_budget=renoise_budget,
        dtype=task.dtype,
        advance=task.schedule_factor if base_grid else 1,
    )


def evaluate_sampler(
    task: Task,
    actions: ActionFn | None = None,
    *,
    n: int,
    seed: int,
    guided: bool = False,
    renoise_budget: int = 0,
    device: torch.device | str = "cpu",
    category: str = "evaluation",
    base_grid: bool = False,
) -> SamplerEvaluation:
    """Sample ``n`` trajectories under the common-random-numbers protocol and score them.

    Sample ``b`` uses noise seed ``seed + b``; labels come from :func:`eval_labels`; metrics use
    reference data seeded ``seed + 1``. Learned policies and grid points are evaluated alike.

    Args:
        task: the task (its denoiser and guide must be on ``device``).
        actions: ``f(x, step_index, budget, labels) -> Knobs`` (a schedule or a policy); ``None``
            for the default sampler.
        n: samples, ``>= 2``.
        seed: protocol seed.
        guided: pass the task's guide to the sampler (needed for any ``w != 1``).
        renoise_budget: renoise transitions allowed per sample.
        device: where to sample.
        category: the :class:`Cost` category of the sampling time (``"evaluation"`` for a
            method's final evaluation, ``"grid_point"`` for a grid point).
        base_grid: walk the step knob's base grid (:meth:`~diffgym.envs.tasks.Task.base_sigmas`,
            neutral advance ``schedule_factor``), as a policy trained with the step knob does
            (its action function reads base-grid step indices); ``False``: the task's schedule
            (knob tables of length N). The same samples either way when no step is taken off
            neutral.

    Raises:
        ValueError: ``n < 2``; ``guided`` on a task without a guide.
    """
    _check_n(n)
    with Stopwatch(device) as sampling:
        result = crn_sample(
            task, actions, n=n, seed=seed, guided=guided, renoise_budget=renoise_budget,
            device=device, base_grid=base_grid,
        )
    with Stopwatch() as scoring:
        metrics = task_metrics(task, result.x, result.labels, seed=reference_seed(seed))
    cost = Cost(
        nfe=int(result.nfe.sum()),
        samples=n,
        seconds={category: sampling.seconds, "metrics": scoring.seconds},
    )
    return SamplerEvaluation(
        metrics={k: float(v) for k, v in metrics.items()}, cost=cost, result=result
    )


@dataclass(frozen=True)
class PointResult:
    """One evaluated grid point (or the default sampler, family ``"default"``).

    Attributes:
        key: :func:`point_key` of the point.
        family: family name, or ``"default"``.
        params: the point, e.g. ``{"w": 2.0}`` (empty for the default sampler).
        metrics: task metrics.
        cost: ``nfe`` summed over the ``samples``; seconds ``{"grid_point", "metrics"}``.
        schedule: the per-step tables the point ran with (``schedule_actions`` arguments).
    """

    key: str
    family: str
    params: dict[str, float]
    metrics: dict[str, float]
    cost: Cost
    schedule: dict[str, list[float]]

    @property
    def nfe_per_sample(self) -> float:
        return self.cost.nfe_per_sample

    @property
    def label(self) -> str:
        """``family(p=v, ...)`` for tables."""
        if not self.params:
            return self.family
        inner = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.family}({inner})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "family": self.family,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "nfe_per_sample": self.nfe_per_sample,
            "cost": self.cost.to_dict(),
            "schedule": {k: list(v) for k, v in self.schedule.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointResult:
        return cls(
            key=str(data["key"]),
            family=str(data["family"]),
            params={k: float(v) for k, v in data["params"].items()},
            metrics={k: float(v) for k, v in data["metrics"].items()},
            cost=Cost.from_dict(data["cost"]),
            schedule={k: [float(x) for x in v] for k, v in data.get("schedule", {}).items()},
        )


def _hash_tensor(h: Any, name: str, t: torch.Tensor | None) -> None:
    h.update(name.encode())
    if t is None:
        h.update(b"none")
        return
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())


def _hash_mixture(h: Any, name: str, m: GaussianMixture) -> None:
    for attr in ("means", "stds", "weights", "component_labels"):
        _hash_tensor(h, f"{name}.{attr}", getattr(m, attr))


def _hash_module(h: Any, name: str, module: torch.nn.Module | None) -> None:
    if module is None:
        h.update(f"{name}:none".encode())
        return
    for sub_name, sub in module.named_modules(prefix=name):
        h.update(type(sub).__qualname__.encode())
        for attr, value in sorted(vars(sub).items()):
            if isinstance(value, GaussianMixture):
                _hash_mixture(h, f"{sub_name}.{attr}", value)
    for key, value in sorted(module.state_dict().items()):
        _hash_tensor(h, f"{name}.{key}", value)


def task_fingerprint(task: Task) -> dict[str, Any]:
    """What a point's result depends on in ``task``: its name, guide kind, schedule, dtype, extra
    settings, and a content hash of the denoiser, guide, target and label distribution (so a
    user-defined mixture gets its own keys). Action menus are not part of it, nor is the device:
    the kind of device that draws the noise enters each point's :func:`point_key` instead."""
    h = hashlib.sha256()
    _hash_module(h, "denoiser", task.denoiser)
    _hash_module(h, "guide", task.guide)
    if task.target is not None:
        _hash_mixture(h, "target", task.target)
    _hash_tensor(h, "label_probs", task.label_probs)
    return {
        "name": task.name,
        "guide_kind": task.guide_kind,
        "num_steps": task.num_steps,
        "sigma_min": task.sigma_min,
        "sigma_max": task.sigma_max,
        "rho": task.rho,
        "dtype": str(task.dtype),
        "extra": json.loads(json.dumps(task.extra, sort_keys=True, default=str)),
        "content_sha256": h.hexdigest(),
    }


def point_key(
    fingerprint: Mapping[str, Any],
    family: str,
    params: Mapping[str, float],
    *,
    n: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> str:
    """A stable 16-hex-digit key of a point: hash of the protocol version, task fingerprint,
    family, parameters, ``n``, ``seed`` and the kind of device that draws the noise.

    The device kind is part of the key because results are reproducible bit for bit only on one
    kind of device: the per-sample noise is the same numbers everywhere (CPU generators, see
    :class:`~diffgym.envs.PerSampleNoise`), but the denoiser's arithmetic rounds differently on a
    GPU, and before this version CUDA drew its own noise. A cache never mixes the two. (CPU keys
    are the ones of earlier versions: the field is only added for other devices.)
    """
    blob: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "task": dict(fingerprint),
        "family": family,
        "params": {k: float(v) for k, v in params.items()},
        "n": int(n),
        "seed": int(seed),
    }
    kind = torch.device(device).type
    if kind != "cpu":
        blob["noise_device"] = kind
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _PointSpec:
    """A point to evaluate: its key, family name, parameters and schedule tables."""

    key: str
    family: str
    params: dict[str, float]
    schedule: dict[str, list[float]]

    @property
    def guided(self) -> bool:
        return any(w != 1.0 for w in self.schedule.get("guidance", ()))


def _specs(
    task: Task,
    families: Sequence[GridFamily],
    *,
    n: int,
    seed: int,
    include_default: bool,
    device: torch.device | str,
) -> list[_PointSpec]:
    fp = task_fingerprint(task)
    sigmas = task.sigmas(dtype=torch.float64)
    specs = []
    if include_default:
        key = point_key(fp, DEFAULT_FAMILY, {}, n=n, seed=seed, device=device)
        specs.append(_PointSpec(key, DEFAULT_FAMILY, {}, {}))
    for family in families:
        for params in family.points():
            key = point_key(fp, family.name, params, n=n, seed=seed, device=device)
            specs.append(_PointSpec(key, family.name, dict(params), family.tables(params, sigmas)))
    return specs


def _evaluate_spec(
    task: Task, spec: _PointSpec, *, n: int, seed: int, device: torch.device | str
) -> PointResult:
    actions = schedule_actions(**spec.schedule) if spec.schedule else None
    ev = evaluate_sampler(
        point_task(task, spec.family, spec.params), actions, n=n, seed=seed,
        guided=spec.guided, device=device, category="grid_point",
    )
    return PointResult(spec.key, spec.family, spec.params, ev.metrics, ev.cost, spec.schedule)


def evaluate_point(
    task: Task,
    family: GridFamily | None,
    params: Mapping[str, float] | None = None,
    *,
    n: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> PointResult:
    """Evaluate one point of ``family`` (``None``: the default sampler) with the CRN protocol.

    Raises:
        ValueError: ``n < 2``; a point that is not in the family's grid.
    """
    _check_n(n)
    if family is None:
        name, params, schedule = DEFAULT_FAMILY, {}, {}
    else:
        params = {k: float(v) for k, v in (params or {}).items()}
        if params not in family.points():
            raise ValueError(f"{params} is not a point of the {family.name} grid {family.config()}")
        name, schedule = family.name, family.tables(params, task.sigmas(dtype=torch.float64))
    key = point_key(task_fingerprint(task), name, params, n=n, seed=seed, device=device)
    return _evaluate_spec(
        task, _PointSpec(key, name, dict(params), schedule), n=n, seed=seed, device=device
    )


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class GridResult:
    """A (possibly partial) grid: the finished points in grid order, the default sampler first.

    Attributes:
        task: the task's fingerprint (:func:`task_fingerprint`).
        n, seed: the evaluation protocol.
        families: each family's axis values.
        points: finished :class:`PointResult` records, in grid order.
        num_points: points in the whole grid (the default sampler included).
        num_evaluated, num_reused: points computed in this run / taken from ``grid.json``.
        path: the ``grid.json`` written, if any.
    """

    task: dict[str, Any]
    n: int
    seed: int
    families: dict[str, dict[str, list[float]]]
    points: list[PointResult]
    num_points: int
    num_evaluated: int = 0
    num_reused: int = 0
    path: Path | None = None

    @property
    def complete(self) -> bool:
        return len(self.points) == self.num_points

    @property
    def default(self) -> PointResult | None:
        """The default sampler's record, if evaluated."""
        return next((p for p in self.points if p.family == DEFAULT_FAMILY), None)

    def family_points(self, family: str) -> list[PointResult]:
        """The finished points of ``family``.

        Raises:
            ValueError: ``family`` is not in this grid.
        """
        if family not in self.families and family != DEFAULT_FAMILY:
            raise ValueError(
                f"family {family!r} is not in this grid; its families: {', '.join(self.families)}"
            )
        return [p for p in self.points if p.family == family]

    def best(self, metric: str) -> dict[str, PointResult]:
        """The best finished point of each family by ``metric`` (direction from
        ``METRIC_DIRECTIONS``; ``nan`` values are skipped; ties keep the first in grid order).

        Raises:
            ValueError: ``metric`` has no known direction or is not measured on this task.
        """
        if metric not in METRIC_DIRECTIONS:
            raise ValueError(
                f"unknown metric {metric!r}; allowed: {', '.join(sorted(METRIC_DIRECTIONS))}"
            )
        measured = sorted({k for p in self.points for k in p.metrics})
        if self.points and metric not in measured:
            raise ValueError(
                f"metric {metric!r} is not measured on task {self.task['name']!r}; "
                f"measured: {', '.join(measured)}"
            )
        sign = 1.0 if METRIC_DIRECTIONS[metric] == "min" else -1.0
        best: dict[str, PointResult] = {}
        for family in self.families:
            scored = [p for p in self.family_points(family) if not math.isnan(p.metrics[metric])]
            if scored:
                best[family] = min(scored, key=lambda p: sign * p.metrics[metric])
        return best

    def family_cost(self, family: str) -> Cost:
        """Summed cost of the finished points of ``family``."""
        return sum((p.cost for p in self.family_points(family)), Cost())

    def total_cost(self, *, include_default: bool = False) -> Cost:
        """The grid's cost: the sum over every finished point of every family (the default
        sampler's evaluation is a separate row and is left out unless asked for)."""
        return sum(
            (p.cost for p in self.points if include_default or p.family != DEFAULT_FAMILY), Cost()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GRID_FORMAT,
            "task": self.task,
            "n": self.n,
            "seed": self.seed,
            "families": self.families,
            "num_points": self.num_points,
            "complete": self.complete,
            "total_cost": self.total_cost().to_dict(),
            "points": [p.to_dict() for p in self.points],
        }

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows (one per point) for CSV: key, family, each parameter, cost, metrics."""
        axes = list(dict.fromkeys(k for p in self.points for k in p.params))
        metrics = list(dict.fromkeys(k for p in self.points for k in p.metrics))
        rows = []
        for p in self.points:
            row: dict[str, Any] = {"key": p.key, "family": p.family}
            row.update({a: p.params.get(a, "") for a in axes})
            row.update(
                {
                    "nfe": p.cost.nfe,
                    "samples": p.cost.samples,
                    "nfe_per_sample": p.nfe_per_sample,
                    "grid_point_seconds": p.cost.seconds.get("grid_point", 0.0),
                    "metrics_seconds": p.cost.seconds.get("metrics", 0.0),
                }
            )
            row.update({m: p.metrics.get(m, "") for m in metrics})
            rows.append(row)
        return rows

    def to_csv(self) -> str:
        rows = self.rows()
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike) -> GridResult:
        """Read a ``grid.json`` (or the folder holding it) written by :func:`run_grid`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a grid file.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "grid.json"
        data = _read_grid_json(path)
        if data is None:
            raise FileNotFoundError(f"{path} not found")
        return cls(
            task=data["task"],
            n=int(data["n"]),
            seed=int(data["seed"]),
            families=data["families"],
            points=[PointResult.from_dict(p) for p in data["points"]],
            num_points=int(data["num_points"]),
            path=path,
        )


def _read_grid_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); move it away to start over") from err
    if not isinstance(data, dict) or data.get("format") != GRID_FORMAT:
        raise ValueError(f"{path} is not a {GRID_FORMAT} file; move it away to start over")
    return data


# --------------------------------------------------------------------------------------------
# Running a grid
# --------------------------------------------------------------------------------------------


class _Recorder:
    """Holds finished records; rewrites ``grid.json`` / ``grid.csv`` atomically after each one.

    Records read from an earlier ``grid.json`` that are not in this grid are kept in the file
    under ``"other_points"`` (nothing computed is ever thrown away).
    """

    def __init__(
        self,
        *,
        specs: list[_PointSpec],
        out_dir: Path | None,
        header: dict[str, Any],
    ) -> None:
        self.specs = specs
        self.out_dir = out_dir
        self.header = header
        self.done: dict[str, PointResult] = {}
        self.other: list[dict[str, Any]] = []
        self.num_evaluated = 0
        if out_dir is not None:
            self._load(out_dir / "grid.json")

    def _load(self, path: Path) -> None:
        data = _read_grid_json(path)
        if data is None:
            return
        wanted = {s.key for s in self.specs}
        for raw in data.get("points", []) + data.get("other_points", []):
            if raw["key"] in wanted:
                self.done[raw["key"]] = PointResult.from_dict(raw)
            else:
                self.other.append(raw)
        log.info("resuming %s: %d of %d points already done", path, len(self.done), len(self.specs))

    @property
    def pending(self) -> list[_PointSpec]:
        return [s for s in self.specs if s.key not in self.done]

    def result(self, num_reused: int) -> GridResult:
        path = None if self.out_dir is None else self.out_dir / "grid.json"
        return GridResult(
            points=[self.done[s.key] for s in self.specs if s.key in self.done],
            num_points=len(self.specs),
            num_evaluated=self.num_evaluated,
            num_reused=num_reused,
            path=path,
            **self.header,
        )

    def add(self, record: PointResult) -> None:
        self.done[record.key] = record
        self.num_evaluated += 1
        self.write()

    def write(self) -> None:
        if self.out_dir is None:
            return
        result = self.result(0)
        data = result.to_dict()
        if self.other:
            data["other_points"] = self.other
        atomic_write_json(self.out_dir / "grid.json", data)
        atomic_write_text(self.out_dir / "grid.csv", result.to_csv())


def run_grid(
    task: Task,
    families: Sequence[GridFamily | str] | None = None,
    *,
    n: int = DEFAULT_N,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    backend: str = "local",
    num_cpus: int | None = None,
    device: torch.device | str = "cpu",
    include_default: bool = True,
    progress: bool = True,
    on_point: Callable[[PointResult], None] | None = None,
) -> GridResult:
    """Evaluate every point of ``families`` (and the default sampler) under the CRN protocol.

    Args:
        task: the task; moved to ``device`` by the caller (``make_task(..., device=...)``).
        families: :class:`GridFamily` instances, or names resolved with their ``"default"``
            preset; ``None``: every family the task supports.
        n: samples per point, ``>= 2``.
        seed: protocol seed (see :func:`evaluate_sampler`).
        out_dir: folder of ``grid.json`` and ``grid.csv``, rewritten atomically after every point;
            finished points found there are reused, not recomputed. ``None``: nothing written.
        backend: ``"local"`` (in this process, one point after another) or ``"ray"`` (a Ray Tune
            ``grid_search``, one CPU per trial (and one GPU when ``device`` is CUDA); Tune's files
            go to ``out_dir/ray``, or a temporary folder when ``out_dir`` is None).
        num_cpus: local: torch threads for the run; ray: CPUs given to ``ray.init`` (all when
            ``None``). An already-initialised Ray (e.g. a cluster) is used as it is.
        device: where to sample.
        include_default: also evaluate the default sampler (family ``"default"``).
        progress: show a progress bar.
        on_point: called with each newly evaluated point after it is written (not for reused
            points); an exception it raises stops the grid, with the point already saved.

    Returns:
        The :class:`GridResult`, default sampler first, then the families' points in order.

    Raises:
        ValueError: ``n < 2``, an unknown backend, an unknown family or one whose knob the task
            lacks, repeated family names, ``num_cpus < 1``, an unreadable ``grid.json``.
        ImportError: ``backend="ray"`` without Ray installed (``pip install 'diffgym[ray]'``).
    """
    _check_n(n)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if num_cpus is not None and (isinstance(num_cpus, bool) or int(num_cpus) < 1):
        raise ValueError(f"num_cpus must be an int >= 1, got {num_cpus!r}")
    if families is None:
        families = make_families(task)
    names = [f if isinstance(f, str) else f.name for f in families]
    if len(set(names)) != len(names):
        raise ValueError(f"grid families must not repeat, got {names}")
    resolved: list[GridFamily] = []
    for family in families:
        if isinstance(family, str):
            resolved.extend(make_families(task, [family]))
        else:
            _check_family(task, family.name)
            resolved.append(family)

    specs = _specs(
        task, resolved, n=n, seed=seed, include_default=include_default, device=device
    )
    header = {
        "task": task_fingerprint(task),
        "n": n,
        "seed": int(seed),
        "families": {f.name: f.config() for f in resolved},
    }
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(specs=specs, out_dir=out, header=header)
    num_reused = len(recorder.done)
    pending = recorder.pending
    recorder.write()

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(specs),
        initial=num_reused,
        desc=f"grid {task.name}",
        disable=not progress,
        unit="pt",
    )

    def finish(record: PointResult) -> None:
        recorder.add(record)
        bar.update(1)
        if on_point is not None:
            on_point(record)

    try:
        if backend == "local":
            _run_local(
                task, pending, n=n, seed=seed, device=device, num_cpus=num_cpus, finish=finish
            )
        else:
            _run_ray(
                task,
                pending,
                n=n,
                seed=seed,
                device=device,
                num_cpus=num_cpus,
                out_dir=out,
                finish=finish,
            )
    finally:
        bar.close()
    result = recorder.result(num_reused)
    log.info(
        "grid %s: %d points (%d evaluated, %d reused), NFE %d, %.1f s",
        task.name,
        len(result.points),
        result.num_evaluated,
        num_reused,
        result.total_cost().nfe,
        result.total_cost().total_seconds,
    )
    return result


def _run_local(
    task: Task,
    pending: list[_PointSpec],
    *,
    n: int,
    seed: int,
    device: torch.device | str,
    num_cpus: int | None,
    finish: Callable[[PointResult], None],
) -> None:
    threads = torch.get_num_threads()
    if num_cpus is not None:
        torch.set_num_threads(int(num_cpus))
    try:
        for spec in pending:
            finish(_evaluate_spec(task, spec, n=n, seed=seed, device=device))
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# Ray Tune backend
# --------------------------------------------------------------------------------------------

_RAY_METRIC = "metric/"  # prefix of the metrics in a trial's reported result


def _import_ray():
    try:
        import ray
        from ray import tune
    except ImportError as err:
        raise ImportError(
            f"the ray backend needs Ray Tune, which is not installed: {RAY_INSTALL_HINT}"
        ) from err
    return ray, tune


def _ray_trial(
    config: dict[str, Any],
    *,
    task: Task,
    specs: dict[str, _PointSpec],
    n: int,
    seed: int,
    device: str,
) -> None:
    """A Tune function trainable: evaluate the point ``config["key"]`` and report its numbers."""
    from ray import tune

    record = _evaluate_spec(task, specs[config["key"]], n=n, seed=seed, device=device)
    report: dict[str, Any] = {
        "key": record.key,
        "nfe": record.cost.nfe,
        "samples": record.cost.samples,
        "grid_point_seconds": record.cost.seconds["grid_point"],
        "metrics_seconds": record.cost.seconds["metrics"],
    }
    report.update({_RAY_METRIC + k: v for k, v in record.metrics.items()})
    tune.report(report)


def _record_from_report(spec: _PointSpec, report: Mapping[str, Any]) -> PointResult:
    metrics = {
        k[len(_RAY_METRIC) :]: float(v) for k, v in report.items() if k.startswith(_RAY_METRIC)
    }
    cost = Cost(
        nfe=int(report["nfe"]),
        samples=int(report["samples"]),
        seconds={
            "grid_point": float(report["grid_point_seconds"]),
            "metrics": float(report["metrics_seconds"]),
        },
    )
    return PointResult(spec.key, spec.family, spec.params, metrics, cost, spec.schedule)


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune's newer console output prints its banner even at ``verbose=0``; the legacy output
    (``RAY_AIR_NEW_OUTPUT=0``) prints nothing. Set it while Tune runs unless the user chose."""
    if "RAY_AIR_NEW_OUTPUT" in os.environ:
        yield
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def _run_ray(
    task: Task,
    pending: list[_PointSpec],
    *,
    n: int,
    seed: int,
    device: torch.device | str,
    num_cpus: int | None,
    out_dir: Path | None,
    finish: Callable[[PointResult], None],
) -> None:
    ray, tune = _import_ray()
    if not pending:
        return
    by_key = {s.key: s for s in pending}

    class Collector(tune.Callback):
        """Records each trial's result in the driver as soon as it arrives."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = result.get("key")
            if key in by_key:
                finish(_record_from_report(by_key.pop(key), result))

    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    scratch = None
    try:
        if out_dir is None:
            scratch = tempfile.TemporaryDirectory(prefix="diffgym-grid-ray-")
            storage = Path(scratch.name)
        else:
            storage = out_dir / "ray"
        trainable = tune.with_resources(
            tune.with_parameters(
                _ray_trial, task=task, specs=dict(by_key), n=n, seed=seed, device=str(device)
            ),
            # One CPU per trial, plus one GPU when sampling on CUDA.
            {"cpu": 1, "gpu": 1 if torch.device(device).type == "cuda" else 0},
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"key": tune.grid_search(list(by_key))},
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(storage.resolve()),
                verbose=0,
                callbacks=[Collector()],
            ),
        )
        with _quiet_tune():
            results = tuner.fit()
        if results.errors:
            raise RuntimeError(
                f"{len(results.errors)} grid point(s) failed on Ray (the finished ones are saved; "
                f"rerun to retry the rest); first error: {results.errors[0]}"
            )
        if by_key:
            raise RuntimeError(f"Ray returned no result for {len(by_key)} grid point(s)")
    finally:
        if started:
            ray.shutdown()
        if scratch is not None:
            scratch.cleanup()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

DEFAULT_METRICS = {"gmm2d": "sw2", "gmm2d-bias": "mode_tv", "digits": "fd_digits"}
"""The metric that picks the best point per task in the CLI table."""


def default_metric(task: Task) -> str:
    """The task's headline metric: :data:`DEFAULT_METRICS`, else ``sw2`` for a mixture task."""
    if task.name in DEFAULT_METRICS:
        return DEFAULT_METRICS[task.name]
    if task.target is not None:
        return "sw2"
    raise ValueError(f"no default metric for task {task.name!r}; pass --metric")


_AXIS_OPTIONS = {
    "s_churn": "S_churn values (churn family)",
    "s_min": "S_min values (churn family)",
    "s_max": "S_max values (churn family)",
    "s_noise": "S_noise values (churn family)",
    "w": "guidance weights (guidance and interval families)",
    "sigma_lo": "interval lower sigma values (interval family)",
    "sigma_hi": "interval upper sigma values (interval family)",
    "num_steps": "numbers of steps (schedule family)",
    "rho": "EDM rho values (schedule family)",
}


def add_grid_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``grid`` subcommand (its handler is :func:`run_grid_cli`)."""
    p = subparsers.add_parser(
        "grid",
        help="grid-search baseline samplers (EDM churn, guidance, guidance interval; the "
        "schedule N x rho when named) with common random numbers; resumable",
    )
    p.add_argument("--task", default="gmm2d", help="task name (see `diffgym tasks`)")
    p.add_argument(
        "--families",
        nargs="+",
        default=None,
        metavar="FAMILY",
        help=f"families to search, of {', '.join(FAMILIES)} (default: all the knob families "
        "the task supports; schedule only when named)",
    )
    p.add_argument("--points", default="default", help="grid preset: small or default")
    for axis, text in _AXIS_OPTIONS.items():
        p.add_argument(
            f"--{axis.replace('_', '-')}",
            dest=axis,
            nargs="+",
            type=float,
            default=None,
            metavar="V",
            help=f"explicit {text}, replacing the preset",
        )
    p.add_argument("--n", type=int, default=DEFAULT_N, help="samples per point")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (common random numbers)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/grid/TASK)")
    p.add_argument("--backend", default="local", help=f"one of {', '.join(BACKENDS)}")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs (ray) or torch threads (local)")
    p.add_argument("--metric", default=None, help="metric that picks the best point (task default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    from diffgym.envs.user_task import add_user_task_arguments

    add_user_task_arguments(p)
    add_fid_argument(p)
    p.set_defaults(func=run_grid_cli)
    return p


def run_grid_cli(args: argparse.Namespace) -> int:
    """Run ``diffgym grid``: evaluate the grid, print the best point per family and the cost.

    Raises:
        ValueError: bad arguments (unknown task, family, preset, backend or metric; ``--n < 2``).
    """
    from diffgym.envs.user_task import user_task_overrides

    task_name, overrides = user_task_overrides(args.task, args)
    task = make_task(task_name, device=args.device, **overrides)
    if args.fid_weights is not None:
        with_fid(task, args.fid_weights)
    families = make_families(
        task,
        args.families,
        points=args.points,
        **{axis: getattr(args, axis) for axis in _AXIS_OPTIONS},
    )
    metric = args.metric or default_metric(task)
    if metric not in METRIC_DIRECTIONS:
        raise ValueError(
            f"unknown metric {metric!r}; allowed: {', '.join(sorted(METRIC_DIRECTIONS))}"
        )
    if metric not in (measured := measured_metrics(task)):
        raise ValueError(
            f"metric {metric!r} is not measured on task {task.name!r}; measured: "
            f"{', '.join(measured)}"
            + (" (fid and the *_inception metrics need --fid-weights)" if "fid" in metric
               or "inception" in metric else "")
        )
    out = args.out if args.out is not None else Path("runs/grid") / task.name
    try:
        result = run_grid(
            task,
            families,
            n=args.n,
            seed=args.seed,
            out_dir=out,
            backend=args.backend,
            num_cpus=args.num_cpus,
            device=args.device,
            progress=not args.no_progress,
        )
    except ImportError as err:
        print(f"diffgym grid: error: {err}", file=sys.stderr)
        return 2
    print_grid_table(result, metric)
    print(f"wrote {out / 'grid.json'} and {out / 'grid.csv'}")
    return 0


def print_grid_table(result: GridResult, metric: str) -> None:
    """Print the default sampler and the best point of each family by ``metric``, with costs."""
    from rich.console import Console
    from rich.table import Table

    best = result.best(metric)
    direction = METRIC_DIRECTIONS[metric]
    rows = ([result.default] if result.default is not None else []) + list(best.values())
    metric_names = list(dict.fromkeys(k for p in rows for k in p.metrics))
    table = Table(
        title=f"{result.task['name']}: best point per family by {metric} ({direction}); "
        f"n={result.n}, seed={result.seed}"
    )
    for col in ("sampler", "points", *metric_names, "NFE/sample", "family NFE", "family s"):
        table.add_column(col, justify="left" if col == "sampler" else "right")
    for p in rows:
        fam_cost = result.family_cost(p.family)
        table.add_row(
            p.label,
            str(len(result.family_points(p.family))),
            *[f"{p.metrics.get(m, math.nan):.4g}" for m in metric_names],
            f"{p.nfe_per_sample:.4g}",
            f"{fam_cost.nfe:,}",
            f"{fam_cost.total_seconds:.1f}",
        )
    console = Console(width=160)
    console.print(table)
    total = result.total_cost()
    grid_points = sum(1 for p in result.points if p.family != DEFAULT_FAMILY)
    status = "" if result.complete else f" (incomplete: {len(result.points)}/{result.num_points})"
    console.print(
        f"grid total{status}: {grid_points} points, NFE x samples {total.nfe:,}, "
        f"{total.total_seconds:.1f} s wall-clock "
        f"(sampling {total.seconds.get('grid_point', 0.0):.1f} s, "
        f"metrics {total.seconds.get('metrics', 0.0):.1f} s)"
    )
