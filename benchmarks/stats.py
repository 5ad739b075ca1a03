"""Aggregate statistics of an RL benchmark (Agarwal et al. 2021, "Deep Reinforcement Learning at the
Edge of the Statistical Precipice", NeurIPS; the estimators of the ``rliable`` package).

Every estimator takes a score matrix ``scores`` of shape ``(num_runs, num_tasks)``: ``scores[n, m]``
is the normalized score of run (seed) ``n`` on task ``m``. A benchmark passes one matrix per
method, ``{method: (num_runs, num_tasks)}``, as ``rliable`` does.

Point estimates:

* :func:`iqm`: the interquartile mean, the mean of the middle 50 % of all ``num_runs x num_tasks``
  scores (``scipy.stats.trim_mean(scores, 0.25, axis=None)``: ``floor(0.25 R M)`` scores cut at each
  end after sorting);
* :func:`mean_score`: the mean over tasks of the per-task mean over runs;
* :func:`median_score`: the median over tasks of the per-task mean over runs;
* :func:`optimality_gap`: ``gamma - mean(min(scores, gamma))``, how far the scores fall short of
  the threshold ``gamma`` (default 1: the best grid point); lower is better;
* :func:`probability_of_improvement`: ``P(X > Y)``, per task the Mann-Whitney statistic
  ``mean_{i,j} [x_i > y_j] + 0.5 [x_i = y_j]`` over all pairs of runs, averaged over tasks;
* :func:`performance_profile`: the fraction of all runs (on all tasks) whose score exceeds each
  ``tau`` of a grid (the "run-score distribution").

Interval estimates: stratified bootstrap, percentile method. A bootstrap replicate resamples the
runs of each task with replacement, independently per task (strata = tasks, the task set is kept);
the point estimator is applied to each of ``reps`` replicates, and the 95 % interval is the 2.5th
and 97.5th percentile of the replicates. For ``P(X > Y)`` the runs of ``X`` and of ``Y`` are
resampled independently (``rliable``'s ``StratifiedIndependentBootstrap``). The replicates come from
``numpy.random.default_rng(seed)``: a fixed seed gives the same intervals on every call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AGGREGATES",
    "DEFAULT_REPS",
    "MIN_GAIN_REL",
    "MIN_GAIN_STDS",
    "Interval",
    "TaskReference",
    "aggregate_intervals",
    "bootstrap_interval",
    "iqm",
    "mean_score",
    "median_score",
    "optimality_gap",
    "performance_profile",
    "performance_profile_interval",
    "probability_of_improvement",
    "probability_of_improvement_interval",
    "stratified_bootstrap",
    "task_reference",
]

DEFAULT_REPS = 2000
"""Bootstrap replicates of an interval (``rliable`` uses 2000 for profiles, 50000 for
aggregates; 2000 keeps the percentile's Monte-Carlo error under 0.01 of the interval here)."""
DEFAULT_CONFIDENCE = 0.95
_CHUNK = 256  # replicates evaluated at once (bounds the memory of the vectorised estimators)


# --------------------------------------------------------------------------------------------
# Point estimates; each accepts (num_runs, num_tasks) or a batch (reps, num_runs, num_tasks)
# --------------------------------------------------------------------------------------------


def _check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """``scores`` as a float array of shape ``(num_runs, num_tasks)``, finite, non-empty.

    Raises:
        ValueError: another shape, an empty axis, or a non-finite value.
    """
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(
            f"{name} must be a non-empty (num_runs, num_tasks) matrix, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def iqm(scores: np.ndarray) -> np.ndarray | float:
    """Interquartile mean of all scores: the 25 % trimmed mean over runs and tasks together.

    Args:
        scores: ``(num_runs, num_tasks)``, or ``(reps, num_runs, num_tasks)`` for a batch.

    Returns:
        A float, or ``(reps,)`` for a batch.
    """
    arr = np.asarray(scores, dtype=np.float64)
    flat = np.sort(arr.reshape(*arr.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    cut = int(0.25 * n)  # scipy.stats.trim_mean's rule: int(proportion * n) at each end
    out = flat[..., cut : n - cut].mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def mean_score(scores: np.ndarray) -> np.ndarray | float:
    """Mean over tasks of each task's mean score over runs (shapes as :func:`iqm`)."""
    out = np.asarray(scores, dtype=np.float64).mean(axis=-2).mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def median_score(scores: np.ndarray) -> np.ndarray | float:
    """Median over tasks of each task's mean score over runs (shapes as :func:`iqm`)."""
    out = np.median(np.asarray(scores, dtype=np.float64).mean(axis=-2), axis=-1)
    return float(out) if out.ndim == 0 else out


def optimality_gap(scores: np.ndarray, threshold: float = 1.0) -> np.ndarray | float:
    """``threshold - mean(min(scores, threshold))`` over runs and tasks; lower is better.

    Scores above ``threshold`` count as ``threshold``: beating the reference by a lot cannot
    hide a shortfall elsewhere. Shapes as :func:`iqm`.
    """
    arr = np.minimum(np.asarray(scores, dtype=np.float64), threshold)
    out = threshold - arr.reshape(*arr.shape[:-2], -1).mean(axis=-1)
    return float(out) if out.ndim == 0 else out


AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray | float]] = {
    "iqm": iqm,
    "mean": mean_score,
    "median": median_score,
    "optimality_gap": optimality_gap,
}
"""The aggregate estimators by name (``optimality_gap`` at threshold 1; lower is better)."""


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """``P(X > Y)``: per task, the probability that a run of ``X`` scores above a run of ``Y``
    (ties count one half; the Mann-Whitney U statistic over ``num_runs_x * num_runs_y``),
    averaged over tasks.

    Args:
        x: ``(num_runs_x, num_tasks)`` (or ``(reps, num_runs_x, num_tasks)``).
        y: ``(num_runs_y, num_tasks)`` (or ``(reps, num_runs_y, num_tasks)``), the same tasks.

    Returns:
        A float in ``[0, 1]`` (1: every run of X beats every run of Y on every task; 0.5 for
        identical score sets), or ``(reps,)`` for a batch.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # (..., runs_x, 1, tasks) against (..., 1, runs_y, tasks)
    xi, yj = x[..., :, None, :], y[..., None, :, :]
    pairs = (xi > yj) + 0.5 * (xi == yj)
    out = pairs.mean(axis=(-3, -2)).mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def performance_profile(scores: np.ndarray, taus: Sequence[float] | np.ndarray) -> np.ndarray:
    """Fraction of all scores (runs x tasks) strictly above each ``tau``.

    Args:
        scores: ``(num_runs, num_tasks)`` (or ``(reps, num_runs, num_tasks)``).
        taus: ``(K,)`` thresholds.

    Returns:
        ``(K,)`` (or ``(reps, K)``), non-increasing in ``tau``.
    """
    arr = np.asarray(scores, dtype=np.float64)
    flat = arr.reshape(*arr.shape[:-2], -1)
    t = np.asarray(taus, dtype=np.float64)
    return (flat[..., None, :] > t[:, None]).mean(axis=-1)


# --------------------------------------------------------------------------------------------
# Stratified bootstrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap confidence interval ``[low, high]``."""

    point: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.point:.3f} [{self.low:.3f}, {self.high:.3f}]"


def stratified_bootstrap(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` stratified resamples of ``scores``: each task's runs drawn with replacement,
    independently per task and per replicate.

    Args:
        scores: ``(num_runs, num_tasks)``.
        reps: replicates.
        rng: the generator (seeded by the caller).

    Returns:
        ``(reps, num_runs, num_tasks)``.
    """
    num_runs, num_tasks = scores.shape
    idx = rng.integers(0, num_runs, size=(reps, num_runs, num_tasks))
    return np.take_along_axis(np.broadcast_to(scores, idx.shape), idx, axis=1)


def _check_bootstrap(reps: int, confidence: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be an int >= 1, got {reps!r}")
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _percentiles(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of the replicates."""
    alpha = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(values, [alpha, 100.0 - alpha], axis=0)
    return lo, hi


def bootstrap_interval(
    scores: np.ndarray,
    estimator: Callable[[np.ndarray], np.ndarray | float],
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Point estimate of ``estimator`` and its stratified-bootstrap percentile interval.

    Args:
        scores: ``(num_runs, num_tasks)``.
        estimator: maps ``(reps, num_runs, num_tasks)`` to ``(reps,)`` (e.g. :func:`iqm`).
        reps, confidence: replicates and coverage.
        seed: seed of the resampling (the same seed gives the same interval).

    Raises:
        ValueError: bad scores, ``reps < 1``, ``confidence`` outside ``(0, 1)``.
    """
    arr = _check_scores(scores)
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [
            np.asarray(estimator(stratified_bootstrap(arr, min(_CHUNK, reps - s), rng)))
            for s in range(0, reps, _CHUNK)
        ]
    )
    lo, hi = _percentiles(values, confidence)
    return Interval(float(estimator(arr)), float(lo), float(hi))


def aggregate_intervals(
    score_dict: Mapping[str, np.ndarray],
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    threshold: float = 1.0,
) -> dict[str, dict[str, Interval]]:
    """IQM, mean, median and optimality gap (at ``threshold``) of each method, with intervals.

    Args:
        score_dict: ``{method: (num_runs, num_tasks)}``.
        reps, confidence, seed: as in :func:`bootstrap_interval` (every method and estimator
            uses ``seed``: the intervals do not depend on which other methods are present).
        threshold: the optimality gap's threshold.

    Returns:
        ``{method: {"iqm" | "mean" | "median" | "optimality_gap": Interval}}``.
    """
    estimators = dict(AGGREGATES)
    estimators["optimality_gap"] = lambda s: optimality_gap(s, threshold)
    return {
        method: {
            name: bootstrap_interval(scores, est, reps=reps, confidence=confidence, seed=seed)
            for name, est in estimators.items()
        }
        for method, scores in score_dict.items()
    }


def probability_of_improvement_interval(
    x: np.ndarray,
    y: np.ndarray,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """:func:`probability_of_improvement` of ``X`` over ``Y`` with a bootstrap interval (the runs
    of X and of Y resampled independently, within each task).

    Raises:
        ValueError: bad scores, different task counts, bad ``reps`` or ``confidence``.
    """
    x = _check_scores(x, "x")
    y = _check_scores(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same tasks, got shapes {x.shape} and {y.shape}")
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    values = []
    for s in range(0, reps, _CHUNK):
        k = min(_CHUNK, reps - s)
        values.append(
            probability_of_improvement(
                stratified_bootstrap(x, k, rng), stratified_bootstrap(y, k, rng)
            )
        )
    lo, hi = _percentiles(np.concatenate(values), confidence)
    return Interval(float(probability_of_improvement(x, y)), float(lo), float(hi))


def performance_profile_interval(
    scores: np.ndarray,
    taus: Sequence[float] | np.ndarray,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`performance_profile` with a pointwise bootstrap band.

    Returns:
        ``(profile, low, high)``, each ``(K,)``.
    """
    arr = _check_scores(scores)
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [
            performance_profile(stratified_bootstrap(arr, min(_CHUNK, reps - s), rng), taus)
            for s in range(0, reps, _CHUNK)
        ]
    )
    lo, hi = _percentiles(values, confidence)
    return performance_profile(arr, taus), lo, hi



# --------------------------------------------------------------------------------------------
# Normalized scores
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskReference:
    """The two reference samplers of a task on the evaluation seeds, and whether the task can
    normalize scores.

    Attributes:
        metric: the headline metric; direction: ``"min"`` or ``"max"``.
        default: ``{eval_seed: value}`` of the default sampler.
        grid: ``{eval_seed: value}`` of the best grid point.
        gain: mean over seeds of the grid's improvement over the default (``> 0``: the grid is
            better, in the metric's units, sign-adjusted).
        gain_std: sample std of that paired improvement over seeds (``nan`` with one seed).
        floor: the smallest gain that normalizes (see :func:`task_reference`).
        excluded: the gain is not above ``floor``: the task's normalized scores are undefined
            and it is left out of every aggregate.
    """

    metric: str
    direction: str
    default: dict[int, float]
    grid: dict[int, float]
    gain: float
    gain_std: float
    floor: float
    excluded: bool

    def normalize(self, value: float, eval_seed: int) -> float:
        """The normalized score of ``value`` measured on ``eval_seed`` (``nan`` if excluded)."""
        if self.excluded:
            return math.nan
        sign = 1.0 if self.direction == "min" else -1.0
        return sign * (self.default[eval_seed] - value) / self.gain

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "direction": self.direction,
            "default": {str(k): v for k, v in self.default.items()},
            "grid": {str(k): v for k, v in self.grid.items()},
            "gain": self.gain,
            "gain_std": self.gain_std,
            "floor": self.floor,
            "excluded": self.excluded,
        }


MIN_GAIN_STDS = 2.0
"""A task normalizes only when the grid's mean gain over the default exceeds this many paired
standard deviations of that gain over the evaluation seeds."""
MIN_GAIN_REL = 1e-3
"""... and exceeds this fraction of ``|m_default|`` (or 1e-12 when that is 0): the epsilon floor
that still applies with a single evaluation seed."""


def task_reference(
    metric: str,
    direction: str,
    default: Mapping[int, float],
    grid: Mapping[int, float],
    *,
    min_gain_stds: float = MIN_GAIN_STDS,
    min_gain_rel: float = MIN_GAIN_REL,
) -> TaskReference:
    """The normalization of a task from the default sampler and the best grid point, each
    measured on the same evaluation seeds (paired).

    The normalized score of a run evaluated on seed ``e`` with headline metric ``m`` is::

        s = sign * (m_default(e) - m) / gain,   gain = mean_e' sign * (m_default(e') - m_grid(e'))

    with ``sign = +1`` for a metric where lower is better, ``-1`` where higher is better: 0 is
    the default sampler on the same seed, 1 the best grid point's average improvement, above 1
    better than the grid. The gain is averaged over the seeds (not divided per seed) so that one
    seed where the grid happens to gain little does not blow up that seed's score.

    A task where the grid gains nothing over the default cannot normalize: it is *excluded*
    when ``gain <= max(min_gain_stds * gain_std, min_gain_rel * |mean m_default|)`` (the std
    term is dropped with a single seed), and reported as such.

    Raises:
        ValueError: an unknown direction; no shared seed; non-finite values.
    """
    if direction not in ("min", "max"):
        raise ValueError(f"unknown metric direction {direction!r}; allowed: min, max")
    seeds = [s for s in default if s in grid]
    if not seeds or len(seeds) != len(default) or len(seeds) != len(grid):
        raise ValueError(
            f"default and grid must be measured on the same evaluation seeds, got "
            f"{sorted(default)} and {sorted(grid)}"
        )
    d = np.array([default[s] for s in seeds], dtype=np.float64)
    g = np.array([grid[s] for s in seeds], dtype=np.float64)
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(g))):
        raise ValueError(f"reference values must be finite, got default {d}, grid {g}")
    sign = 1.0 if direction == "min" else -1.0
    gains = sign * (d - g)
    gain = float(gains.mean())
    gain_std = float(gains.std(ddof=1)) if len(seeds) > 1 else math.nan
    floor = max(min_gain_rel * abs(float(d.mean())), 1e-12)
    if len(seeds) > 1:
        floor = max(floor, min_gain_stds * gain_std)
    return TaskReference(
        metric=metric,
        direction=direction,
        default={int(s): float(default[s]) for s in seeds},
        grid={int(s): float(grid[s]) for s in seeds},
        gain=gain,
        gain_std=gain_std,
        floor=floor,
        excluded=not gain > floor,
    )

