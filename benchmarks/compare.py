"""The main job: learned sampling policies against grid-search-tuned samplers (design §5).

``diffgym compare --task T`` (and :func:`run_comparison`) builds one table whose rows are

* ``default``: the task's plain Heun sampler (every knob neutral);
* ``grid/<family>``: the best point of each grid family (:mod:`diffgym.benchmarks.grid`), picked by
  the task's primary metric (:func:`~diffgym.benchmarks.grid.default_metric`: ``sw2`` on
  ``gmm2d``, ``mode_tv`` on ``gmm2d-bias``, ``fd_digits`` on ``digits``) on the *search* seed;
* ``<agent>+<irl>/<divergence>``: policies trained by adversarial IRL
  (:class:`~diffgym.agents.train.TrainingRun`), one per training seed, sampled greedily.

Evaluation protocol. Every row is scored by :func:`~diffgym.benchmarks.grid.evaluate_sampler`
(common random numbers) with the same ``n_eval`` samples on the same held-out *evaluation seeds*:
training seed ``k`` is paired with evaluation seed :func:`eval_seed` ``(k) = 10^6 (k + 1)``, and the
default sampler and each grid family's best point are evaluated on every one of those seeds. The
grid is searched on seed :data:`SEARCH_SEED` (sample seeds ``0 .. n_eval - 1``), disjoint from the
evaluation seeds, so the best point's reported quality carries no selection bias. A learned row's
``± std`` is over training seeds (each on its own evaluation seed); a grid row's over the same
evaluation seeds (sample standard deviation; ``nan`` with one seed).

Cost to obtain a row (:class:`~diffgym.benchmarks.cost.Cost`, NFE summed over samples and
wall-clock on this machine):

* grid rows: every point of the family searched (``family_cost``); the *full grid* is the sum over
  all families (the default sampler's own evaluation excluded);
* learned rows: for every seed reported, all training rollouts (env NFE; the wall-clock of rollouts
  and policy updates, which the training loop times together, under ``"rollouts"``), the
  discriminator updates, the training loop's own evaluations, and the comparison's evaluation;
  summed over the seeds;
* the default row: its single evaluation on the search seed.

``grid/learned`` cost ratios divide the full grid's cost by a learned row's cost (> 1: the learned
sampler was cheaper to obtain). Learned policies are evaluated at the inference temperature (greedy
or 1) that scores best on the search seed, with per-sample action noise. Inference overhead:
wall-clock of policy-guided sampling
(:class:`~diffgym.agents.sampler.PolicySampler`) over :func:`~diffgym.envs.sampler.sample` driven
by a fixed schedule of the policy's per-step mean knob levels (``churn`` and guidance ``w``
recorded on the evaluation batch; renoise left out), with the same noise, labels, guide and batch:
both paths run the same denoiser work per transition (the guide is evaluated on the whole batch
whenever the task can guide), so the difference is the policy path (featurising, the actor,
argmax). Repeats are interleaved; medians; the overhead is per sampler transition (a renoising
policy takes more transitions). It is measured on the first seed of each learned method.

Files in ``out_dir`` (all written atomically): ``results.json``, ``results.csv``, ``results.md``,
``quality_vs_cost.png``, ``action_profile.png``, ``samples.png``; ``grid/`` (the grid's own
resumable ``grid.json``), ``runs/<agent>_<divergence>_seed<k>/`` (training runs), ``evals.json``
(a cache of every evaluation) and ``samples/`` (the first evaluation seed's samples of each row).
A rerun with the same ``out_dir`` reuses finished grid points, finished runs (``final_metrics.json``
present: loaded, not retrained), resumes an interrupted run from its latest checkpoint, and reuses
cached evaluations.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import os
import shutil
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffgym.benchmarks.cost import Cost, Stopwatch
from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS, add_fid_argument, with_fid
from diffgym.benchmarks.grid import (
    BACKENDS,
    DEFAULT_N,
    FAMILIES,
    POINT_PRESETS,
    GridResult,
    PointResult,
    default_metric,
    eval_labels,
    evaluate_sampler,
    make_families,
    point_key,
    point_task,
    run_grid,
    task_fingerprint,
)
from diffgym.envs.io import atomic_save_npz, atomic_write_json, atomic_write_text
from diffgym.envs.sampler import (
    BatchNoise,
    Knobs,
    PerSampleNoise,
    SampleResult,
    sample,
    schedule_actions,
)
from diffgym.envs.tasks import Task, list_tasks, make_task

__all__ = [
    "BUDGETS",
    "SEARCH_SEED",
    "CompareBudget",
    "ComparisonResult",
    "ComparisonRow",
    "add_compare_parser",
    "eval_seed",
    "measure_inference_overhead",
    "run_compare_cli",
    "run_comparison",
]

log = logging.getLogger(__name__)

SEARCH_SEED = 0
"""Protocol seed on which the grid is searched (and the best point per family picked)."""
EVAL_SEED_STRIDE = 1_000_000
"""Evaluation seed of training seed ``k``: ``EVAL_SEED_STRIDE * (k + 1)``; its sample seeds never
meet the search seed's, nor each other's, while ``n_eval < EVAL_SEED_STRIDE``."""
TRAIN_EVAL_SAMPLES = 256
"""Samples of the training loop's own final evaluation (counted in the learned cost)."""
CHECKPOINT_EVERY = 5
"""Rounds between training checkpoints (an interrupted run resumes from the latest)."""
FALLBACK_TIMESTEPS = 200_000
"""Training timesteps when neither the caller nor the agent's YAML block gives ``n_timesteps``."""
OVERHEAD_MAX_N = 1024
"""Samples per inference-overhead timing run (at most ``n_eval``)."""
INFERENCE_TEMPERATURES: tuple[float | None, ...] = (None, 1.0)
"""Inference temperatures tau of a learned policy (None: greedy), chosen per training run on the
search seed by the primary metric, as the grid's best points are; the selection evaluations are
counted in the learned cost."""
EVALS_FORMAT = "diffgym-compare-evals/1"
RESULTS_FORMAT = "diffgym-compare/1"
KNOB_FIELDS = ("churn", "guidance", "renoise", "step")
"""The :class:`~diffgym.envs.sampler.Knobs` fields recorded in a policy's action profile (with the
step knob, per base-grid level; ``step`` and ``renoise`` in base-grid levels)."""
NEUTRAL = {"churn": 0.0, "guidance": 1.0, "renoise": 0.0}


@dataclass(frozen=True)
class CompareBudget:
    """Settings of a named budget (``--budget``); explicit arguments override them.

    Attributes:
        timesteps: training transitions per run (``None``: the agent's YAML ``n_timesteps``).
        n_eval: samples per evaluation (grid points and every row).
        seeds: training seeds (one evaluation seed each).
        grid_points: grid preset, ``"small"`` or ``"default"``.
        overhead_repeats: interleaved timing repeats of the inference overhead.
        threads: torch CPU threads for the run (``None``: leave torch's setting).
    """

    timesteps: int | None
    n_eval: int
    seeds: tuple[int, ...]
    grid_points: str
    overhead_repeats: int
    threads: int | None = None


BUDGETS: dict[str, CompareBudget] = {
    # ./run.sh: gmm2d in <= 5 minutes on 2 busy CPU cores with one torch thread (about 80 s on a
    # quiet machine). 2048 samples, not fewer: below that SW2 is mostly noise on gmm2d
    # (RESULTS §1, "SW2's noise floor"), and 2048 costs about the same time as 1024 here.
    "quick": CompareBudget(
        timesteps=115_200, n_eval=2048, seeds=(0, 1), grid_points="small", overhead_repeats=5,
        threads=1,
    ),
    # benchmarks/RESULTS.md: the YAML's training length, the full grids, 2048 samples, 3 seeds.
    "full": CompareBudget(
        timesteps=None, n_eval=DEFAULT_N, seeds=(0, 1, 2), grid_points="default",
        overhead_repeats=7,
    ),
}
"""Named budgets of ``diffgym compare --budget``."""


def eval_seed(train_seed: int) -> int:
    """The evaluation (protocol) seed paired with training seed ``train_seed``."""
    return EVAL_SEED_STRIDE * (int(train_seed) + 1)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class ComparisonRow:
    """One row of the comparison table.

    Attributes:
        method: ``"default"``, ``"grid/<family>"`` or ``"<agent>+<irl>/<divergence>"``.
        kind: ``"default"``, ``"grid"`` or ``"learned"``.
        detail: the grid point's parameters, or the learned runs' settings.
        metrics, metrics_std: mean and sample std of each task metric over ``per_seed``.
        per_seed: one entry per evaluation: ``eval_seed`` (and ``train_seed``), ``metrics``,
            ``nfe_per_sample``.
        nfe_per_sample: mean denoiser evaluations per sample at inference.
        cost: total cost to obtain the row (see the module docstring).
        cost_ratio_nfe, cost_ratio_seconds: full grid cost / this row's cost (learned rows).
        runs: training runs summed in ``cost`` (learned rows: one per seed). One run yields a
            usable sampler, as one full grid search does, so ``runs x cost_ratio`` is the
            grid / learned ratio per sampler obtained.
        inference_overhead_pct: policy-guided over fixed-schedule sampling wall-clock, per
            transition, in percent (learned rows).
        info: everything else (grid params and schedule, run directories, action profile,
            overhead timings).
    """

    method: str
    kind: str
    detail: str
    metrics: dict[str, float]
    metrics_std: dict[str, float]
    per_seed: list[dict[str, Any]]
    nfe_per_sample: float
    cost: Cost
    cost_ratio_nfe: float | None = None
    cost_ratio_seconds: float | None = None
    inference_overhead_pct: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    runs: int = 1

    def per_run(self, ratio: float | None) -> float | None:
        """A cost ratio per training run (``ratio x runs``)."""
        return None if ratio is None else ratio * self.runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": self.kind,
            "detail": self.detail,
            "metrics": dict(self.metrics),
            "metrics_std": dict(self.metrics_std),
            "per_seed": list(self.per_seed),
            "nfe_per_sample": self.nfe_per_sample,
            "cost": self.cost.to_dict(),
            "cost_ratio_nfe": self.cost_ratio_nfe,
            "cost_ratio_seconds": self.cost_ratio_seconds,
            "runs": self.runs,
            "inference_overhead_pct": self.inference_overhead_pct,
            "info": self.info,
        }


@dataclass
class ComparisonResult:
    """The comparison: rows (default, best grid point per family, learned methods) and context.

    Attributes:
        task: task name; ``fingerprint``: :func:`~diffgym.benchmarks.grid.task_fingerprint`.
        metric: the primary metric; ``direction``: ``"min"`` or ``"max"``.
        metric_names: the task's metrics, in column order.
        rows: the table rows.
        grid: the full grid's :class:`~diffgym.benchmarks.grid.GridResult`.
        sigmas: the task's ``(N + 1,)`` noise levels.
        settings: the arguments the comparison ran with.
        out_dir: where the files went.
        files: the files written, by kind.
        num_trained: training runs trained or resumed by this call (0: all loaded).
        num_evaluations: evaluations computed by this call (0: all from the cache).
        seconds: wall-clock of this call.
    """

    task: str
    fingerprint: dict[str, Any]
    metric: str
    direction: str
    metric_names: list[str]
    rows: list[ComparisonRow]
    grid: GridResult
    sigmas: list[float]
    settings: dict[str, Any]
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    num_trained: int = 0
    num_evaluations: int = 0
    seconds: float = 0.0

    def row(self, method: str) -> ComparisonRow:
        """The row named ``method``.

        Raises:
            ValueError: no such row (the message lists the rows).
        """
        for r in self.rows:
            if r.method == method:
                return r
        raise ValueError(f"no row {method!r}; rows: {', '.join(r.method for r in self.rows)}")

    @property
    def grid_cost(self) -> Cost:
        """Cost of the full grid: every point of every family (default sampler excluded)."""
        return self.grid.total_cost()

    def _key(self, r: ComparisonRow) -> float:
        v = r.metrics.get(self.metric, math.nan)
        return v if self.direction == "min" else -v

    def best_grid_row(self) -> ComparisonRow | None:
        """The grid row whose point is best on the *search* seed: the point a grid search picks
        without seeing the evaluation seeds."""
        sign = 1.0 if self.direction == "min" else -1.0

        def search_key(r: ComparisonRow) -> float:
            v = r.info.get("search_metrics", {}).get(self.metric)
            return math.nan if v is None else sign * float(v)

        grid_rows = [r for r in self.rows if r.kind == "grid" and not math.isnan(search_key(r))]
        return min(grid_rows, key=search_key) if grid_rows else None

    def paired_delta(
        self, row: ComparisonRow, reference: ComparisonRow | None = None
    ) -> tuple[list[float], float, float]:
        """Primary metric of ``row`` minus ``reference``'s (default: :meth:`best_grid_row`) on
        each shared evaluation seed (common random numbers: a paired, low-noise difference);
        returns the differences, their mean and sample std (``nan`` when undefined)."""
        reference = reference if reference is not None else self.best_grid_row()
        if reference is None:
            return [], math.nan, math.nan

        def by_seed(r: ComparisonRow) -> dict[int, float]:
            out = {}
            for s in r.per_seed:
                v = s["metrics"].get(self.metric)
                out[int(s["eval_seed"])] = math.nan if v is None else float(v)
            return out

        a, b = by_seed(row), by_seed(reference)
        deltas = [a[s] - b[s] for s in a if s in b]
        mean = statistics.fmean(deltas) if deltas else math.nan
        std = statistics.stdev(deltas) if len(deltas) >= 2 else math.nan
        return deltas, mean, std

    def learned_rows(self) -> list[ComparisonRow]:
        return [r for r in self.rows if r.kind == "learned"]

    def verdict(self) -> str:
        """One line: does the best learned sampler (by its mean primary metric) reach the best
        grid row's quality (:meth:`best_grid_row`) within the combined std
        (``sqrt(std_learned^2 + std_grid^2)``), and at what cost ratio? The paired per-seed
        difference (:meth:`paired_delta`) is quoted too."""
        grid_row = self.best_grid_row()
        learned = [r for r in self.learned_rows() if not math.isnan(self._key(r))]
        if grid_row is None or not learned:
            return "verdict: nothing to compare (no grid row or no learned row)"
        best = min(learned, key=self._key)
        m = self.metric
        lm, gm = best.metrics[m], grid_row.metrics[m]
        ls, gs = best.metrics_std.get(m, math.nan), grid_row.metrics_std.get(m, math.nan)
        tol = math.sqrt(sum(s * s for s in (ls, gs) if not math.isnan(s)))
        gap = (lm - gm) if self.direction == "min" else (gm - lm)  # > 0: learned is worse
        if gap <= 0:
            quality = "is at least as good as"
        elif gap <= tol:
            quality = "reaches (within ±std)"
        else:
            quality = "does NOT reach"
        arrow = "lower" if self.direction == "min" else "higher"
        _, d_mean, d_std = self.paired_delta(best, grid_row)
        return (
            f"verdict: {best.method} {quality} the best grid point ({grid_row.method}) on {m} "
            f"({arrow} is better): {_pm(lm, ls)} vs {_pm(gm, gs)} (paired difference on the "
            f"same seeds {_pm(d_mean, d_std)}); full grid / learned cost = "
            f"{_ratio(best.cost_ratio_nfe)} in NFE, {_ratio(best.cost_ratio_seconds)} in "
            f"wall-clock ({self.grid_cost.nfe:,} vs {best.cost.nfe:,} NFE; "
            f"{self.grid_cost.total_seconds:.0f} s vs {best.cost.total_seconds:.0f} s, all "
            f"{best.runs} training runs); per training run "
            f"{_ratio(best.per_run(best.cost_ratio_nfe))} in NFE, "
            f"{_ratio(best.per_run(best.cost_ratio_seconds))} in wall-clock"
        )

    # -- tables ------------------------------------------------------------------------------
    def table_rows(self) -> list[dict[str, Any]]:
        """Flat rows (CSV): method, kind, detail, seeds, each metric and its std, NFE/sample,
        cost (NFE, samples, seconds), cost ratios, inference overhead."""
        out = []
        for r in self.rows:
            row: dict[str, Any] = {
                "method": r.method,
                "kind": r.kind,
                "detail": r.detail,
                "seeds": len(r.per_seed),
            }
            for m in self.metric_names:
                row[m] = r.metrics.get(m, math.nan)
                row[f"{m}_std"] = r.metrics_std.get(m, math.nan)
            row.update(
                {
                    "nfe_per_sample": r.nfe_per_sample,
                    "cost_nfe": r.cost.nfe,
                    "cost_samples": r.cost.samples,
                    "cost_seconds": r.cost.total_seconds,
                    "ratio_nfe": r.cost_ratio_nfe,
                    "ratio_seconds": r.cost_ratio_seconds,
                    "runs": r.runs,
                    "ratio_nfe_per_run": r.per_run(r.cost_ratio_nfe),
                    "ratio_seconds_per_run": r.per_run(r.cost_ratio_seconds),
                    "inference_overhead_pct": r.inference_overhead_pct,
                }
            )
            out.append(row)
        return out

    def to_csv(self) -> str:
        rows = self.table_rows()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return buf.getvalue()

    def to_markdown(self) -> str:
        """The table in markdown, with a header line stating the protocol and the verdict."""
        arrows = {"min": "↓", "max": "↑"}
        head = ["method", "detail"]
        head += [
            f"{'**' + m + '**' if m == self.metric else m} {arrows[METRIC_DIRECTIONS[m]]}"
            for m in self.metric_names
        ]
        head += [
            "NFE/sample",
            "cost NFE",
            "cost s",
            "grid/learned NFE (per run)",
            "grid/learned s (per run)",
            "overhead %",
        ]
        lines = [
            f"**{self.task}**: {len(self.rows)} samplers, n = {self.settings['n_eval']} samples "
            f"per evaluation, evaluation seeds {self.settings['eval_seeds']} (grid searched on "
            f"seed {SEARCH_SEED}; best point per family by {self.metric}); ± = sample std over "
            f"seeds. Full grid: {len(self.grid.points) - (self.grid.default is not None)} points, "
            f"{self.grid_cost.nfe:,} NFE, {self.grid_cost.total_seconds:.1f} s.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|",
        ]
        for r in self.rows:
            cells = [r.method, r.detail.replace("|", "/")]
            cells += [
                _pm(r.metrics.get(m, math.nan), r.metrics_std.get(m, math.nan))
                for m in self.metric_names
            ]
            cells += [
                f"{r.nfe_per_sample:.4g}",
                f"{r.cost.nfe:,}",
                f"{r.cost.total_seconds:.1f}",
                _ratio_pair(r.cost_ratio_nfe, r.per_run(r.cost_ratio_nfe)),
                _ratio_pair(r.cost_ratio_seconds, r.per_run(r.cost_ratio_seconds)),
                "" if r.inference_overhead_pct is None else f"{r.inference_overhead_pct:+.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", self.verdict(), ""]
        default = self.row("default") if any(r.method == "default" for r in self.rows) else None
        if default is not None:
            for r in self.learned_rows():
                deltas, mean, std = self.paired_delta(r, default)
                if deltas:
                    lines.append(
                        f"paired {self.metric} difference of {r.method} to the default sampler "
                        f"on the same seeds: {_pm(mean, std)} (per seed: "
                        + ", ".join(f"{d:+.4g}" for d in deltas) + ")"
                    )
            lines.append("")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return _finite_or_none(
            {
                "format": RESULTS_FORMAT,
                "task": self.task,
                "fingerprint": self.fingerprint,
                "metric": self.metric,
                "direction": self.direction,
                "metric_names": self.metric_names,
                "settings": self.settings,
                "search_seed": SEARCH_SEED,
                "sigmas": self.sigmas,
                "grid_cost": self.grid_cost.to_dict(),
                "grid_points": len(self.grid.points),
                "rows": [r.to_dict() for r in self.rows],
                "best_grid_row": None if (g := self.best_grid_row()) is None else g.method,
                "paired_vs_best_grid": {
                    r.method: dict(zip(("deltas", "mean", "std"), self.paired_delta(r)))
                    for r in self.learned_rows()
                },
                "verdict": self.verdict(),
                "seconds": self.seconds,
                "files": self.files,
            }
        )


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "nan"
    if math.isnan(std):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g}"


def _tau_name(tau: float | None) -> str:
    return "greedy" if tau is None else f"τ={tau:g}"


def _ratio_pair(total: float | None, per_run: float | None) -> str:
    """``"5.5× (16.6×)"``: the ratio over all runs, and per run."""
    if total is None:
        return ""
    return f"{_ratio(total)} ({_ratio(per_run)})"


def _ratio(r: float | None) -> str:
    return "" if r is None or math.isnan(r) else f"{r:.3g}×"


def _finite_or_none(obj: Any) -> Any:
    """JSON-ready copy: non-finite floats become ``None`` (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _aggregate(values: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample std (``nan`` for one value) of each key over ``values``."""
    keys = list(dict.fromkeys(k for v in values for k in v))
    mean, std = {}, {}
    for k in keys:
        xs = [math.nan if v.get(k) is None else float(v[k]) for v in values if k in v]
        mean[k] = float(statistics.fmean(xs)) if xs else math.nan
        std[k] = float(statistics.stdev(xs)) if len(xs) >= 2 else math.nan
    return mean, std


# --------------------------------------------------------------------------------------------
# Evaluations (cached in out_dir/evals.json)
# --------------------------------------------------------------------------------------------


class _EvalCache:
    """Finished evaluations by key, rewritten atomically after each new one."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.num_new = 0
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path} is not valid JSON ({err}); remove it to start over"
                ) from err
            if data.get("format") != EVALS_FORMAT:
                raise ValueError(f"{path} is not a {EVALS_FORMAT} file; remove it to start over")
            self.records = dict(data["evals"])

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.records[key] = record
        self.num_new += 1
        if self.path is not None:
            atomic_write_json(
                self.path, _finite_or_none({"format": EVALS_FORMAT, "evals": self.records})
            )


class _ProfileRecorder:
    """Wraps an action function; sums each knob's level per step index over active samples."""

    def __init__(self, act: Callable[..., Knobs], num_steps: int, advance: int = 1) -> None:
        self.act = act
        self.advance = advance  # the neutral step, recorded where a level is never visited
        self.num_steps = num_steps
        self.counts = torch.zeros(num_steps, dtype=torch.float64)
        self.sums: dict[str, torch.Tensor] = {}

    def __call__(self, x, step_index, budget, labels) -> Knobs:
        with torch.no_grad():
            knobs = self.act(x, step_index, budget, labels)
        active = step_index < self.num_steps
        idx = step_index[active].cpu()
        self.counts.index_add_(0, idx, torch.ones(idx.shape[0], dtype=torch.float64))
        for name in KNOB_FIELDS:
            value = getattr(knobs, name)
            if value is None:
                continue
            total = self.sums.setdefault(name, torch.zeros(self.num_steps, dtype=torch.float64))
            total.index_add_(0, idx, value[active].detach().cpu().double())
        return knobs

    def profile(self) -> dict[str, Any]:
        """``{"counts": [N], knob: [N] mean level per step}`` (neutral where never visited)."""
        seen = self.counts > 0
        out: dict[str, Any] = {"counts": self.counts.tolist()}
        for name, total in self.sums.items():
            neutral = NEUTRAL.get(name, float(self.advance))
            mean = torch.where(seen, total / self.counts.clamp_min(1), neutral)
            out[name] = mean.tolist()
        return out


def _evaluation_record(ev, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metrics": ev.metrics,
        "nfe_per_sample": float(ev.result.nfe.double().mean()),
        "cost": ev.cost.to_dict(),
        **(extra or {}),
    }


def _save_samples(path: Path | None, result: SampleResult) -> None:
    if path is None:
        return
    atomic_save_npz(
        path,
        x=result.x.detach().cpu().numpy(),
        labels=None if result.labels is None else result.labels.detach().cpu().numpy(),
    )


def _load_samples(path: Path | None) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    if path is None or not path.is_file():
        return None
    with np.load(path) as data:
        x = torch.from_numpy(data["x"])
        labels = torch.from_numpy(data["labels"]) if "labels" in data else None
    return x, labels


# --------------------------------------------------------------------------------------------
# Inference overhead
# --------------------------------------------------------------------------------------------


def measure_inference_overhead(
    sampler,
    schedule: Mapping[str, Sequence[float]],
    *,
    n: int,
    seed: int = 0,
    repeats: int = 5,
    warmup: int = 1,
) -> dict[str, Any]:
    """Wall-clock of policy-guided sampling over a fixed schedule, same batch, noise and guide.

    Args:
        sampler: a :class:`~diffgym.agents.sampler.PolicySampler` (greedy or stochastic).
        schedule: per-step tables for :func:`~diffgym.envs.sampler.schedule_actions` (``churn``,
            ``guidance``, ``s_noise``), each of length N.
        n: samples per run; seed: noise and label seed.
        repeats: timed runs per path, interleaved (order alternating); warmup: untimed runs.

    Returns:
        ``policy_s`` / ``schedule_s`` (medians), ``*_transitions`` (sampler loop iterations),
        ``*_nfe_per_sample``, every timing, and ``overhead_pct`` = 100 (policy time per
        transition / schedule time per transition - 1).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    task = sampler.task
    device = sampler.device
    labels = eval_labels(task, n, seed)
    if labels is not None:
        labels = labels.to(device)
    guide = task.guide if "guidance" in sampler.knob_names else None
    actions = schedule_actions(**schedule)

    def noise() -> BatchNoise:
        return BatchNoise(n, device=device, dtype=task.dtype, seed=seed)

    def run_policy() -> SampleResult:
        return sampler.sample(noise=noise(), labels=labels)

    def run_schedule() -> SampleResult:
        with torch.inference_mode():
            return sample(
                task.denoiser,
                sampler.sigmas,
                noise=noise(),
                data_shape=task.data_shape,
                labels=labels,
                guide=guide,
                actions=actions,
                dtype=task.dtype,
                advance=sampler.action_menus.schedule_factor,  # the default walk of its grid
            )

    paths = {"policy": run_policy, "schedule": run_schedule}
    for _ in range(warmup):
        run_policy()
        run_schedule()
    times: dict[str, list[float]] = {"policy": [], "schedule": []}
    last: dict[str, SampleResult] = {}
    for r in range(repeats):
        for name in ("policy", "schedule") if r % 2 == 0 else ("schedule", "policy"):
            with Stopwatch(device) as sw:
                last[name] = paths[name]()
            times[name].append(sw.seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    trans = {k: int(v.steps.max()) for k, v in last.items()}
    per_transition = {k: med[k] / max(trans[k], 1) for k in med}
    return {
        "n": n,
        "repeats": repeats,
        "policy_s": med["policy"],
        "schedule_s": med["schedule"],
        "policy_transitions": trans["policy"],
        "schedule_transitions": trans["schedule"],
        "policy_nfe_per_sample": float(last["policy"].nfe.double().mean()),
        "schedule_nfe_per_sample": float(last["schedule"].nfe.double().mean()),
        "times_s": times,
        "overhead_pct": 100.0 * (per_transition["policy"] / per_transition["schedule"] - 1.0),
    }


def _profile_schedule(profile: Mapping[str, Any], num_steps: int) -> dict[str, list[float]]:
    """The fixed schedule of a policy's per-step mean churn and guidance (renoise left out)."""
    schedule = {k: list(profile[k]) for k in ("churn", "guidance") if k in profile}
    return schedule or {"churn": [0.0] * num_steps}


# --------------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """A finished training run: its policy, cost and directory."""

    run_dir: Path
    config: Any
    policy: Any
    cost: Cost
    model_sha256: str
    trained_now: bool


_SECONDS_CATEGORY = {
    "rollouts_and_policy": "rollouts",
    "rollouts": "rollouts",
    "policy_update": "policy_update",
    "discriminator": "discriminator",
    "evaluation": "evaluation",
}


def _training_cost(run_dir: Path, num_steps: int, eval_samples: int) -> Cost:
    """The ledger of a finished run (``cost.json``): rollout NFE + the NFE of the training loop's
    own evaluations, seconds by category."""
    data = json.loads((run_dir / "cost.json").read_text())
    eval_nfe = int(data["eval_nfe"])
    evaluations = 1  # the final one
    curve = run_dir / "learning_curve.csv"
    if curve.is_file():
        with open(curve, newline="") as f:
            evaluations += sum(
                row.get("eval/nfe_per_sample") not in (None, "") for row in csv.DictReader(f)
            )
    seconds: dict[str, float] = {}
    for name, value in data.get("seconds", {}).items():
        category = _SECONDS_CATEGORY.get(name)
        if category is None:
            log.warning("%s: unknown cost category %r counted as rollouts", run_dir, name)
            category = "rollouts"
        seconds[category] = seconds.get(category, 0.0) + float(value)
    episodes = int(data.get("timesteps", 0)) // max(num_steps, 1)  # >= episodes with renoise
    return Cost(
        nfe=int(data["rollout_nfe"]) + eval_nfe,
        samples=episodes + eval_samples * evaluations,
        seconds=seconds,
    )


def _evaluate_policy(
    *,
    run: Any,
    config: Any,
    method: str,
    task: Task,
    task_fp: str,
    n: int,
    device: str,
    cache: Any,
    tau: float | None,
    seed: int,
    samples_path: Path | None = None,
    panels: dict | None = None,
) -> tuple[str, dict[str, Any], Any]:
    """Evaluate a trained policy at inference temperature ``tau`` (None: greedy) on ``seed``
    with per-sample action noise (sample b's choices depend only on its own seed: common random
    numbers); cached in ``cache``. With ``panels``, the samples are saved/loaded for the plots.

    Returns:
        ``(cache key, evaluation record, the PolicySampler)``.
    """
    from diffgym.agents.sampler import ACTION_SEED_OFFSET, PolicySampler

    key = hashlib.sha256(
        json.dumps(
            {"model": run.model_sha256, "config": config.fingerprint(), "task": task_fp,
             "n": n, "seed": seed, "temperature": tau},
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    sampler = PolicySampler(run.policy, task, device=device, greedy=tau is None,
                            temperature=tau or 1.0)
    record = cache.get(key)
    if record is None:
        action_noise = PerSampleNoise(
            [ACTION_SEED_OFFSET + seed + b for b in range(n)], device=device
        )
        recorder = _ProfileRecorder(sampler.actions(action_noise), task.base_steps,
                                    task.schedule_factor)
        ev = evaluate_sampler(
            task,
            recorder,
            n=n,
            seed=seed,
            guided="guidance" in sampler.knob_names,
            renoise_budget=sampler.renoise_budget,
            device=device,
            base_grid=True,  # as the policy walks it (the task's schedule without a step knob)
        )
        record = _evaluation_record(
            ev, {"method": method, "run": run.run_dir.name, "profile": recorder.profile(),
                 "temperature": tau}
        )
        cache.put(key, record)
        if panels is not None:
            _save_samples(samples_path, ev.result)
            panels[method] = (ev.result.x, ev.result.labels)
    elif panels is not None and (loaded := _load_samples(samples_path)) is not None:
        panels[method] = loaded
    return key, record, sampler


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train_or_load(
    config, run_dir: Path, *, num_steps: int, device: str, progress: bool
) -> _Run:
    """Load a finished run, resume an interrupted one from its checkpoint, or train a new one.

    Raises:
        ValueError: ``run_dir`` holds a run with another config.
    """
    from diffgym.agents.registry import AGENTS
    from diffgym.agents.train import TrainingRun, load_run_config

    if (run_dir / "config.json").is_file():
        stored = load_run_config(run_dir)
        if stored.fingerprint() != config.fingerprint():
            diff = {
                k: (v, config.to_dict()[k])
                for k, v in stored.to_dict().items()
                if v != config.to_dict()[k]
            }
            raise ValueError(
                f"{run_dir} holds a run with another config (stored vs wanted: {diff}); use "
                f"another out_dir or remove that run"
            )
    trained_now = False
    if not (run_dir / "final_metrics.json").is_file():
        if (run_dir / "checkpoints" / "latest.json").is_file():
            log.info("resuming %s from its latest checkpoint", run_dir)
            run = TrainingRun(None, run_dir, resume=True, progress=progress)
        else:
            if run_dir.exists() and any(run_dir.iterdir()):
                warnings.warn(
                    f"{run_dir} holds an unfinished run without a checkpoint; starting it over",
                    stacklevel=3,
                )
                shutil.rmtree(run_dir)
            run = TrainingRun(config, run_dir, progress=progress)
        run.train()
        trained_now = True
    model_path = run_dir / "final_model.zip"
    algo = AGENTS[config.agent].load(str(model_path), device=device)
    return _Run(
        run_dir=run_dir,
        config=config,
        policy=algo.policy,
        cost=_training_cost(run_dir, num_steps, config.eval_samples),
        model_sha256=_sha256(model_path),
        trained_now=trained_now,
    )


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready task overrides (tensors and arrays as nested lists, tuples as lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_names(
    kind: str, values: Sequence[str], allowed: Sequence[str], *, one: str
) -> tuple[str, ...]:
    """``values`` as a tuple; ``ValueError`` naming ``allowed`` for an unknown, empty or repeat."""
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"{kind} must not be empty; allowed: {', '.join(allowed)}")
    for v in values:
        if v not in allowed:
            raise ValueError(f"unknown {one} {v!r}; allowed: {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{kind} must not repeat, got {values}")
    return values


def _resolve_timesteps(timesteps: int | None, agents: Sequence[str], task: str) -> dict[str, int]:
    from diffgym.agents.registry import env_id_for_task, load_hyperparams

    out = {}
    for agent in agents:
        if timesteps is not None:
            out[agent] = int(timesteps)
        else:
            yaml_ts = load_hyperparams(agent, env_id_for_task(task)).get("n_timesteps")
            out[agent] = int(yaml_ts) if yaml_ts is not None else FALLBACK_TIMESTEPS
    return out


def _method_name(agent: str, irl: str, divergence: str) -> str:
    return f"{agent}+{irl}/{divergence}"


def _slug(method: str) -> str:
    return method.replace("/", "_").replace("+", "_")


def run_comparison(
    task_name: str,
    *,
    task_overrides: Mapping[str, Any] | None = None,
    agents: Sequence[str] = ("ppo",),
    divergences: Sequence[str] = ("js",),
    seeds: Sequence[int] = (0, 1, 2),
    irl: str = "gail",
    timesteps: int | None = None,
    n_eval: int = DEFAULT_N,
    grid_families: Sequence[str] | None = None,
    grid_points: str = "default",
    out_dir: str | os.PathLike | None = None,
    backend: str = "local",
    device: str = "cpu",
    progress: bool = True,
    wandb: bool = False,
    overhead_repeats: int = 5,
    agent_overrides: Mapping[str, Any] | None = None,
    n_envs: int | None = None,
    plots: bool = True,
    fid_weights: str | os.PathLike | None = None,
) -> ComparisonResult:
    """Compare the default sampler, the best grid point per family and IRL-trained policies.

    See the module docstring for the protocol, the cost accounting and the files.

    Args:
        task_name: a registered task (``gmm2d``, ``gmm2d-bias``, ``digits``).
        task_overrides: :func:`~diffgym.envs.make_task` overrides, e.g. a user-defined mixture
            ``{"means": [[-2, 0], [2, 0]], "weights": [0.3, 0.7], "model_std": 0.5}``; the same
            overrides go to training.
        agents, divergences: learners (keys of :data:`diffgym.agents.AGENTS`) and IRL reward
            divergences (keys of :data:`diffgym.rewards.DIVERGENCES`); one learned row per pair.
        seeds: training seeds (ints >= 0); seed ``k`` is evaluated on :func:`eval_seed` ``(k)``.
        irl: ``"gail"``, ``"airl"`` or ``"none"``.
        timesteps: training transitions per run; ``None``: the agent's YAML ``n_timesteps``.
        n_eval: samples per evaluation, for grid points and every row alike.
        grid_families: grid families (default: all the task supports); grid_points: their preset.
        out_dir: output folder (``None``: nothing written, no resuming; runs go to a temporary
            folder).
        backend: grid backend, ``"local"`` or ``"ray"``.
        device: where to train, sample and evaluate.
        progress: progress bars.
        wandb: log the table and the plots to a wandb run (offline unless ``WANDB_MODE`` says
            otherwise or ``WANDB_API_KEY`` is set).
        overhead_repeats: interleaved timing repeats of the inference overhead.
        agent_overrides: hyperparameters for every learner (win over the YAML).
        n_envs: training sub-envs (``None``: the YAML's).
        plots: write the PNGs.
        fid_weights: the FID Inception-v3 state dict; every evaluation then also reports
            Inception FID, KID and precision/recall (:func:`~diffgym.benchmarks.evaluate.
            with_fid`; image tasks only).

    Returns:
        The :class:`ComparisonResult`.

    Raises:
        ValueError: an unknown task, agent, divergence, irl method, grid family, preset or
            backend (each message names the allowed values); empty or repeated lists; a seed
            that is not an int >= 0; ``n_eval`` outside ``[2, 10^6)``; a run directory holding a
            run with another config.
        TypeError: a task override the task does not accept.
        FileNotFoundError: ``fid_weights`` is not a file.
    """
    from tqdm.auto import tqdm

    from diffgym.agents.registry import AGENTS
    from diffgym.agents.train import IRL_METHODS, TrainConfig
    from diffgym.rewards import DIVERGENCES

    t_start = time.perf_counter()
    if task_name not in list_tasks():
        raise ValueError(f"unknown task {task_name!r}; allowed: {', '.join(list_tasks())}")
    agents = _check_names("agents", agents, list(AGENTS), one="agent")
    divergences = _check_names("divergences", divergences, list(DIVERGENCES), one="divergence")
    if irl not in IRL_METHODS:
        raise ValueError(f"unknown irl method {irl!r}; allowed: {', '.join(IRL_METHODS)}")
    seeds = tuple(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {seeds}")
    bad_n = isinstance(n_eval, bool) or not isinstance(n_eval, int)
    if bad_n or not 2 <= n_eval < EVAL_SEED_STRIDE:
        raise ValueError(f"n_eval must be an int in [2, {EVAL_SEED_STRIDE}), got {n_eval!r}")
    if grid_points not in POINT_PRESETS:
        raise ValueError(
            f"unknown grid points preset {grid_points!r}; allowed: {', '.join(POINT_PRESETS)}"
        )
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if grid_families is not None:
        _check_names("grid families", grid_families, list(FAMILIES), one="grid family")
    if timesteps is not None and (isinstance(timesteps, bool) or int(timesteps) < 1):
        raise ValueError(f"timesteps must be an int >= 1, got {timesteps!r}")

    overrides = _plain(dict(task_overrides or {}))
    task = make_task(task_name, device=device, **overrides)
    if fid_weights is not None:
        with_fid(task, fid_weights)
    metric = default_metric(task)
    direction = METRIC_DIRECTIONS[metric]
    families = make_families(task, grid_families, points=grid_points)
    steps_by_agent = _resolve_timesteps(timesteps, agents, task_name)

    scratch = None
    if out_dir is None:
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="diffgym-compare-")
        runs_root, out = Path(scratch.name) / "runs", None
    else:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        runs_root = out / "runs"
    cache = _EvalCache(None if out is None else out / "evals.json")
    samples_dir = None if out is None else out / "samples"
    fp = task_fingerprint(task)
    e_seeds = [eval_seed(k) for k in seeds]
    methods = [(a, d) for a in agents for d in divergences]
    stages = 1 + 2 * len(methods) * len(seeds) + (1 + len(families)) * len(e_seeds)
    bar = tqdm(total=stages, desc=f"compare {task.name}", unit="job", disable=not progress)
    num_trained = 0
    try:
        # 1. The grid, searched on SEARCH_SEED (resumable on its own).
        bar.set_postfix_str("grid")
        grid = run_grid(
            task,
            families,
            n=n_eval,
            seed=SEARCH_SEED,
            out_dir=None if out is None else out / "grid",
            backend=backend,
            device=device,
            progress=progress,
        )
        bar.update(1)
        best = grid.best(metric)

        # 2. The default sampler and each family's best point on the evaluation seeds.
        rows: list[ComparisonRow] = []
        panels: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        fixed: list[tuple[str, PointResult]] = []
        if grid.default is not None:
            fixed.append(("default", grid.default))
        fixed += [(f"grid/{name}", point) for name, point in best.items()]
        for method, point in fixed:
            bar.set_postfix_str(method)
            per_seed = []
            for j, s in enumerate(e_seeds):
                key = point_key(fp, point.family, point.params, n=n_eval, seed=s, device=device)
                record = cache.get(key)
                path = None if samples_dir is None else samples_dir / f"{_slug(method)}.npz"
                if record is None:
                    guided = any(w != 1.0 for w in point.schedule.get("guidance", ()))
                    actions = schedule_actions(**point.schedule) if point.schedule else None
                    ev = evaluate_sampler(
                        point_task(task, point.family, point.params), actions, n=n_eval, seed=s,
                        guided=guided, device=device,
                    )
                    record = _evaluation_record(ev, {"method": method, "point": point.key})
                    cache.put(key, record)
                    if j == 0:
                        _save_samples(path, ev.result)
                        panels[method] = (ev.result.x, ev.result.labels)
                elif j == 0 and (loaded := _load_samples(path)) is not None:
                    panels[method] = loaded
                per_seed.append({"eval_seed": s, **record})
                bar.update(1)
            mean, std = _aggregate([r["metrics"] for r in per_seed])
            is_default = point.family == "default"
            rows.append(
                ComparisonRow(
                    method=method,
                    kind="default" if is_default else "grid",
                    detail="plain Heun" if is_default else point.label,
                    metrics=mean,
                    metrics_std=std,
                    per_seed=per_seed,
                    nfe_per_sample=statistics.fmean(r["nfe_per_sample"] for r in per_seed),
                    cost=point.cost if is_default else grid.family_cost(point.family),
                    info={
                        "family": point.family,
                        "params": point.params,
                        "schedule": point.schedule,
                        "search_metrics": point.metrics,
                        "grid_points": len(grid.family_points(point.family)),
                    },
                )
            )

        # 3. Learned policies: train (or load); choose the inference temperature on the search
        # seed; evaluate on the paired evaluation seed.
        grid_cost = grid.total_cost()
        for agent, div in methods:
            method = _method_name(agent, irl, div)
            per_seed, profiles, costs, run_dirs = [], [], [], []
            overhead = None
            for j, k in enumerate(seeds):
                bar.set_postfix_str(f"{method} seed {k}")
                config = TrainConfig(
                    task=task_name,
                    agent=agent,
                    irl=irl,
                    divergence=div,
                    timesteps=steps_by_agent[agent],
                    seed=k,
                    n_envs=n_envs,
                    device=device,
                    checkpoint_every=CHECKPOINT_EVERY,
                    eval_every=0,
                    eval_samples=TRAIN_EVAL_SAMPLES,
                    task_overrides=overrides,
                    agent_overrides=_plain(dict(agent_overrides or {})),
                )
                run = _train_or_load(
                    config,
                    runs_root / f"{agent}_{div}_seed{k}",
                    num_steps=task.num_steps,
                    device=device,
                    progress=progress,
                )
                num_trained += run.trained_now
                bar.update(1)
                s = e_seeds[j]

                path = None if samples_dir is None else samples_dir / f"{_slug(method)}.npz"
                # The inference temperature is chosen on the search seed, as grid points are.
                common = dict(run=run, config=config, method=method, task=task, task_fp=fp,
                              n=n_eval, device=device, cache=cache)
                selection = {
                    tau: _evaluate_policy(**common, tau=tau, seed=SEARCH_SEED)[1]
                    for tau in INFERENCE_TEMPERATURES
                }
                sign = 1.0 if direction == "min" else -1.0
                tau = min(selection, key=lambda t: sign * selection[t]["metrics"][metric])
                key, record, sampler = _evaluate_policy(
                    **common, tau=tau, seed=s, samples_path=path if j == 0 else None,
                    panels=panels if j == 0 else None,
                )
                if j == 0 and "overhead" not in record:
                    record["overhead"] = measure_inference_overhead(
                        sampler,
                        _profile_schedule(record["profile"], task.base_steps),
                        n=min(n_eval, OVERHEAD_MAX_N),
                        seed=s,
                        repeats=overhead_repeats,
                    )
                    cache.put(key, record)
                selection_cost = sum((Cost.from_dict(r["cost"]) for r in selection.values()),
                                     Cost())
                if j == 0:
                    overhead = record["overhead"]
                per_seed.append({
                    "train_seed": k, "eval_seed": s, **record, "temperature": tau,
                    "selection": {_tau_name(t): r["metrics"][metric] for t, r in selection.items()},
                    "selection_cost": selection_cost.to_dict(),
                })
                profiles.append(record["profile"])
                costs.append(run.cost + selection_cost + Cost.from_dict(record["cost"]))
                run_dirs.append(str(run.run_dir))
                bar.update(1)
            mean, std = _aggregate([r["metrics"] for r in per_seed])
            total = sum(costs, Cost())
            rows.append(
                ComparisonRow(
                    method=method,
                    kind="learned",
                    detail=f"{agent}, {irl}, {div}, {steps_by_agent[agent]:,} steps x "
                    f"{len(seeds)} seeds, inference "
                    + ", ".join(_tau_name(r.get("temperature")) for r in per_seed),
                    metrics=mean,
                    metrics_std=std,
                    per_seed=per_seed,
                    nfe_per_sample=statistics.fmean(r["nfe_per_sample"] for r in per_seed),
                    cost=total,
                    cost_ratio_nfe=grid_cost.nfe / total.nfe if total.nfe else math.nan,
                    cost_ratio_seconds=(
                        grid_cost.total_seconds / total.total_seconds
                        if total.total_seconds
                        else math.nan
                    ),
                    inference_overhead_pct=None if overhead is None else overhead["overhead_pct"],
                    runs=len(seeds),
                    info={
                        "agent": agent,
                        "irl": irl,
                        "divergence": div,
                        "timesteps": steps_by_agent[agent],
                        "run_dirs": run_dirs,
                        "per_seed_cost": [c.to_dict() for c in costs],
                        "profile": _mean_profile(profiles),
                        "overhead": overhead,
                        # the step knob's base grid, the sigma axis of the profile (issue 16)
                        **({"profile_sigmas": task.base_sigmas(dtype=torch.float64).tolist()}
                           if task.schedule_factor > 1 else {}),
                    },
                )
            )
    finally:
        bar.close()
        if scratch is not None:
            scratch.cleanup()

    metric_names = [m for m in rows[0].metrics if m in METRIC_DIRECTIONS] if rows else []
    result = ComparisonResult(
        task=task.name,
        fingerprint=fp,
        metric=metric,
        direction=direction,
        metric_names=metric_names,
        rows=rows,
        grid=grid,
        sigmas=task.sigmas(dtype=torch.float64).tolist(),
        settings={
            "task_overrides": overrides,
            "agents": list(agents),
            "divergences": list(divergences),
            "irl": irl,
            "seeds": list(seeds),
            "eval_seeds": e_seeds,
            "timesteps": steps_by_agent,
            "n_eval": n_eval,
            "grid_families": [f.name for f in families],
            "grid_points": grid_points,
            "backend": backend,
            "device": device,
            "torch_threads": torch.get_num_threads(),
            "overhead_repeats": overhead_repeats,
            "agent_overrides": _plain(dict(agent_overrides or {})),
            "n_envs": n_envs,
        },
        out_dir=out,
        num_trained=num_trained,
        num_evaluations=cache.num_new,
    )
    result.seconds = time.perf_counter() - t_start
    if out is not None:
        _write_outputs(result, task, panels, plots=plots)
    if wandb:
        _log_wandb(result, out)
    return result


def _mean_profile(profiles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-step mean and std over seeds of each knob's mean level."""
    out: dict[str, Any] = {}
    for name in KNOB_FIELDS:
        rows = [p[name] for p in profiles if name in p]
        if not rows:
            continue
        arr = np.asarray(rows, dtype=np.float64)
        out[name] = {
            "mean": arr.mean(axis=0).tolist(),
            "std": (arr.std(axis=0, ddof=1) if len(rows) > 1 else np.full(arr.shape[1], np.nan))
            .tolist(),
        }
    return out


def _write_outputs(
    result: ComparisonResult,
    task: Task,
    panels: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    *,
    plots: bool,
) -> None:
    out = result.out_dir
    assert out is not None
    files = {
        "json": out / "results.json",
        "csv": out / "results.csv",
        "markdown": out / "results.md",
    }
    if plots:
        from diffgym.benchmarks.compare_plots import (
            plot_action_profile,
            plot_quality_vs_cost,
            plot_samples,
        )

        files["quality_vs_cost"] = out / "quality_vs_cost.png"
        files["action_profile"] = out / "action_profile.png"
        files["samples"] = out / "samples.png"
        plot_quality_vs_cost(result, files["quality_vs_cost"])
        plot_action_profile(result, files["action_profile"])
        ordered = {r.method: panels[r.method] for r in result.rows if r.method in panels}
        plot_samples(task, ordered, files["samples"])
    result.files = {k: str(v) for k, v in files.items()}
    atomic_write_text(files["csv"], result.to_csv())
    atomic_write_text(files["markdown"], result.to_markdown())
    atomic_write_json(files["json"], result.to_dict())


def _log_wandb(result: ComparisonResult, out: Path | None) -> None:
    """Log the table, the verdict and the PNGs to a wandb run (offline without an API key)."""
    import wandb

    mode = os.environ.get("WANDB_MODE")
    if mode is None:
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    run = wandb.init(
        project="diffgym",
        job_type="compare",
        name=f"compare-{result.task}",
        dir=None if out is None else str(out),
        mode=mode,
        config=_finite_or_none(result.settings),
    )
    try:
        rows = result.table_rows()
        columns = list(rows[0])
        table = wandb.Table(
            columns=columns,
            data=[[_finite_or_none(r[c]) if r[c] is not None else None for c in columns]
                  for r in rows],
        )
        logged: dict[str, Any] = {"compare/table": table}
        for name in ("quality_vs_cost", "action_profile", "samples"):
            if name in result.files and Path(result.files[name]).is_file():
                logged[f"compare/{name}"] = wandb.Image(result.files[name])
        run.log(logged)
        run.summary["verdict"] = result.verdict()
        run.summary["grid_nfe"] = result.grid_cost.nfe
        for r in result.learned_rows():
            run.summary[f"{r.method}/cost_ratio_nfe"] = _finite_or_none(r.cost_ratio_nfe)
    finally:
        run.finish()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_compare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand (its handler is :func:`run_compare_cli`)."""
    p = subparsers.add_parser(
        "compare",
        help="learned sampling policies vs the default and grid-searched samplers: one table, "
        "costs, plots (resumable)",
    )
    p.add_argument("--task", default="gmm2d", help="task name (see `diffgym tasks`)")
    p.add_argument("--budget", default="full", help="quick (./run.sh, minutes) or full (default)")
    p.add_argument("--agents", nargs="+", default=["ppo"], metavar="AGENT")
    p.add_argument("--divergences", nargs="+", default=["js"], metavar="DIV")
    p.add_argument("--irl", default="gail", help="gail | airl | none")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (budget)")
    p.add_argument("--timesteps", type=int, default=None, help="training steps per run (budget)")
    p.add_argument("--n-eval", type=int, default=None, help="samples per evaluation (budget)")
    p.add_argument("--grid-points", default=None, help="grid preset small | default (budget)")
    p.add_argument("--families", nargs="+", default=None, metavar="FAMILY",
                   help=f"grid families, of {', '.join(FAMILIES)} (default: all the task has)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/compare/TASK-BUDGET)")
    p.add_argument("--backend", default="local", help=f"grid backend: {', '.join(BACKENDS)}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (quick budget: 1; full: torch's default)")
    p.add_argument("--wandb", action="store_true", help="log the table and plots to wandb")
    p.add_argument("--no-progress", action="store_true", help="disable progress bars")
    from diffgym.envs.user_task import add_user_task_arguments

    add_user_task_arguments(p)
    add_fid_argument(p)
    p.set_defaults(func=run_compare_cli)
    return p


def run_compare_cli(args: argparse.Namespace) -> int:
    """Run ``diffgym compare``: print the markdown table and a one-line verdict.

    Raises:
        ValueError: an unknown budget, or any bad argument of :func:`run_comparison`.
    """
    if args.budget not in BUDGETS:
        raise ValueError(f"unknown budget {args.budget!r}; allowed: {', '.join(BUDGETS)}")
    budget = BUDGETS[args.budget]
    threads = args.threads if args.threads is not None else budget.threads
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    from diffgym.envs.user_task import user_task_overrides

    task_name, task_overrides = user_task_overrides(args.task, args)
    out = args.out if args.out is not None else Path("runs/compare") / f"{task_name}-{args.budget}"
    try:
        result = run_comparison(
            task_name,
            task_overrides=task_overrides or None,
            agents=args.agents,
            divergences=args.divergences,
            seeds=tuple(args.seeds) if args.seeds is not None else budget.seeds,
            irl=args.irl,
            timesteps=args.timesteps if args.timesteps is not None else budget.timesteps,
            n_eval=args.n_eval if args.n_eval is not None else budget.n_eval,
            grid_families=args.families,
            grid_points=args.grid_points or budget.grid_points,
            out_dir=out,
            backend=args.backend,
            device=args.device,
            progress=not args.no_progress,
            wandb=args.wandb,
            overhead_repeats=budget.overhead_repeats,
            fid_weights=args.fid_weights,
        )
    except ImportError as err:
        print(f"diffgym compare: error: {err}", file=sys.stderr)
        return 2
    print(result.to_markdown())
    print(f"wrote {out}/results.{{json,csv,md}} and PNGs in {result.seconds:.0f} s")
    return 0
