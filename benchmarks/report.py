"""Reporting of a comparison (design §5): its rows and result, the tables (markdown, CSV, JSON),
the plots, and wandb logging. :mod:`diffgym.benchmarks.compare` builds the rows."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffgym.agents.cost import Cost
from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS, SEARCH_SEED, finite_or_none
from diffgym.benchmarks.grid import GridResult
from diffgym.envs.io import atomic_write_json, atomic_write_text, rows_to_csv
from diffgym.envs.tasks import Task

__all__ = [
    "KNOB_FIELDS",
    "RESULTS_FORMAT",
    "ComparisonResult",
    "ComparisonRow",
    "aggregate",
    "mean_profile",
    "paired_interval",
    "paired_deltas",
    "per_run_deltas",
    "write_outputs",
    "log_wandb",
]

RESULTS_FORMAT = "diffgym-compare/1"
KNOB_FIELDS = ("churn", "guidance", "renoise", "step")
"""The :class:`~diffgym.envs.sampler.Knobs` fields recorded in a policy's action profile (with the
step knob, per base-grid level; ``step`` and ``renoise`` in base-grid levels)."""


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
        returns the differences, their mean and sample std (``nan`` when undefined). Several
        training runs with several evaluation seeds each give one difference per run
        (:func:`per_run_deltas`)."""
        reference = reference if reference is not None else self.best_grid_row()
        if reference is None:
            return [], math.nan, math.nan
        deltas = paired_deltas(row.per_seed, reference.per_seed, self.metric)
        mean, std, _ = paired_interval(deltas)
        return deltas, mean, std

    def learned_rows(self) -> list[ComparisonRow]:
        return [r for r in self.rows if r.kind == "learned"]

    def quality_call(self) -> tuple[str, ComparisonRow | None, ComparisonRow | None]:
        """Who wins on the primary metric: the best learned row (by its mean) against the best
        grid row (:meth:`best_grid_row`), decided on the paired per-seed differences
        (:meth:`paired_delta`, common random numbers).

        Returns ``(call, learned_row, grid_row)`` where ``call`` is

        * ``"learned"``: the learned sampler is better and the 95 % Student-t interval of the
          mean paired difference (``mean ± t_{0.975, n-1} std / sqrt(n)``) excludes 0;
        * ``"grid"``: the grid point is better, interval excluding 0;
        * ``"tie"``: the interval contains 0 (no resolved difference);
        * ``"unresolved"``: fewer than 2 paired seeds (no interval);
        * ``"none"``: no grid row or no learned row to compare.
        """
        grid_row = self.best_grid_row()
        learned = [r for r in self.learned_rows() if not math.isnan(self._key(r))]
        if grid_row is None or not learned:
            return "none", None, grid_row
        best = min(learned, key=self._key)
        deltas = self.paired_delta(best, grid_row)[0]
        mean, std, half = paired_interval(deltas)
        if len(deltas) < 2 or math.isnan(mean) or math.isnan(std):
            return "unresolved", best, grid_row
        if abs(mean) <= half:
            return "tie", best, grid_row
        learned_better = mean < 0 if self.direction == "min" else mean > 0
        return ("learned" if learned_better else "grid"), best, grid_row

    def verdict(self) -> str:
        """One plain line, computed from the rows: who wins on the primary metric
        (:meth:`quality_call`: the best learned row against the best grid row, paired on the same
        seeds), and what each cost to obtain, in denoiser evaluations actually run (NFE: every
        row the denoiser and guide evaluated) and in wall-clock, measured in this run: the full
        grid (every point's sampling and scoring) against the learned row (every training run,
        the temperature selection and the evaluations)."""
        call, best, grid_row = self.quality_call()
        if best is None or grid_row is None:
            return "verdict: nothing to compare (no grid row or no learned row)"
        m = self.metric
        arrow = "lower" if self.direction == "min" else "higher"
        lm, gm = best.metrics[m], grid_row.metrics[m]
        ls, gs = best.metrics_std.get(m, math.nan), grid_row.metrics_std.get(m, math.nan)
        deltas, d_mean, d_std = self.paired_delta(best, grid_row)
        n = len(deltas)
        points = len(self.grid.points) - (self.grid.default is not None)
        learned_name = f"the learned sampler ({best.method})"
        grid_name = (f"the best grid point ({grid_row.method}, best of {points} points on the "
                     "search seed)")
        if call == "learned":
            head = f"{learned_name} WINS on quality against {grid_name}"
        elif call == "grid":
            head = f"{grid_name} WINS on quality; {learned_name} LOSES"
        elif call == "tie":
            head = f"TIE on quality: {learned_name} and {grid_name} are not resolved apart"
        else:
            head = (f"UNRESOLVED on quality: {learned_name} vs {grid_name} on one seed only "
                    "(no paired interval)")
        if n >= 2:
            half = paired_interval(deltas)[2]
            interval = (f", 95 % interval [{d_mean - half:+.3g}, {d_mean + half:+.3g}] "
                        f"{'contains' if call == 'tie' else 'excludes'} 0")
        else:
            interval = ""
        quality = (
            f"Quality: {m} ({arrow} is better) learned {_pm(lm, ls)} vs grid {_pm(gm, gs)}; "
            f"paired difference learned - grid "
            f"{_pm(d_mean, d_std)} over {n} {_pairs_of(best, n)}{interval}"
        )
        g_cost, l_cost = self.grid_cost, best.cost
        runs = f"{best.runs} training run{'s' if best.runs != 1 else ''}"

        def compared(nfe: float, seconds: float) -> str:
            return (f"{_times(nfe, g_cost.nfe, 'fewer NFE', 'more NFE')} and "
                    f"{_times(seconds, g_cost.total_seconds, 'less', 'more')} wall-clock")

        cost = (
            f"Cost to obtain (denoiser evaluations counted, wall-clock timed as each part ran): "
            f"learned {l_cost.nfe:,} NFE and {_secs(l_cost.total_seconds)} s ({runs}, "
            f"{'their' if best.runs != 1 else 'its'} "
            f"{'first ' if len(best.per_seed) > best.runs else ''}evaluation"
            f"{'s' if best.runs != 1 else ''} included) vs the full grid {g_cost.nfe:,} NFE and "
            f"{_secs(g_cost.total_seconds)} s: the learned sampler used "
            f"{compared(l_cost.nfe, l_cost.total_seconds)}"
        )
        if best.runs > 1:
            cost += (f" (one training run: "
                     f"{compared(l_cost.nfe / best.runs, l_cost.total_seconds / best.runs)})")
        return f"verdict: {head}. {quality}. {cost}."

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
        return rows_to_csv(self.table_rows())

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
            f"evaluation seeds (a learned row: over its runs' evaluations). Full grid: "
            f"{len(self.grid.points) - (self.grid.default is not None)} points, "
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
        return finite_or_none(
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
                "quality_winner": self.quality_call()[0],
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


MEAN_ACTION = "mean"
"""The inference candidate that samples with the policy's mean action at tau = 1
(:class:`~diffgym.agents.policy_sampling.PolicySampler` ``mean_action=True``)."""


RESHAPE_KEYS = {"f": "guidance_factor", "cut": "guidance_max_sigma"}
"""The guidance reshapings an inference rule may carry after ``:`` (``mean:f=2,cut=1``), as
:class:`~diffgym.agents.policy_sampling.PolicySampler` arguments."""


SCHEDULE_KEYS = {"smin": "sigma_min"}
"""The schedule changes an inference rule may carry after ``:``, after its guidance reshapings
(``mean:cut=1,smin=0.3``), as :class:`~diffgym.envs.tasks.Task` fields: the policy samples
the task's schedule with that field replaced (:func:`rule_schedule`; RESULTS §51)."""


INFERENCE_RULES_ALLOWED = (
    f"greedy, {MEAN_ACTION}, or a temperature (a finite number > 0), each optionally with "
    f"reshapings after ':' (e.g. {MEAN_ACTION}:f=2,cut=1,smin=0.3: f >= 0 scales w - 1, cut > 0 "
    f"leaves steps above that sigma unguided, smin > 0 ends the schedule at that sigma_min)")
"""What an inference rule may be (error messages of
:func:`~diffgym.benchmarks.runs.check_inference_candidates`)."""


def plain_rule(v: Any) -> float | str | None:
    """An inference rule without reshapings: ``None`` or ``"greedy"`` -> ``None``, ``"mean"``,
    or a temperature (a finite number > 0, or its text) -> ``float``; ValueError otherwise."""
    if v is None or v == "greedy":
        return None
    if v == MEAN_ACTION:
        return MEAN_ACTION
    try:
        tau = float(v) if not isinstance(v, bool) else math.nan
    except (TypeError, ValueError):
        tau = math.nan
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"unknown inference candidate {v!r}; allowed: {INFERENCE_RULES_ALLOWED}")
    return tau


def split_rule(tau: float | str | None) -> tuple[float | str | None, dict[str, float]]:
    """An inference rule as ``(base rule, PolicySampler guidance arguments)``: ``"mean:f=2,cut=1"``
    -> ``("mean", {"guidance_factor": 2.0, "guidance_max_sigma": 1.0})``; a plain rule has no
    arguments. Rules are normalised by
    :func:`~diffgym.benchmarks.runs.check_inference_candidates` (which names bad ones)."""
    if not (isinstance(tau, str) and ":" in tau):
        return tau, {}
    base, spec = tau.split(":", 1)
    value = plain_rule(base)
    kwargs = {}
    for item in spec.split(","):
        key, _, number = item.partition("=")
        if key in RESHAPE_KEYS:  # schedule keys: rule_schedule
            kwargs[RESHAPE_KEYS[key]] = float(number)
    return value, kwargs


def rule_schedule(tau: float | str | None) -> dict[str, float]:
    """The :class:`~diffgym.envs.tasks.Task` fields an inference rule replaces
    (:data:`SCHEDULE_KEYS`): ``"mean:cut=1,smin=0.3"`` -> ``{"sigma_min": 0.3}``; ``{}`` for
    a rule without them."""
    if not (isinstance(tau, str) and ":" in tau):
        return {}
    out = {}
    for item in tau.split(":", 1)[1].split(","):
        key, _, number = item.partition("=")
        if key in SCHEDULE_KEYS:
            out[SCHEDULE_KEYS[key]] = float(number)
    return out


def tau_name(tau: float | str | None) -> str:
    """A learned run's inference rule by name: ``greedy`` (None), ``mean`` or ``τ=<tau>``; a
    rule with guidance reshapings adds them (``mean f=2,cut=1``)."""
    if isinstance(tau, str) and ":" in tau:
        return f"{tau_name(split_rule(tau)[0])} {tau.split(':', 1)[1]}"
    return "greedy" if tau is None else MEAN_ACTION if tau == MEAN_ACTION else f"τ={tau:g}"


def _ratio_pair(total: float | None, per_run: float | None) -> str:
    """``"5.5× (16.6×)"``: the ratio over all runs, and per run."""
    if total is None:
        return ""
    return f"{_ratio(total)} ({_ratio(per_run)})"


def _times(learned: float, grid: float, fewer: str, more: str) -> str:
    """``"3.2× fewer NFE"`` or ``"1.5× more NFE"``: the learned cost against the grid's."""
    if not (learned > 0 and grid > 0) or math.isnan(learned) or math.isnan(grid):
        return f"? {more} (a cost is zero or unknown)"
    if learned <= grid:
        return f"{grid / learned:.3g}× {fewer}"
    return f"{learned / grid:.3g}× {more}"


_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df >= 1`` degrees of freedom (the half-width
    factor of a two-sided 95 % interval); beyond 10 degrees of freedom the value for 10 (2.228),
    which is conservative."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    return _T_975[min(df, len(_T_975)) - 1]


def _secs(seconds: float) -> str:
    """Seconds for the verdict: whole seconds from 10 s, two significant digits below."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2g}"


def _pairs_of(row: ComparisonRow, n: int) -> str:
    """What the ``n`` paired differences of ``row`` are: seeds, or training runs when several
    runs were each evaluated on several seeds (:func:`per_run_deltas`)."""
    if row.runs > 1 and len(row.per_seed) > row.runs and n == row.runs:
        return f"training run{'s' if n != 1 else ''} (mean over each run's seeds)"
    return f"seed{'s' if n != 1 else ''}"


def paired_interval(deltas: Sequence[float]) -> tuple[float, float, float]:
    """Mean, sample std and 95 % Student-t half-width (``t_{0.975, n-1} std / sqrt(n)``) of
    paired differences; the mean is ``nan`` for none, the std and half-width for fewer than 2."""
    n = len(deltas)
    mean = statistics.fmean(deltas) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    std = statistics.stdev(deltas)
    return mean, std, t_quantile_975(n - 1) * std / math.sqrt(n)


def paired_deltas(
    per_seed: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]], metric: str
) -> list[float]:
    """``metric`` of the evaluations ``per_seed`` minus ``reference``'s on each shared evaluation
    seed (``nan`` where a value is missing), one per run when several runs were each evaluated
    on several seeds (:func:`per_run_deltas`). The entries are a row's ``per_seed`` records
    (``eval_seed``, ``metrics``, and ``train_seed`` for a learned row), as in ``results.json``."""

    def by_seed(entries: Sequence[Mapping[str, Any]]) -> dict[int, float]:
        out = {}
        for s in entries:
            v = s["metrics"].get(metric)
            out[int(s["eval_seed"])] = math.nan if v is None else float(v)
        return out

    a, b = by_seed(per_seed), by_seed(reference)
    run_of = {int(s["eval_seed"]): s.get("train_seed") for s in per_seed}
    seeds = [s for s in a if s in b]
    return per_run_deltas([a[s] - b[s] for s in seeds], [run_of[s] for s in seeds])


def per_run_deltas(deltas: Sequence[float], runs: Sequence[Any]) -> list[float]:
    """The paired differences to test, ``deltas[i]`` measured on an evaluation of training run
    ``runs[i]`` (``None`` for a fixed sampler): one per evaluation, except when several runs were
    each evaluated on several seeds (``eval_repeats``), then one per run, the mean over its seeds.
    A run's evaluations share its training noise, so pooling them as independent pairs would
    narrow the interval; one run on several seeds keeps every pair (its sampling noise)."""
    groups: dict[Any, list[float]] = {}
    for run, d in zip(runs, deltas, strict=True):
        groups.setdefault(run, []).append(d)
    if 1 < len(groups) < len(deltas) and None not in groups:
        return [statistics.fmean(v) for v in groups.values()]
    return list(deltas)


def _ratio(r: float | None) -> str:
    return "" if r is None or math.isnan(r) else f"{r:.3g}×"


def aggregate(values: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample std (``nan`` for one value) of each key over ``values``."""
    keys = list(dict.fromkeys(k for v in values for k in v))
    mean, std = {}, {}
    for k in keys:
        xs = [math.nan if v.get(k) is None else float(v[k]) for v in values if k in v]
        mean[k] = float(statistics.fmean(xs)) if xs else math.nan
        std[k] = float(statistics.stdev(xs)) if len(xs) >= 2 else math.nan
    return mean, std


def mean_profile(profiles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
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


def write_outputs(
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


def log_wandb(result: ComparisonResult, out: Path | None) -> None:
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
        config=finite_or_none(result.settings),
    )
    try:
        rows = result.table_rows()
        columns = list(rows[0])
        table = wandb.Table(
            columns=columns,
            data=[[finite_or_none(r[c]) if r[c] is not None else None for c in columns]
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
            run.summary[f"{r.method}/cost_ratio_nfe"] = finite_or_none(r.cost_ratio_nfe)
    finally:
        run.finish()
