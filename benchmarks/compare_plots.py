"""Plots of a :class:`~diffgym.benchmarks.compare.ComparisonResult` (matplotlib, Agg backend).

* :func:`plot_quality_vs_cost`: the primary metric against the compute spent to obtain a sampler
  (log x), in NFE and in wall-clock. Grid points form a cloud: each point sits at the grid's
  cumulative cost when it was evaluated (grid order) with its search-seed value, the best point of
  each family is starred, and a dashed line follows the best value found so far. Learned methods
  are points at their total cost with ``± std`` error bars over seeds (evaluation seeds); a band
  marks the best grid row's mean ``± std`` on the same evaluation seeds, a dotted line the default
  sampler's mean.
* :func:`plot_action_profile`: per knob, the learned policies' mean level per step against
  ``sigma_i`` (the policy at temperature 1 on the evaluation batch; shaded ``± std`` over
  seeds) beside the per-step schedules of the best grid points.
* :func:`plot_samples`: samples of each method
  (:func:`~diffgym.benchmarks.plots.save_samples_png`).

All files are written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.ticker import NullFormatter

from diffgym.benchmarks.plots import save_samples_png
from diffgym.benchmarks.report import tau_name
from diffgym.envs.io import atomic_write
from diffgym.envs.tasks import Task

if TYPE_CHECKING:
    from diffgym.benchmarks.report import ComparisonResult, ComparisonRow

__all__ = ["plot_action_profile", "plot_quality_vs_cost", "plot_samples"]

KNOB_LABELS = {"churn": "churn γ", "guidance": "guidance w", "renoise": "renoise jump k"}
NEUTRAL_LEVEL = {"churn": 0.0, "guidance": 1.0, "renoise": 0.0}
OLD_KNOB_KEYS = {"churn": "gamma"}
"""Keys of results written before the knob was renamed (read as the new name)."""


def _evals(row: ComparisonRow) -> str:
    """``"3 seeds"``, or ``"1 run x 3 seeds"`` when runs were evaluated on several seeds."""
    n = len(row.per_seed)
    if n > row.runs:
        return f"{row.runs} run{'s' if row.runs != 1 else ''} x {n // row.runs} seeds"
    return f"{n} seed{'s' if n != 1 else ''}"


def _knob_entry(tables: Mapping[str, Any], knob: str) -> Any:
    """``tables[knob]``, or the entry under the knob's old name (``None`` if neither)."""
    value = tables.get(knob)
    return tables.get(OLD_KNOB_KEYS[knob]) if value is None and knob in OLD_KNOB_KEYS else value


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    plt = _pyplot()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def plot_quality_vs_cost(result: ComparisonResult, path: str | os.PathLike) -> None:
    """Primary metric against total cost (NFE and seconds, log x); see the module docstring."""
    plt = _pyplot()
    metric = result.metric
    grid_points = [p for p in result.grid.points if p.family != "default"]
    best_keys = {p.key for p in result.grid.best(metric).values()} if grid_points else set()
    families = list(dict.fromkeys(p.family for p in grid_points))
    colors = {f: f"C{i}" for i, f in enumerate(families)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), squeeze=False)
    for ax, unit in zip(axes[0], ("nfe", "seconds")):
        cost_of = (lambda c: c.nfe) if unit == "nfe" else (lambda c: c.total_seconds)
        xs, ys, cum = [], [], 0.0
        for p in grid_points:
            cum += cost_of(p.cost)
            xs.append(cum)
            ys.append(p.metrics.get(metric, math.nan))
        for fam in families:
            idx = [i for i, p in enumerate(grid_points) if p.family == fam]
            ax.scatter([xs[i] for i in idx], [ys[i] for i in idx], s=10, alpha=0.45,
                       color=colors[fam], label=f"grid {fam} ({len(idx)} pts, search seed)")
        for i, p in enumerate(grid_points):
            if p.key in best_keys:
                ax.scatter([xs[i]], [ys[i]], s=140, marker="*", color=colors[p.family],
                           edgecolors="black", linewidths=0.6, zorder=4)
        if xs:
            sign = 1.0 if result.direction == "min" else -1.0
            run_best = np.minimum.accumulate(sign * np.nan_to_num(np.asarray(ys), nan=np.inf))
            ax.step(xs, sign * run_best, where="post", ls="--", lw=0.9, color="grey",
                    label="grid: best so far")
        grid_row = result.best_grid_row()
        if grid_row is not None:
            m, s = grid_row.metrics[metric], grid_row.metrics_std.get(metric, math.nan)
            ax.axhline(m, color="black", lw=0.8, label=f"{grid_row.method} (eval seeds)")
            if not math.isnan(s):
                ax.axhspan(m - s, m + s, color="black", alpha=0.08)
        for r in result.rows:
            if r.kind == "default":
                ax.axhline(r.metrics.get(metric, math.nan), color="grey", ls=":", lw=1.0,
                           label="default (eval seeds)")
        for i, r in enumerate(result.learned_rows()):
            std = r.metrics_std.get(metric, math.nan)
            ax.errorbar([cost_of(r.cost)], [r.metrics.get(metric, math.nan)],
                        yerr=None if math.isnan(std) else [[std], [std]], fmt="o", ms=7,
                        capsize=4, color=f"C{len(families) + i}", zorder=5,
                        label=f"{r.method} ({_evals(r)}, summed cost)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        ax.set_xlabel("total cost: NFE × samples" if unit == "nfe" else "total cost: wall-clock s")
        arrow = "lower" if result.direction == "min" else "higher"
        ax.set_ylabel(f"{metric} ({arrow} is better)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{result.task}: quality against the cost of obtaining the sampler", fontsize=10)
    _save(fig, path)


def plot_action_profile(result: ComparisonResult, path: str | os.PathLike) -> None:
    """Per knob: learned mean level per step vs sigma beside the best grid schedules."""
    plt = _pyplot()
    sigma = np.asarray(result.sigmas[:-1], dtype=np.float64)
    learned = result.learned_rows()
    grid_rows = [r for r in result.rows if r.kind == "grid"]
    knobs = [
        k for k in KNOB_LABELS
        if any(_knob_entry(r.info.get("profile", {}), k) is not None for r in learned)
        or any(_knob_entry(r.info.get("schedule", {}), k) is not None for r in grid_rows)
    ] or ["churn"]
    fig, axes = plt.subplots(1, len(knobs), figsize=(4.6 * len(knobs), 3.8), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        ax.axhline(NEUTRAL_LEVEL[knob], color="grey", ls=":", lw=1.0, label="default (neutral)")
        for i, r in enumerate(grid_rows):
            table = _knob_entry(r.info.get("schedule", {}), knob)
            if table is not None:
                ax.step(sigma, table, where="mid", ls="--", lw=1.2, color=f"C{i}",
                        label=f"{r.method}: {r.detail}")
        for i, r in enumerate(learned):
            prof = _knob_entry(r.info.get("profile", {}), knob)
            if prof is None:
                continue
            mean = np.asarray(prof["mean"], dtype=np.float64)
            # a policy with the step knob is profiled on its base grid
            x = np.asarray(r.info.get("profile_sigmas", result.sigmas)[:-1], dtype=np.float64)
            std = np.asarray([math.nan if v is None else v for v in prof["std"]], dtype=np.float64)
            color = f"C{len(grid_rows) + i}"
            # The profile is recorded at each run's chosen inference temperature.
            modes = sorted({p.get("inference") or tau_name(p.get("temperature"))
                            for p in r.per_seed})
            ax.plot(x, mean, "o-", ms=3, lw=1.4, color=color,
                    label=f"{r.method} ({'/'.join(modes)}, mean over {_evals(r)})")
            if np.isfinite(std).any():
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_xscale("log")
        ax.invert_xaxis()  # sampling runs from high to low noise, left to right
        ax.set_xlabel("σ_i (step noise level)")
        ax.set_ylabel(KNOB_LABELS[knob])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(f"{result.task}: action profile over σ (learned policy vs best grid schedule)",
                 fontsize=10)
    _save(fig, path)


def plot_samples(
    task: Task,
    panels: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    path: str | os.PathLike,
) -> None:
    """One panel of samples per method (first evaluation seed)."""
    if not panels:
        return
    save_samples_png(task, panels, path)
