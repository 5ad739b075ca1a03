"""Per-task outcomes of a suite and their aggregation per learned method (the rules of
:mod:`diffgym.benchmarks.suite`'s docstring): :class:`MethodOutcome` from one finished
comparison, :class:`MethodSummary` over the tasks, and the table formatting they share."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diffgym.benchmarks.report import MEAN_ACTION, ComparisonResult, split_rule, tau_name

__all__ = [
    "MODE_METRIC",
    "TARGETS",
    "MethodOutcome",
    "MethodSummary",
    "outcomes_from_comparison",
    "reached",
    "summarize",
]

MODE_METRIC = "mode_tv"
"""The mode-mass metric compared against the default sampler."""
TARGETS = {"reached": 0.80, "mode_tv": 0.90, "cost_ratio_nfe": 10.0}
"""The suite's targets: fraction of tasks reaching the best grid point, fraction with mode TV at
or below the default's, median full-grid / learned NFE ratio (all training runs of a row)."""
TAU1 = tau_name(1.0)


# --------------------------------------------------------------------------------------------
# Per-task outcomes and their aggregation
# --------------------------------------------------------------------------------------------


def reached(mean: float, std: float, direction: str = "min") -> bool | None:
    """The issue's rule: learned - best grid point, signed so that positive is worse, is at most
    ``+1 std`` of the pairing (``std`` undefined, one pair: at most 0); ``None`` if ``mean`` is
    undefined."""
    if mean is None or math.isnan(mean):
        return None
    worse = mean if direction == "min" else -mean
    allowance = std if std is not None and math.isfinite(std) else 0.0
    return worse <= allowance


def _ratio(num: float, den: float) -> float:
    return num / den if den and math.isfinite(den) and den > 0 else math.nan


@dataclass(frozen=True)
class MethodOutcome:
    """One learned method on one task (see the module docstring for each rule).

    Attributes:
        task_seed, method; metric and direction: the task's headline metric.
        learned, best_grid, default: mean headline metric over the evaluation seeds;
            ``grid_method``: the best grid row (picked on the search seed).
        deltas, delta_mean, delta_std: paired learned - best grid differences.
        reached: :func:`reached` of ``delta_mean``, ``delta_std``.
        mode_tv_learned, mode_tv_default, mode_tv_delta_mean, mode_tv_delta_std: mode TV means
            and the paired learned - default difference; ``mode_tv_ok``: its mean ``<= 0``.
        runs: training runs in the row; learned_nfe, grid_nfe, learned_seconds, grid_seconds:
            costs to obtain the row and the full grid.
        tau1_minus_greedy: mean over runs of the headline metric at tau = 1 minus greedy on the
            search seed (signed: positive is worse); tau1_runs: runs that chose tau = 1;
            default_runs: runs whose guarded inference (``--inference-guard``) is the default
            sampler; mean_runs: runs that chose the mean action (``--inference-candidates``),
            with or without guidance reshapings (``mean:f=2,cut=1``).
        default_reached, grid_mode_tv_ok: the same two rules applied to the task's default
            sampler (default - best grid point) and best grid point (its mode TV - default's):
            what no learning and the grid itself score on the task (the same for every method).
    """

    task_seed: int
    method: str
    metric: str
    direction: str
    learned: float
    best_grid: float
    default: float
    grid_method: str | None
    deltas: tuple[float, ...]
    delta_mean: float
    delta_std: float
    reached: bool | None
    mode_tv_learned: float = math.nan
    mode_tv_default: float = math.nan
    mode_tv_delta_mean: float = math.nan
    mode_tv_delta_std: float = math.nan
    mode_tv_ok: bool | None = None
    runs: int = 1
    learned_nfe: float = math.nan
    grid_nfe: float = math.nan
    learned_seconds: float = math.nan
    grid_seconds: float = math.nan
    tau1_minus_greedy: float = math.nan
    tau1_runs: int = 0
    default_runs: int = 0
    mean_runs: int = 0
    default_reached: bool | None = None
    grid_mode_tv_ok: bool | None = None

    @property
    def ratio_nfe(self) -> float:
        """Full grid / learned NFE, all the row's training runs."""
        return _ratio(self.grid_nfe, self.learned_nfe)

    @property
    def ratio_seconds(self) -> float:
        return _ratio(self.grid_seconds, self.learned_seconds)

    @property
    def ratio_nfe_per_run(self) -> float:
        """Full grid / learned NFE per training run."""
        return self.ratio_nfe * self.runs

    @property
    def ratio_seconds_per_run(self) -> float:
        return self.ratio_seconds * self.runs

    def to_row(self, task: str) -> dict[str, Any]:
        """Flat CSV row."""
        m = self.metric
        return {
            "task": task, "task_seed": self.task_seed, "method": self.method, "metric": m,
            f"learned_{m}": self.learned, f"best_grid_{m}": self.best_grid,
            f"default_{m}": self.default, "grid_method": self.grid_method,
            "pairs": len(self.deltas), "delta_mean": self.delta_mean,
            "delta_std": self.delta_std, "reached": self.reached,
            "mode_tv_learned": self.mode_tv_learned, "mode_tv_default": self.mode_tv_default,
            "mode_tv_delta_mean": self.mode_tv_delta_mean,
            "mode_tv_delta_std": self.mode_tv_delta_std, "mode_tv_le_default": self.mode_tv_ok,
            "runs": self.runs, "learned_nfe": self.learned_nfe, "grid_nfe": self.grid_nfe,
            "ratio_nfe": self.ratio_nfe, "ratio_nfe_per_run": self.ratio_nfe_per_run,
            "learned_seconds": self.learned_seconds, "grid_seconds": self.grid_seconds,
            "ratio_seconds": self.ratio_seconds,
            "ratio_seconds_per_run": self.ratio_seconds_per_run,
            "tau1_minus_greedy": self.tau1_minus_greedy, "tau1_runs": self.tau1_runs,
            "default_runs": self.default_runs, "mean_runs": self.mean_runs,
            "default_reached": self.default_reached,
            "grid_mode_tv_le_default": self.grid_mode_tv_ok,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "deltas": list(self.deltas),
                "ratio_nfe": self.ratio_nfe, "ratio_nfe_per_run": self.ratio_nfe_per_run,
                "ratio_seconds": self.ratio_seconds,
                "ratio_seconds_per_run": self.ratio_seconds_per_run}


def _paired(result: ComparisonResult, row, reference, metric: str) -> tuple[list[float], float,
                                                                            float]:
    """``ComparisonResult.paired_delta`` on ``metric`` (the result's own metric otherwise)."""
    if metric == result.metric:
        return result.paired_delta(row, reference)
    return dataclasses.replace(result, metric=metric).paired_delta(row, reference)


def outcomes_from_comparison(result: ComparisonResult, task_seed: int) -> list[MethodOutcome]:
    """One :class:`MethodOutcome` per learned row of a finished comparison."""
    metric, direction = result.metric, result.direction
    grid_row = result.best_grid_row()
    default = next((r for r in result.rows if r.kind == "default"), None)
    sign = 1.0 if direction == "min" else -1.0
    reference: dict[str, Any] = {}
    if default is not None and grid_row is not None:
        _, d_mean, d_std = result.paired_delta(default, grid_row)
        reference["default_reached"] = reached(d_mean, d_std, direction)
        if MODE_METRIC in grid_row.metrics and MODE_METRIC in default.metrics:
            g_mean = _paired(result, grid_row, default, MODE_METRIC)[1]
            reference["grid_mode_tv_ok"] = None if math.isnan(g_mean) else bool(g_mean <= 0.0)
    out = []
    for row in result.learned_rows():
        deltas, mean, std = result.paired_delta(row, grid_row)
        mode: dict[str, Any] = {}
        if default is not None and MODE_METRIC in row.metrics and MODE_METRIC in default.metrics:
            m_deltas, m_mean, m_std = _paired(result, row, default, MODE_METRIC)
            mode = {
                "mode_tv_learned": row.metrics[MODE_METRIC],
                "mode_tv_default": default.metrics[MODE_METRIC],
                "mode_tv_delta_mean": m_mean,
                "mode_tv_delta_std": m_std,
                "mode_tv_ok": None if math.isnan(m_mean) else bool(m_mean <= 0.0),
            }
        runs = row.per_seed[::int(result.settings.get("eval_repeats", 1))]  # one per run
        tau_diffs = [
            sign * (float(s["selection"][TAU1]) - float(s["selection"]["greedy"]))
            for s in runs
            if s.get("selection", {}).get(TAU1) is not None
            and s["selection"].get("greedy") is not None
        ]
        out.append(MethodOutcome(
            task_seed=task_seed,
            method=row.method,
            metric=metric,
            direction=direction,
            learned=row.metrics.get(metric, math.nan),
            best_grid=math.nan if grid_row is None else grid_row.metrics.get(metric, math.nan),
            default=math.nan if default is None else default.metrics.get(metric, math.nan),
            grid_method=None if grid_row is None else grid_row.method,
            deltas=tuple(float(d) for d in deltas),
            delta_mean=mean,
            delta_std=std,
            reached=reached(mean, std, direction),
            runs=row.runs,
            learned_nfe=float(row.cost.nfe),
            grid_nfe=float(result.grid_cost.nfe),
            learned_seconds=row.cost.total_seconds,
            grid_seconds=result.grid_cost.total_seconds,
            tau1_minus_greedy=statistics.fmean(tau_diffs) if tau_diffs else math.nan,
            tau1_runs=sum(1 for s in runs if s.get("temperature") == 1.0),
            default_runs=sum(1 for s in runs if s.get("inference") == "default"),
            mean_runs=sum(1 for s in runs if split_rule(s.get("temperature"))[0] == MEAN_ACTION),
            **mode, **reference,
        ))
    return out


def _fraction(flags: Sequence[bool | None]) -> tuple[int, int, float]:
    """``(true, defined, true / defined)`` over the defined flags."""
    defined = [f for f in flags if f is not None]
    k = sum(bool(f) for f in defined)
    return k, len(defined), (k / len(defined) if defined else math.nan)


def _median_min(values: Sequence[float]) -> tuple[float, float]:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    return (statistics.median(xs), min(xs)) if xs else (math.nan, math.nan)


@dataclass(frozen=True)
class MethodSummary:
    """One learned method over the suite's tasks (fractions over the tasks where defined)."""

    method: str
    tasks: int
    reached: int
    reached_defined: int
    mode_tv_ok: int
    mode_tv_defined: int
    ratio_nfe_median: float
    ratio_nfe_min: float
    ratio_nfe_per_run_median: float
    ratio_nfe_per_run_min: float
    ratio_seconds_median: float
    ratio_seconds_min: float
    tau1_minus_greedy_mean: float
    tau1_no_worse: int
    tau1_defined: int
    tau1_runs: int
    runs: int
    default_runs: int = 0
    mean_runs: int = 0

    @property
    def frac_reached(self) -> float:
        return self.reached / self.reached_defined if self.reached_defined else math.nan

    @property
    def frac_mode_tv_ok(self) -> float:
        return self.mode_tv_ok / self.mode_tv_defined if self.mode_tv_defined else math.nan

    def targets_met(self) -> dict[str, bool]:
        """Each target of :data:`TARGETS` (an undefined value does not meet it)."""
        return {
            "reached": self.frac_reached >= TARGETS["reached"],
            "mode_tv": self.frac_mode_tv_ok >= TARGETS["mode_tv"],
            "cost_ratio_nfe": self.ratio_nfe_median >= TARGETS["cost_ratio_nfe"],
        }

    def verdict(self) -> str:
        """One line against the targets."""
        met = self.targets_met()
        word = {True: "met", False: "MISSED"}
        return (
            f"{self.method}: reached the best grid point on {self.reached}/{self.reached_defined}"
            f" tasks ({_pct(self.frac_reached)}; target >= {_pct(TARGETS['reached'])}: "
            f"{word[met['reached']]}); mode TV <= default on {self.mode_tv_ok}/"
            f"{self.mode_tv_defined} ({_pct(self.frac_mode_tv_ok)}; target >= "
            f"{_pct(TARGETS['mode_tv'])}: {word[met['mode_tv']]}); full grid / learned NFE median "
            f"{_x(self.ratio_nfe_median)} (min {_x(self.ratio_nfe_min)}; per training run median "
            f"{_x(self.ratio_nfe_per_run_median)}; target >= {TARGETS['cost_ratio_nfe']:g}x: "
            f"{word[met['cost_ratio_nfe']]}) -> {sum(met.values())}/3 targets met"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "frac_reached": self.frac_reached,
                "frac_mode_tv_ok": self.frac_mode_tv_ok, "targets_met": self.targets_met(),
                "verdict": self.verdict()}


def summarize(outcomes: Sequence[MethodOutcome]) -> dict[str, MethodSummary]:
    """Aggregate per method, in the order methods first appear."""
    out = {}
    for method in dict.fromkeys(o.method for o in outcomes):
        mine = [o for o in outcomes if o.method == method]
        k_r, n_r, _ = _fraction([o.reached for o in mine])
        k_m, n_m, _ = _fraction([o.mode_tv_ok for o in mine])
        taus = [o.tau1_minus_greedy for o in mine if math.isfinite(o.tau1_minus_greedy)]
        nfe = _median_min([o.ratio_nfe for o in mine])
        nfe_run = _median_min([o.ratio_nfe_per_run for o in mine])
        sec = _median_min([o.ratio_seconds for o in mine])
        out[method] = MethodSummary(
            method=method, tasks=len(mine), reached=k_r, reached_defined=n_r,
            mode_tv_ok=k_m, mode_tv_defined=n_m,
            ratio_nfe_median=nfe[0], ratio_nfe_min=nfe[1],
            ratio_nfe_per_run_median=nfe_run[0], ratio_nfe_per_run_min=nfe_run[1],
            ratio_seconds_median=sec[0], ratio_seconds_min=sec[1],
            tau1_minus_greedy_mean=statistics.fmean(taus) if taus else math.nan,
            tau1_no_worse=sum(t <= 0 for t in taus), tau1_defined=len(taus),
            tau1_runs=sum(o.tau1_runs for o in mine), runs=sum(o.runs for o in mine),
            default_runs=sum(o.default_runs for o in mine),
            mean_runs=sum(o.mean_runs for o in mine),
        )
    return out


def _pct(f: float) -> str:
    return "n/a" if math.isnan(f) else f"{100 * f:.0f} %"


def _x(r: float) -> str:
    return "n/a" if r is None or math.isnan(r) else f"{r:.3g}x"


def _g(v: float, fmt: str = ".4g") -> str:
    return "nan" if v is None or math.isnan(v) else format(v, fmt)


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "nan"
    return f"{mean:+.3g}" if math.isnan(std) else f"{mean:+.3g} ± {std:.2g}"


def _flag(f: bool | None) -> str:
    return "n/a" if f is None else ("yes" if f else "**no**")
