"""Reporting of a benchmark (:mod:`diffgym.benchmarks.bench`): its result (per-trial rows,
normalized scores, aggregates), the tables (``bench.json``, ``bench.csv``, ``leaderboard.md``),
the plots (aggregate intervals, performance profiles, score per task) and wandb logging."""

from __future__ import annotations

import logging
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffgym.benchmarks.evaluate import SEARCH_SEED, eval_seed, finite_or_none
from diffgym.benchmarks.stats import (
    Interval,
    TaskReference,
)
from diffgym.envs.io import atomic_write_json, atomic_write_text, rows_to_csv

if TYPE_CHECKING:
    from diffgym.benchmarks.bench import BenchConfig

__all__ = ["BENCH_FORMAT", "PROFILE_TAUS", "BenchResult", "log_wandb", "write_outputs"]

log = logging.getLogger(__name__)

BENCH_FORMAT = "diffgym-bench/1"
PROFILE_TAUS = tuple(np.round(np.linspace(-1.0, 2.0, 61), 4).tolist())
"""Thresholds of the performance profiles (normalized score)."""


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass
class BenchResult:
    """The benchmark's table and statistics.

    Attributes:
        config: the :class:`BenchConfig`.
        references: per task, its :class:`~diffgym.benchmarks.stats.TaskReference`.
        reference_info: per task, the reference summary (best grid point, grid cost, ...).
        trials: one record per trial (:func:`run_trial`) with its ``score`` added.
        tasks_used: tasks in the aggregates (the others are excluded, see ``references``).
        scores: ``{method: (num_seeds, num_tasks_used)}`` normalized scores.
        aggregates: ``{method: {"iqm" | "mean" | "median" | "optimality_gap": Interval}}``.
        improvement: ``{(X, Y): Interval}`` of ``P(X > Y)`` for every pair of methods.
        profiles: ``{method: (profile, low, high)}`` over :data:`PROFILE_TAUS`.
        files: the files written; seconds: wall-clock of the call; num_trained: runs trained.
    """

    config: BenchConfig
    references: dict[str, TaskReference]
    reference_info: dict[str, dict[str, Any]]
    trials: list[dict[str, Any]]
    tasks_used: list[str]
    scores: dict[str, np.ndarray]
    aggregates: dict[str, dict[str, Interval]]
    improvement: dict[tuple[str, str], Interval]
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    num_trained: int = 0

    @property
    def excluded_tasks(self) -> list[str]:
        return [t for t, r in self.references.items() if r.excluded]

    def table_rows(self) -> list[dict[str, Any]]:
        """One flat row per trial (``bench.csv``)."""
        rows = []
        for t in self.trials:
            ref = self.references[t["task"]]
            cost = t["train_cost"]
            rows.append({
                "task": t["task"],
                "agent": t["agent"],
                "reward": t["reward"],
                "seed": t["seed"],
                "eval_seed": t["eval_seed"],
                "metric": ref.metric,
                "direction": ref.direction,
                "value": t["metrics"][ref.metric],
                "default": ref.default[t["eval_seed"]],
                "grid": ref.grid[t["eval_seed"]],
                "score": t["score"],
                "task_excluded": ref.excluded,
                "nfe_per_sample": t["nfe_per_sample"],
                "train_timesteps": cost["timesteps"],
                "train_nfe": cost["nfe"],
                "train_seconds": round(cost["total_seconds"], 3),
            })
        return rows

    def to_csv(self) -> str:
        return rows_to_csv(self.table_rows())

    def per_task_means(self) -> dict[str, dict[str, float]]:
        """``{method: {task: mean normalized score over seeds}}`` (every task, excluded ones
        ``nan``)."""
        out: dict[str, dict[str, float]] = {}
        for m in self.config.methods:
            out[m] = {}
            for task in self.config.tasks:
                xs = [t["score"] for t in self.trials
                      if f"{t['agent']}/{t['reward']}" == m and t["task"] == task]
                out[m][task] = statistics.fmean(xs) if xs else math.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return finite_or_none({
            "format": BENCH_FORMAT,
            "config": self.config.to_dict(),
            "command": self.config.command(),
            "search_seed": SEARCH_SEED,
            "references": self.reference_info,
            "excluded_tasks": self.excluded_tasks,
            "tasks_used": self.tasks_used,
            "trials": self.trials,
            "scores": {m: s.tolist() for m, s in self.scores.items()},
            "aggregates": {m: {k: v.to_dict() for k, v in a.items()}
                           for m, a in self.aggregates.items()},
            "probability_of_improvement": [
                {"x": x, "y": y, **ci.to_dict()} for (x, y), ci in self.improvement.items()
            ],
            "profiles": {
                "taus": list(PROFILE_TAUS),
                **{m: {"profile": p.tolist(), "low": lo.tolist(), "high": hi.tolist()}
                   for m, (p, lo, hi) in self.profiles.items()},
            },
            "per_task_means": self.per_task_means(),
            "seconds": self.seconds,
            "files": self.files,
        })

    def to_markdown(self) -> str:
        """The leaderboard: references, aggregates with CIs, P(X > Y), per-task means."""
        cfg = self.config
        steps = sorted({t["train_cost"]["timesteps"] for t in self.trials})
        lines = [
            "# diffgym bench leaderboard",
            "",
            f"Agents {', '.join(cfg.agents)}; reward modes {', '.join(cfg.rewards)}; tasks "
            f"{', '.join(cfg.tasks)}; training seeds {list(cfg.seeds)} (evaluation seeds "
            f"{[eval_seed(k) for k in cfg.seeds]}); {cfg.n_eval} samples per evaluation; "
            f"{', '.join(f'{s:,}' for s in steps)} training steps per run; greedy policies; "
            f"backend {cfg.backend}; device {cfg.device}.",
            "",
            f"Reproduce: `{cfg.command()}`",
            "",
            "Normalized score of a run evaluated on seed e: `s = sign * (m_default(e) - m(e)) / "
            "gain`, `gain = mean_e sign * (m_default(e) - m_grid(e))`, sign = +1 where lower is "
            "better: **0 = the default sampler, 1 = the best grid point** (searched on seed "
            f"{SEARCH_SEED}), paired on the same evaluation seeds. A task whose gain is not above "
            "max(2 x its paired std over seeds, 0.1 % of the default's value) is excluded.",
            "",
            "## Task references",
            "",
            "| task | metric | default | best grid point | grid | gain | floor | status |",
            "|---|---|---:|---|---:|---:|---:|---|",
        ]
        for name, ref in self.references.items():
            info = self.reference_info[name]
            status = "**excluded** (grid gains nothing resolvable)" if ref.excluded else "used"
            arrow = "↓" if ref.direction == "min" else "↑"
            lines.append(
                f"| {name} | {ref.metric} {arrow} | {_mean_std(ref.default.values())} | "
                f"{info['best_point']} (of {info['grid_points']}) | "
                f"{_mean_std(ref.grid.values())} | {ref.gain:.4g} | {ref.floor:.3g} | {status} |"
            )
        lines += [""]
        if not self.tasks_used:
            lines += ["Every task is excluded: no aggregate can be computed.", "",
                      *self._raw_table()]
            return "\n".join(lines)
        n_runs = len(cfg.seeds)
        lines += [
            f"## Aggregates over {len(self.tasks_used)} task(s) x {n_runs} seed(s)",
            "",
            f"Point estimate [95 % stratified-bootstrap percentile CI, {cfg.reps} replicates, "
            f"seed {cfg.ci_seed}]. Tasks used: {', '.join(self.tasks_used)}"
            + (f"; excluded: {', '.join(self.excluded_tasks)}" if self.excluded_tasks else "")
            + ".",
            "",
            f"| method | IQM ↑ | mean ↑ | median ↑ | optimality gap (γ={cfg.threshold:g}) ↓ |",
            "|---|---:|---:|---:|---:|",
        ]
        order = sorted(self.aggregates, key=lambda m: -self.aggregates[m]["iqm"].point)
        for m in order:
            a = self.aggregates[m]
            lines.append(
                f"| {m} | {a['iqm']} | {a['mean']} | {a['median']} | {a['optimality_gap']} |"
            )
        if self.improvement:
            lines += [
                "",
                "## Probability of improvement",
                "",
                "P(X > Y): per task, the probability that a run of X scores above a run of Y "
                "(ties count 1/2), averaged over tasks; an interval excluding 0.5 resolves the "
                "difference.",
                "",
                "| X | Y | P(X > Y) [95 % CI] | resolved |",
                "|---|---|---:|---|",
            ]
            for (x, y), ci in self.improvement.items():
                resolved = "yes" if ci.low > 0.5 or ci.high < 0.5 else "no"
                lines.append(f"| {x} | {y} | {ci} | {resolved} |")
        means = self.per_task_means()
        lines += [
            "",
            "## Mean normalized score per task",
            "",
            "| method | " + " | ".join(cfg.tasks) + " |",
            "|---|" + "---:|" * len(cfg.tasks),
        ]
        for m in order:
            cells = [
                "excluded" if self.references[t].excluded else f"{means[m][t]:.3f}"
                for t in cfg.tasks
            ]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", *self._raw_table()]
        return "\n".join(lines)

    def _raw_table(self) -> list[str]:
        """The headline metric itself per task (mean ± std over the evaluation seeds), for the
        references and every method: readable where a task is excluded from the scores."""
        cfg = self.config
        arrows = {"min": "↓", "max": "↑"}
        head = [f"{t} {self.references[t].metric} {arrows[self.references[t].direction]}"
                for t in cfg.tasks]
        lines = [
            "## Headline metric per task",
            "",
            "Mean ± sample std over the evaluation seeds (not normalized).",
            "",
            "| sampler | " + " | ".join(head) + " |",
            "|---|" + "---:|" * len(cfg.tasks),
            "| default sampler | "
            + " | ".join(_mean_std(self.references[t].default.values()) for t in cfg.tasks)
            + " |",
            "| best grid point | "
            + " | ".join(_mean_std(self.references[t].grid.values()) for t in cfg.tasks)
            + " |",
        ]
        for m in cfg.methods:
            cells = []
            for t in cfg.tasks:
                metric = self.references[t].metric
                xs = [r["metrics"][metric] for r in self.trials
                      if r["task"] == t and f"{r['agent']}/{r['reward']}" == m]
                cells.append(_mean_std(xs) if xs else "")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        return lines


def _mean_std(values: Any) -> str:
    xs = list(values)
    if len(xs) < 2:
        return f"{xs[0]:.4g}"
    return f"{statistics.fmean(xs):.4g} ± {statistics.stdev(xs):.2g}"


# --------------------------------------------------------------------------------------------
# Files, plots, wandb
# --------------------------------------------------------------------------------------------


def write_outputs(result: BenchResult) -> None:
    out = result.config.out_dir
    files = {"json": out / "bench.json", "csv": out / "bench.csv",
             "leaderboard": out / "leaderboard.md"}
    if result.config.plots and result.tasks_used:
        files.update(aggregates=out / "aggregates.png", profiles=out / "profiles.png",
                     per_task=out / "per_task.png")
        _plot_aggregates(result, files["aggregates"])
        _plot_profiles(result, files["profiles"])
        _plot_per_task(result, files["per_task"])
    result.files = {k: str(v) for k, v in files.items()}
    atomic_write_text(files["csv"], result.to_csv())
    atomic_write_text(files["leaderboard"], result.to_markdown())
    atomic_write_json(files["json"], result.to_dict())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    from diffgym.envs.io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
    _pyplot().close(fig)


def _plot_aggregates(result: BenchResult, path: Path) -> None:
    """One panel per estimator: each method's point estimate and 95 % CI (rliable's style)."""
    plt = _pyplot()
    methods = list(result.aggregates)
    names = ["iqm", "mean", "median", "optimality_gap"]
    titles = ["IQM ↑", "mean ↑", "median ↑", "optimality gap ↓"]
    fig, axes = plt.subplots(1, 4, figsize=(13, 0.5 * len(methods) + 1.5), sharey=True)
    colors = plt.get_cmap("tab10")
    for ax, name, title in zip(axes, names, titles):
        for i, m in enumerate(methods):
            ci = result.aggregates[m][name]
            ax.barh(i, ci.high - ci.low, left=ci.low, height=0.6, color=colors(i % 10), alpha=0.6)
            ax.plot([ci.point, ci.point], [i - 0.3, i + 0.3], color="k", lw=2)
        ax.set_title(title)
        ax.set_xlabel("normalized score")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(methods)), methods)
    axes[0].invert_yaxis()  # the first method on top
    fig.suptitle(f"95 % stratified-bootstrap CIs over {len(result.tasks_used)} task(s) x "
                 f"{len(result.config.seeds)} seed(s) (0 = default sampler, 1 = best grid point)",
                 y=1.04)
    _save(fig, path)


def _plot_profiles(result: BenchResult, path: Path) -> None:
    """Performance profiles: fraction of runs with a normalized score above tau, with bands."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    taus = np.asarray(PROFILE_TAUS)
    for i, (m, (p, lo, hi)) in enumerate(result.profiles.items()):
        color = plt.get_cmap("tab10")(i % 10)
        ax.plot(taus, p, color=color, label=m)
        ax.fill_between(taus, lo, hi, color=color, alpha=0.2)
    for x in (0.0, 1.0):
        ax.axvline(x, color="gray", ls=":", lw=1)
    ax.set_xlabel("normalized score τ (0 = default, 1 = best grid point)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def _plot_per_task(result: BenchResult, path: Path) -> None:
    """Per task: each method's mean normalized score (bar) and every seed (dots)."""
    plt = _pyplot()
    methods = result.config.methods
    tasks = result.tasks_used
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(tasks) * len(methods) ** 0.5 + 3), 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        color = plt.get_cmap("tab10")(i % 10)
        s = result.scores[m]
        xs = np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(xs, s.mean(axis=0), width=width * 0.9, color=color, alpha=0.6, label=m)
        for j in range(len(tasks)):
            ax.scatter(np.full(s.shape[0], xs[j]), s[:, j], color=color, s=10, zorder=3)
    ax.axhline(0.0, color="gray", lw=1, ls=":")
    ax.axhline(1.0, color="gray", lw=1, ls="--")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("normalized score (0 = default, 1 = best grid)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def log_wandb(result: BenchResult) -> None:
    """Log the table, the aggregates and the PNGs to a wandb run (offline without an API key)."""
    import wandb

    mode = os.environ.get("WANDB_MODE")
    if mode is None:
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    run = wandb.init(project="diffgym", job_type="bench", name="bench",
                     dir=str(result.config.out_dir), mode=mode,
                     config=finite_or_none(result.config.to_dict()))
    try:
        rows = result.table_rows()
        columns = list(rows[0])
        logged: dict[str, Any] = {
            "bench/table": wandb.Table(columns=columns,
                                       data=[[finite_or_none(r[c]) for c in columns] for r in rows])
        }
        for name in ("aggregates", "profiles", "per_task"):
            if name in result.files:
                logged[f"bench/{name}"] = wandb.Image(result.files[name])
        run.log(logged)
        for m, a in result.aggregates.items():
            for k, ci in a.items():
                run.summary[f"{m}/{k}"] = ci.point
                run.summary[f"{m}/{k}_low"] = ci.low
                run.summary[f"{m}/{k}_high"] = ci.high
    finally:
        run.finish()
