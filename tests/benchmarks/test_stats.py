"""Tests of diffgym.benchmarks.stats: the aggregate estimators of Agarwal et al. 2021 on fixed
inputs (known values, bootstrap behaviour with a fixed seed), a cross-check against ``rliable``'s
point estimators when it is installed, and the normalized score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from diffgym.benchmarks.stats import (
    AGGREGATES,
    aggregate_intervals,
    bootstrap_interval,
    iqm,
    mean_score,
    median_score,
    optimality_gap,
    performance_profile,
    performance_profile_interval,
    probability_of_improvement,
    probability_of_improvement_interval,
    stratified_bootstrap,
    task_reference,
)

# --------------------------------------------------------------------------------------------
# point estimates
# --------------------------------------------------------------------------------------------


def test_iqm_of_fixed_arrays():
    # 0..7: a quarter (2 values) cut at each end -> mean(2, 3, 4, 5)
    assert iqm(np.arange(8.0).reshape(4, 2)) == 3.5
    # an outlier does not move the IQM, it moves the mean
    scores = np.array([[0.0, 1.0], [2.0, 100.0]])
    assert iqm(scores) == 1.5
    assert mean_score(scores) == pytest.approx(25.75)
    # scipy's definition on an odd count (n = 15, int(3.75) = 3 cut at each end)
    rng = np.random.default_rng(0)
    odd = rng.normal(size=(5, 3))
    assert iqm(odd) == pytest.approx(scipy.stats.trim_mean(odd, 0.25, axis=None))


def test_mean_median_and_optimality_gap_of_a_fixed_array():
    scores = np.array([[0.5, 2.0, 0.0], [1.0, 0.0, 0.2]])  # task means 0.75, 1.0, 0.1
    assert mean_score(scores) == pytest.approx((0.75 + 1.0 + 0.1) / 3)
    assert median_score(scores) == pytest.approx(0.75)
    # min(s, 1): 0.5 1 0 1 0 0.2 -> mean 0.45 -> gap 0.55
    assert optimality_gap(scores) == pytest.approx(0.55)
    assert optimality_gap(scores, threshold=0.5) == pytest.approx(0.5 - (0.5 * 3 + 0.2) / 6)
    assert optimality_gap(np.full((3, 2), 7.0)) == 0.0


def test_batched_estimators_match_one_at_a_time():
    rng = np.random.default_rng(1)
    batch = rng.normal(size=(6, 4, 3))
    for name, est in AGGREGATES.items():
        np.testing.assert_allclose(est(batch), [est(b) for b in batch], err_msg=name)


def test_probability_of_improvement_definitions():
    x = np.array([[3.0, 5.0], [4.0, 6.0]])
    y = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.5]])
    assert probability_of_improvement(x, y) == 1.0  # every X run beats every Y run
    assert probability_of_improvement(y, x) == 0.0
    assert probability_of_improvement(x, x) == 0.5  # identical sets
    assert probability_of_improvement(np.array([[1.0]]), np.array([[1.0]])) == 0.5  # a tie
    # 1 > 2 no, 1 > 0 yes, 3 > 2 yes, 3 > 0 yes -> 3/4
    assert probability_of_improvement(np.array([[1.0], [3.0]]), np.array([[2.0], [0.0]])) == 0.75
    # averaged over tasks: 1 on the first, 0 on the second
    two = probability_of_improvement(np.array([[2.0, 0.0]]), np.array([[1.0, 1.0]]))
    assert two == 0.5


def test_probability_of_improvement_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 4, size=(5, 3)).astype(float)  # ties included
    y = rng.integers(0, 4, size=(4, 3)).astype(float)
    expected = np.mean(
        [
            scipy.stats.mannwhitneyu(x[:, t], y[:, t], alternative="greater").statistic / 20
            for t in range(3)
        ]
    )
    assert probability_of_improvement(x, y) == pytest.approx(expected)


def test_performance_profile_of_a_fixed_array():
    scores = np.array([[0.0, 0.5], [1.0, 2.0]])
    taus = [-1.0, 0.0, 0.5, 1.0, 3.0]
    np.testing.assert_allclose(performance_profile(scores, taus), [1.0, 0.75, 0.5, 0.25, 0.0])


# --------------------------------------------------------------------------------------------
# stratified bootstrap
# --------------------------------------------------------------------------------------------


def test_stratified_bootstrap_resamples_runs_within_each_task():
    scores = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    boot = stratified_bootstrap(scores, 500, np.random.default_rng(0))
    assert boot.shape == (500, 3, 2)
    assert set(np.unique(boot[:, :, 0])) == {0.0, 1.0, 2.0}  # task 0 only ever sees its runs
    assert set(np.unique(boot[:, :, 1])) == {10.0, 11.0, 12.0}
    # the mean of a replicate stays within the strata: (0 + 10) / 2 .. (2 + 12) / 2
    means = mean_score(boot)
    assert means.min() >= 5.0 and means.max() <= 7.0


def test_bootstrap_interval_is_the_percentile_of_seeded_replicates():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(5, 4))
    ci = bootstrap_interval(scores, iqm, reps=200, seed=7)
    boot = stratified_bootstrap(scores, 200, np.random.default_rng(7))
    lo, hi = np.percentile(iqm(boot), [2.5, 97.5])
    assert (ci.point, ci.low, ci.high) == (iqm(scores), lo, hi)
    assert ci.low <= ci.point <= ci.high
    assert bootstrap_interval(scores, iqm, reps=200, seed=7) == ci  # fixed seed: same interval
    assert bootstrap_interval(scores, iqm, reps=200, seed=8) != ci
    # more replicates than one chunk still come from one seeded stream
    big = bootstrap_interval(scores, iqm, reps=1000, seed=7)
    assert big == bootstrap_interval(scores, iqm, reps=1000, seed=7)


def test_bootstrap_interval_of_two_runs_spans_the_resampling_distribution():
    # one task, runs {0, 1}: the resampled mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4,
    # so the 95 % percentile interval is [0, 1]
    ci = bootstrap_interval(np.array([[0.0], [1.0]]), mean_score, reps=2000, seed=0)
    assert (ci.point, ci.low, ci.high) == (0.5, 0.0, 1.0)
    # runs that agree within each task leave nothing to resample: a zero-width interval
    const = bootstrap_interval(np.array([[0.2, 0.8]] * 4), mean_score, reps=100)
    assert const.low == const.point == const.high == pytest.approx(0.5)


def test_aggregate_intervals_every_method_and_estimator():
    rng = np.random.default_rng(4)
    data = {"a": rng.normal(1, 0.1, size=(5, 3)), "b": rng.normal(0, 0.1, size=(5, 3))}
    out = aggregate_intervals(data, reps=300, threshold=1.0)
    assert set(out) == {"a", "b"}
    for method, cis in out.items():
        assert set(cis) == {"iqm", "mean", "median", "optimality_gap"}
        for name, ci in cis.items():
            assert ci.low <= ci.point <= ci.high, (method, name)
    assert out["a"]["iqm"].low > out["b"]["iqm"].high  # well separated: the CIs resolve it
    # a method's intervals do not depend on the other methods present
    assert aggregate_intervals({"a": data["a"]}, reps=300)["a"] == out["a"]


def test_probability_of_improvement_interval():
    x = np.array([[3.0, 5.0], [4.0, 6.0]])
    y = np.array([[0.0, 1.0], [1.0, 2.0]])
    ci = probability_of_improvement_interval(x, y, reps=200)
    assert (ci.point, ci.low, ci.high) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    ci = probability_of_improvement_interval(a, b, reps=300, seed=1)
    assert 0.0 <= ci.low <= ci.point <= ci.high <= 1.0
    assert ci == probability_of_improvement_interval(a, b, reps=300, seed=1)


def test_performance_profile_band():
    scores = np.array([[0.0, 0.5], [1.0, 2.0], [0.5, 1.5]])
    taus = np.linspace(-0.5, 2.5, 7)
    profile, lo, hi = performance_profile_interval(scores, taus, reps=300)
    np.testing.assert_allclose(profile, performance_profile(scores, taus))
    assert np.all(lo <= profile + 1e-12) and np.all(profile <= hi + 1e-12)
    assert np.all(np.diff(profile) <= 0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: bootstrap_interval(np.zeros(3), iqm), r"\(num_runs, num_tasks\)"),
        (lambda: bootstrap_interval(np.zeros((0, 2)), iqm), r"shape \(0, 2\)"),
        (lambda: bootstrap_interval(np.array([[np.nan]]), iqm), "must be finite"),
        (lambda: bootstrap_interval(np.zeros((2, 2)), iqm, reps=0), "reps must be an int"),
        (lambda: bootstrap_interval(np.zeros((2, 2)), iqm, confidence=1.5), r"confidence must"),
        (
            lambda: probability_of_improvement_interval(np.zeros((2, 2)), np.zeros((2, 3))),
            "same tasks",
        ),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_point_estimates_agree_with_rliable():
    metrics = pytest.importorskip("rliable.metrics")  # rliable's estimators need numpy + scipy
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, 4))
    y = rng.integers(0, 3, size=(7, 4)).astype(float)
    assert iqm(x) == pytest.approx(metrics.aggregate_iqm(x))
    assert mean_score(x) == pytest.approx(metrics.aggregate_mean(x))
    assert median_score(x) == pytest.approx(metrics.aggregate_median(x))
    assert optimality_gap(x) == pytest.approx(metrics.aggregate_optimality_gap(x, 1))
    assert probability_of_improvement(x, y) == pytest.approx(
        metrics.probability_of_improvement(x, y)
    )
    assert probability_of_improvement(y, y) == metrics.probability_of_improvement(y, y) == 0.5


# --------------------------------------------------------------------------------------------
# normalized score
# --------------------------------------------------------------------------------------------


def test_normalized_score_for_a_metric_where_lower_is_better():
    ref = task_reference("sw2", "min", {1: 1.0, 2: 1.2}, {1: 0.5, 2: 0.6})
    assert ref.gain == pytest.approx(0.55)  # mean of the paired gains 0.5, 0.6
    assert not ref.excluded
    assert ref.normalize(1.0, 1) == 0.0  # the default sampler on that seed
    assert ref.normalize(1.2, 2) == 0.0
    assert ref.normalize(0.5, 1) == pytest.approx(0.5 / 0.55)
    assert ref.normalize(1.0 - 0.55, 1) == pytest.approx(1.0)  # the grid's average gain
    assert ref.normalize(1.5, 1) < 0  # worse than the default
    # the grid's own scores average exactly 1
    assert np.mean([ref.normalize(ref.grid[s], s) for s in (1, 2)]) == pytest.approx(1.0)


def test_normalized_score_for_a_metric_where_higher_is_better():
    ref = task_reference("recall", "max", {1: 0.2, 2: 0.4}, {1: 0.6, 2: 0.8})
    assert ref.gain == pytest.approx(0.4)
    assert ref.normalize(0.2, 1) == 0.0
    assert ref.normalize(0.6, 1) == pytest.approx(1.0)
    assert ref.normalize(1.0, 2) == pytest.approx(1.5)
    assert ref.normalize(0.0, 1) == pytest.approx(-0.5)


def test_a_task_where_the_grid_gains_nothing_is_excluded():
    same = task_reference("sw2", "min", {1: 1.0, 2: 1.1}, {1: 1.0, 2: 1.1})
    assert same.excluded and same.gain == 0.0
    assert math.isnan(same.normalize(0.5, 1))
    # a mean gain inside twice the paired std over seeds
    noisy = task_reference("sw2", "min", {1: 1.0, 2: 1.0, 3: 1.0}, {1: 0.0, 2: 1.8, 3: 0.1})
    assert noisy.gain == pytest.approx(0.3667, abs=1e-3)
    assert noisy.excluded and noisy.floor == pytest.approx(2 * noisy.gain_std)
    # one seed: only the epsilon floor applies
    tiny = task_reference("sw2", "min", {1: 1.0}, {1: 1.0 - 1e-6})
    assert tiny.excluded and math.isnan(tiny.gain_std)
    assert not task_reference("sw2", "min", {1: 1.0}, {1: 0.9}).excluded
    # a grid worse than the default
    assert task_reference("mode_tv", "min", {1: 0.1, 2: 0.1}, {1: 0.2, 2: 0.3}).excluded


@pytest.mark.parametrize(
    "args, match",
    [
        (("sw2", "up", {1: 1.0}, {1: 0.5}), "unknown metric direction 'up'"),
        (("sw2", "min", {1: 1.0}, {2: 0.5}), "same evaluation seeds"),
        (("sw2", "min", {1: math.nan}, {1: 0.5}), "must be finite"),
    ],
)
def test_task_reference_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        task_reference(*args)
