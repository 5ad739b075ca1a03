"""Tests of diffgym.benchmarks.paired_guard: per-sample modes in records, the paired bootstrap of
a mode-TV difference, and the guard's allowance in standard errors (choose_inference, the
configs and the CLI)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffgym.benchmarks.paired_guard import (
    MODES_FIELD,
    check_guard_se,
    check_paired_task,
    decode_modes,
    encode_modes,
    guard_allowance,
    has_modes,
    paired_tv_difference,
    record_modes,
)

WEIGHTS = np.array([0.5, 0.3, 0.2])


def _tv(modes, w=WEIGHTS):
    p = np.bincount(modes, minlength=len(w)) / len(modes)
    return 0.5 * np.abs(p - w).sum()


def test_modes_round_trip_and_bad_input():
    modes = np.array([0, 2, 1, 255, 7])
    assert decode_modes(encode_modes(modes)).tolist() == modes.tolist()
    assert decode_modes(encode_modes(torch.tensor([3, 0]))).tolist() == [3, 0]
    with pytest.raises(ValueError, match=r"modes must be ints in \[0, 256\), got .* range "
                       r"\[0, 256\]"):
        encode_modes(np.array([0, 256]))
    with pytest.raises(ValueError, match=r"modes must be ints in \[0, 256\).*range \[-1, 1\]"):
        encode_modes(np.array([-1, 1]))
    with pytest.raises(ValueError, match=r"non-empty 1-D array, got shape \(2, 2\)"):
        encode_modes(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="modes must be ints"):
        encode_modes(np.array([0.5, 1.0]))


def test_the_difference_is_the_difference_of_the_two_mode_tvs_and_resamples_pairs():
    """The point value is TV(candidate) - TV(reference); the same modes give 0 with error 0; a
    candidate that moves samples into the over-represented mode is worse (positive); samples
    that keep their mode cancel in the pairing, so the error is smaller than for the same two
    mode counts drawn independently."""
    rng = np.random.default_rng(1)
    ref = rng.choice(3, size=4000, p=WEIGHTS)
    d, se = paired_tv_difference(ref, ref, WEIGHTS)
    assert d == 0.0 and se == 0.0
    cand = ref.copy()
    moved = np.flatnonzero(ref == 2)[:200]  # 200 samples of mode 2 go to mode 0 (already 1/2)
    cand[moved] = 0
    d, se = paired_tv_difference(cand, ref, WEIGHTS)
    assert d == pytest.approx(_tv(cand) - _tv(ref), abs=1e-12)
    assert d > 0 and 0 < se < d / 3  # 5 % of the samples moved: resolved
    # the same two count vectors without the pairing (the candidate's order shuffled)
    _, se_unpaired = paired_tv_difference(rng.permutation(cand), ref, WEIGHTS)
    assert se_unpaired > 1.3 * se  # (TV's kinks at the weights keep part of the noise)
    # deterministic (its own generator), and the error shrinks like 1 / sqrt(n)
    assert paired_tv_difference(cand, ref, WEIGHTS) == (d, se)
    big = np.tile(ref, 4), np.tile(cand, 4)
    _, se4 = paired_tv_difference(big[1], big[0], WEIGHTS)
    assert se4 == pytest.approx(se / 2, rel=0.15)
    # the weights are normalised: torch weights, unnormalised, give the same result
    assert paired_tv_difference(cand, ref, torch.tensor([5.0, 3.0, 2.0]))[0] == pytest.approx(d)


def test_paired_difference_rejects_bad_input():
    ok = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"1-D of one length >= 2 .* got shapes \(4,\) and "
                       r"\(3,\)"):
        paired_tv_difference(ok, ok[:3], WEIGHTS)
    with pytest.raises(ValueError, match=r"modes must be in \[0, 3\) for 3 weights, got range "
                       r"\[0, 3\]"):
        paired_tv_difference(np.array([0, 3, 1, 1]), ok, WEIGHTS)
    for bad in ([0.5, -0.1, 0.6], [0.0, 0.0, 0.0], [np.nan, 1.0, 1.0]):
        with pytest.raises(ValueError, match="weights must be a finite non-negative vector"):
            paired_tv_difference(ok, ok, np.array(bad))


def test_guard_allowance_is_z_standard_errors_and_needs_the_modes():
    rng = np.random.default_rng(2)
    ref = rng.choice(3, size=2000, p=WEIGHTS)
    cand = np.where(rng.random(2000) < 0.3, rng.choice(3, size=2000, p=WEIGHTS), ref)
    a, b = {MODES_FIELD: encode_modes(cand)}, {MODES_FIELD: encode_modes(ref)}
    _, se = paired_tv_difference(cand, ref, WEIGHTS)
    assert guard_allowance(a, b, WEIGHTS, 2.0) == pytest.approx(2 * se)
    assert guard_allowance(a, b, WEIGHTS, 0.0) == 0.0
    with pytest.raises(ValueError, match="the candidate's search-seed evaluation has no "
                       "per-sample modes"):
        guard_allowance({"metrics": {}}, b, WEIGHTS, 1.0)
    with pytest.raises(ValueError, match="the reference's search-seed evaluation has no"):
        guard_allowance(a, {"metrics": {}}, WEIGHTS, 1.0)


def test_record_modes_are_the_mode_assignment_of_a_mixture_task_only():
    from diffgym.benchmarks.metrics import mode_assignment, mode_mass_tv
    from diffgym.envs import make_task

    task = make_task("gmm2d")
    x = task.target.sample(500, torch.Generator().manual_seed(0), dtype=torch.float64)
    if isinstance(x, tuple):
        x = x[0]
    rec = record_modes(task, x)
    modes = decode_modes(rec[MODES_FIELD])
    assert modes.tolist() == mode_assignment(x, task.target).tolist()
    assert _tv(modes, task.target.weights.double().numpy()) == pytest.approx(
        mode_mass_tv(x, task.target), abs=1e-12)  # the modes mode TV counts
    cmix = make_task("cmix")
    assert has_modes(task) and not has_modes(cmix)
    assert record_modes(cmix, x) == {}
    check_paired_task(task, 1.0)
    check_paired_task(cmix, 0.0)
    with pytest.raises(ValueError, match="inference_guard_se needs a task scored with mixture "
                       "metrics .* task 'cmix' has metric suite 'conditional_mixture'"):
        check_paired_task(cmix, 1.0)


@pytest.mark.parametrize(("tv", "allow", "want"), [
    (0.047, 0.0, (None, True)),  # worse than the default's 0.045: the plain guard refuses it
    (0.047, 0.001, (None, True)),  # beyond its allowance
    (0.047, 0.002, ("mean", False)),  # within it
    (0.040, 0.0, ("mean", False)),  # better: chosen whatever the allowance
])
def test_choose_inference_widens_the_guard_by_each_candidates_allowance(tv, allow, want):
    from diffgym.benchmarks.runs import choose_inference

    selection = {"mean": {"metrics": {"sw2": 0.2, "mode_tv": tv}}}
    ref = {"sw2": 0.3, "mode_tv": 0.045}
    assert choose_inference(selection, "sw2", "min", "mode_tv", ref,
                            allowance={"mean": allow}) == want
    # the allowance never lets a candidate that does not beat the default's sw2 in
    slow = {"mean": {"metrics": {"sw2": 0.31, "mode_tv": 0.046}}}
    assert choose_inference(slow, "sw2", "min", "mode_tv", ref,
                            allowance={"mean": 1.0}) == (None, True)


def test_guard_se_config_cli_and_suite():
    from diffgym.benchmarks.compare import CompareConfig
    from diffgym.benchmarks.suite import SuiteConfig
    from diffgym.cli import build_parser

    assert check_guard_se(1, "mode_tv") == 1.0 and check_guard_se(0, None) == 0.0
    for bad in (-1.0, math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match="inference_guard_se must be a finite number >= 0, "
                           f"got {bad!r}"):
            CompareConfig(inference_guard="mode_tv", inference_guard_se=bad)
    for guard in (None, "sw2"):
        with pytest.raises(ValueError, match=f"inference_guard_se 1.5 needs --inference-guard "
                           f"mode_tv .* got guard {guard!r}"):
            CompareConfig(inference_guard=guard, inference_guard_se=1.5)
    assert CompareConfig().inference_guard_se == 0.0
    for cmd in (["compare", "--budget", "quick"], ["suite", "--task-seeds", "0"]):
        args = build_parser().parse_args([*cmd, "--inference-guard", "mode_tv",
                                          "--inference-guard-se", "1.5"])
        assert (args.inference_guard, args.inference_guard_se) == ("mode_tv", 1.5)
    suite = SuiteConfig(task_seeds=(0, 1), inference_guard="mode_tv", inference_guard_se=1.0)
    assert suite.compare_config(1).inference_guard_se == 1.0


def test_search_inference_gives_each_record_its_allowance_in_both_passes():
    """The allowance is computed from each search-seed record and widens the strict pass (a
    candidate) and the fallback pass (a fallback rule, on top of the tolerance)."""
    from types import SimpleNamespace

    from diffgym.benchmarks.runs import search_inference

    def rec(sw2, tv, slack):
        return {"metrics": {"sw2": sw2, "mode_tv": tv}, "cost": {"nfe": 1}, "slack": slack}

    run = SimpleNamespace(round=1)
    ref = {"sw2": 0.3, "mode_tv": 0.05}
    values = {"mean": rec(0.2, 0.052, 0.001), None: rec(0.25, 0.058, 0.004)}
    args = ([run], lambda c, t: values[t], ("mean",), "sw2", "min", "mode_tv", ref)
    by_slack = lambda r: r["slack"]  # noqa: E731
    assert search_inference(*args, fallback=(None,))[1:3] == (None, True)
    assert search_inference(*args, fallback=(None,), allowance=by_slack)[1:3] == (None, True)
    values["mean"]["slack"] = 0.002  # the candidate's allowance now covers its +0.002
    assert search_inference(*args, fallback=(None,), allowance=by_slack)[1:3] == ("mean", False)
    values["mean"]["slack"] = 0.0  # greedy, +0.008: beyond the tolerance 0.005, within 0.009
    assert search_inference(*args, fallback=(None,), tolerance=0.005,
                            allowance=by_slack)[1:3] == (None, False)
    assert search_inference(*args, fallback=(None,), tolerance=0.005)[1:3] == (None, True)
