"""Quality against NFE per sample: the cost of *sampling*, not of obtaining a sampler.

:func:`frontier_points` collects points from a comparison's ``results.json`` (the default
sampler, the best grid point per family and every learned row, each per evaluation seed) and/or a
grid's ``grid.json`` (every point, on the grid's search seed; ``schedule`` points at the task's
own ``rho`` are "the default sampler at N steps"). :func:`pareto_front` keeps the points no other
point beats on both axes; :func:`default_match` reads off, for each learned row, the NFE of the
default sampler at its own quality. :func:`plot_nfe_frontier` draws it all
(``compare_plots.py`` style); :func:`write_frontier` writes the PNG and a JSON of the numbers.

Points from different files may sit on different protocol seeds (a grid's search seed, a
comparison's evaluation seeds); each point says which (``seeds``), and paired claims should only
be made between points on the same seeds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from diffgym.benchmarks.compare_plots import _pyplot, _save
from diffgym.envs.io import atomic_write_json

__all__ = [
    "FrontierPoint",
    "default_match",
    "frontier_points",
    "pareto_front",
    "plot_nfe_frontier",
    "write_frontier",
]

KINDS = ("default", "default_n", "schedule", "grid", "learned")
"""Point kinds: the task's default sampler, the default sampler at another N (schedule points at
the task's ``rho``), other schedule points, other grid points, learned policies."""


@dataclass(frozen=True)
class FrontierPoint:
    """One sampler: its quality ``value`` (mean over ``seeds``, ``std`` over them) at
    ``nfe_per_sample``.

    Attributes:
        label: what it is (``default``, ``schedule(num_steps=9, rho=5)``, ``ppo+gail/js``).
        kind: one of :data:`KINDS`.
        nfe_per_sample: mean denoiser evaluations per sample.
        value: the metric's mean; ``std``: its sample std over seeds (``nan`` for one seed).
        seeds: the protocol seeds it was measured on; ``source``: ``"grid"`` (a grid's search
            seed), ``"compare"`` (a comparison's evaluation seeds) or another name for points
            measured elsewhere (e.g. ``"eval"``); the default-over-N line joins ``"grid"`` and
            ``"eval"`` points.
    """

    label: str
    kind: str
    nfe_per_sample: float
    value: float
    std: float = math.nan
    seeds: tuple[int, ...] = ()
    source: str = "grid"


def _grid_points(grid: Mapping[str, Any], metric: str) -> list[FrontierPoint]:
    task = grid.get("task", {})
    rho = task.get("rho")
    seed = int(grid.get("seed", 0))
    out = []
    for p in grid.get("points", []):
        value = p.get("metrics", {}).get(metric)
        if value is None:
            continue
        family, params = p["family"], p.get("params", {})
        if family == "default":
            kind, label = "default", f"default (N={task.get('num_steps')})"
        elif family == "schedule" and rho is not None and float(params.get("rho")) == rho:
            kind, label = "default_n", f"default at N={int(params['num_steps'])}"
        elif family == "schedule":
            kind = "schedule"
            label = f"schedule(N={int(params['num_steps'])}, rho={params['rho']:g})"
        else:
            kind = "grid"
            label = family + "(" + ", ".join(f"{k}={v:g}" for k, v in params.items()) + ")"
        out.append(FrontierPoint(label, kind, float(p["nfe_per_sample"]), float(value),
                                 seeds=(seed,), source="grid"))
    return out


def _comparison_points(results: Mapping[str, Any], metric: str) -> list[FrontierPoint]:
    out = []
    for r in results.get("rows", []):
        per_seed = r.get("per_seed", [])
        values = [s["metrics"].get(metric) for s in per_seed]
        if not values or any(v is None for v in values):
            continue
        nfe = [float(s.get("nfe_per_sample", r["nfe_per_sample"])) for s in per_seed]
        kind = {"default": "default", "grid": "grid", "learned": "learned"}[r["kind"]]
        if r["kind"] == "grid" and r["method"] == "grid/schedule":
            kind = "schedule"
        label = r["method"] if r["kind"] != "grid" else f"{r['method']}: {r['detail']}"
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        out.append(FrontierPoint(label, kind, float(np.mean(nfe)), float(np.mean(values)), std,
                                 tuple(int(s["eval_seed"]) for s in per_seed), "compare"))
    return out


def frontier_points(
    *,
    metric: str,
    comparison: Mapping[str, Any] | None = None,
    grid: Mapping[str, Any] | None = None,
) -> list[FrontierPoint]:
    """Points of a comparison's ``results.json`` and/or a grid's ``grid.json`` (parsed dicts)
    that measured ``metric``.

    Raises:
        ValueError: neither file given, or no point measured ``metric``.
    """
    if comparison is None and grid is None:
        raise ValueError("give a comparison (results.json) and/or a grid (grid.json)")
    points = []
    if grid is not None:
        points += _grid_points(grid, metric)
    if comparison is not None:
        points += _comparison_points(comparison, metric)
    if not points:
        raise ValueError(f"no point measured metric {metric!r}")
    return points


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "min" else a > b


def pareto_front(points: Sequence[FrontierPoint], direction: str) -> list[FrontierPoint]:
    """The points that no other point beats on both NFE per sample (fewer) and quality (better
    by ``direction``, ``"min"`` or ``"max"``), by increasing NFE.

    Raises:
        ValueError: an unknown direction.
    """
    if direction not in ("min", "max"):
        raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
    front: list[FrontierPoint] = []
    for p in sorted(points, key=lambda q: (q.nfe_per_sample, -q.value if direction == "max"
                                            else q.value)):
        if math.isnan(p.value):
            continue
        if not front or _better(p.value, front[-1].value, direction):
            front.append(p)
    return front


def default_match(
    points: Sequence[FrontierPoint], direction: str
) -> dict[str, dict[str, float | None]]:
    """For each learned point: its NFE over the default sampler's (``nfe_ratio``), the metric
    difference to the default (``delta``, learned - default; negative is better for ``min``),
    and the NFE the default sampler needs for the learned point's quality, interpolated in log
    NFE along the ``default``/``default_n`` points (``None`` outside their range). The default
    is the comparison's default row when present (same seeds as the learned rows)."""
    defaults = [p for p in points if p.kind == "default"]
    reference = next((p for p in defaults if p.source == "compare"), None) or (
        defaults[0] if defaults else None)
    curve = sorted((p for p in points if p.kind in ("default", "default_n")
                    and p.source != "compare"), key=lambda p: p.nfe_per_sample)
    out: dict[str, dict[str, float | None]] = {}
    for p in points:
        if p.kind != "learned":
            continue
        entry: dict[str, float | None] = {"nfe_per_sample": p.nfe_per_sample, "value": p.value}
        if reference is not None:
            entry["nfe_ratio"] = p.nfe_per_sample / reference.nfe_per_sample
            entry["delta"] = p.value - reference.value
        entry["default_nfe_at_this_quality"] = _interpolate_nfe(curve, p.value)
        out[p.label] = entry
    return out


def _interpolate_nfe(curve: Sequence[FrontierPoint], value: float) -> float | None:
    """NFE at which the default curve reaches ``value`` (log-linear between neighbours)."""
    for a, b in zip(curve, curve[1:]):
        lo, hi = sorted((a.value, b.value))
        if lo <= value <= hi and a.value != b.value:
            t = (value - a.value) / (b.value - a.value)
            return float(math.exp(math.log(a.nfe_per_sample)
                                  + t * (math.log(b.nfe_per_sample) - math.log(a.nfe_per_sample))))
    return None


_STYLE = {
    "default": dict(marker="D", s=70, color="black", zorder=5),
    "default_n": dict(marker="o", s=28, color="black", zorder=4),
    "schedule": dict(marker="o", s=14, color="C0", alpha=0.5, zorder=2),
    "grid": dict(marker="s", s=22, color="C2", alpha=0.7, zorder=3),
}


def plot_nfe_frontier(
    points: Sequence[FrontierPoint],
    path: str | os.PathLike,
    *,
    metric: str,
    direction: str,
    title: str = "",
) -> None:
    """Quality against NFE per sample (log x): the default sampler (a line over N where the
    schedule grid has the task's ``rho``), the schedule grid, other grid points, learned policies
    (error bars: std over seeds) and the Pareto front (dashed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    curve = sorted((p for p in points if p.kind in ("default", "default_n")
                    and p.source != "compare"), key=lambda p: p.nfe_per_sample)
    if len(curve) > 1:
        ax.plot([p.nfe_per_sample for p in curve], [p.value for p in curve], "-", color="black",
                lw=1.0, label=f"default sampler over N ({curve[0].source})")
    labelled: set[str] = set()
    for p in points:
        if p.kind == "learned":
            continue
        style = dict(_STYLE[p.kind])
        if p.source == "compare":
            style.update(facecolors="none", edgecolors=style.pop("color"))
        name = {"default": "default", "default_n": "default at other N",
                "schedule": "schedule grid (N x rho)", "grid": "other grid points"}[p.kind]
        name += f" ({p.source})"
        ax.scatter([p.nfe_per_sample], [p.value], label=None if name in labelled else name,
                   **style)
        labelled.add(name)
    learned = [p for p in points if p.kind == "learned"]
    for i, p in enumerate(learned):
        ax.errorbar([p.nfe_per_sample], [p.value],
                    yerr=None if math.isnan(p.std) else [[p.std], [p.std]], fmt="*", ms=12,
                    capsize=4, color=plt.cm.tab20(i % 20), zorder=6,
                    label=f"{p.label} ({len(p.seeds)} seeds)")
    front = pareto_front(points, direction)
    if len(front) > 1:
        ax.step([p.nfe_per_sample for p in front], [p.value for p in front], where="post",
                ls="--", lw=0.9, color="grey", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("NFE per sample")
    arrow = "lower" if direction == "min" else "higher"
    ax.set_ylabel(f"{metric} ({arrow} is better)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title or f"quality against NFE per sample ({metric})", fontsize=10)
    _save(fig, path)


def write_frontier(
    points: Sequence[FrontierPoint],
    png: str | os.PathLike,
    json_path: str | os.PathLike,
    *,
    metric: str,
    direction: str,
    title: str = "",
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`plot_nfe_frontier` to ``png`` and the numbers to ``json_path`` (both atomic):
    ``{"metric", "direction", "points", "pareto_front", "learned_vs_default", **context}``.
    Returns the JSON dict."""
    plot_nfe_frontier(points, png, metric=metric, direction=direction, title=title)
    data = {
        **(dict(context) if context else {}),
        "metric": metric,
        "direction": direction,
        "points": [_finite(asdict(p)) for p in points],
        "pareto_front": [p.label for p in pareto_front(points, direction)],
        "learned_vs_default": default_match(points, direction),
    }
    atomic_write_json(json_path, data)
    return data


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else
                list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
