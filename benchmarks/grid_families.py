"""Grid-search families: fixed per-step sampler schedules, tuned by brute force (design §5).

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

A family enumerates its points and turns a point into per-step knob tables (the keyword arguments
of :func:`~diffgym.envs.sampler.schedule_actions`); :mod:`diffgym.benchmarks.grid` evaluates them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from diffgym.envs.tasks import Task

__all__ = [
    "CHURN_CAP",
    "FAMILIES",
    "POINT_PRESETS",
    "ChurnFamily",
    "GridFamily",
    "GuidanceFamily",
    "IntervalFamily",
    "ScheduleFamily",
    "edm_churn_gammas",
    "guidance_interval_weights",
    "make_families",
    "point_task",
    "task_knobs",
]

POINT_PRESETS = ("small", "default")
CHURN_CAP = math.sqrt(2.0) - 1.0  # EDM's bound on gamma: at most doubles the noise variance


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


# -- The schedule family -----------------------------------------------------------


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
