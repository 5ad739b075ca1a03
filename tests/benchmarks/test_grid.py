"""Tests of diffgym.benchmarks.grid: schedules, families, CRN evaluation, resumability, costs."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest
import torch

from diffgym.benchmarks.grid import (
    ChurnFamily,
    GridResult,
    GuidanceFamily,
    IntervalFamily,
    PointResult,
    edm_churn_gammas,
    evaluate_point,
    guidance_interval_weights,
    make_families,
    point_key,
    run_grid,
    task_fingerprint,
)
from diffgym.envs import make_task

N_SMALL = 64  # samples per point in these tests
HAND_SIGMAS = torch.tensor([10.0, 5.0, 1.0, 0.5, 0.1, 0.0], dtype=torch.float64)  # N = 5



@pytest.fixture(scope="module")
def gmm2d():
    return make_task("gmm2d")


def _metrics(result: GridResult) -> dict[str, dict[str, float]]:
    return {p.key: p.metrics for p in result.points}


class _Stop(Exception):
    pass


# ------------------------------------------------------------------------------- schedules


def test_edm_churn_gammas_match_the_formula():
    # S_churn / N = 1 / 5 = 0.2 where S_min <= sigma_i <= S_max (bounds inclusive).
    gamma = edm_churn_gammas(HAND_SIGMAS, s_churn=1.0, s_min=0.5, s_max=5.0)
    assert gamma.tolist() == pytest.approx([0.0, 0.2, 0.2, 0.2, 0.0])
    # Capped at sqrt(2) - 1.
    gamma = edm_churn_gammas(HAND_SIGMAS, s_churn=40.0, s_min=0.0, s_max=100.0)
    assert gamma.tolist() == pytest.approx([math.sqrt(2) - 1] * 5)


def test_churn_family_tables():
    family = ChurnFamily(s_churn=(1.0,), s_min=(0.5,), s_max=(5.0,), s_noise=(1.007,))
    (point,) = family.points()
    assert point == {"s_churn": 1.0, "s_min": 0.5, "s_max": 5.0, "s_noise": 1.007}
    tables = family.tables(point, HAND_SIGMAS)
    assert tables["churn"] == pytest.approx([0.0, 0.2, 0.2, 0.2, 0.0])
    assert tables["s_noise"] == [1.007] * 5


def test_guidance_interval_tables():
    w = guidance_interval_weights(HAND_SIGMAS, w=3.0, sigma_lo=0.5, sigma_hi=5.0)
    assert w.tolist() == [1.0, 3.0, 3.0, 3.0, 1.0]
    family = IntervalFamily(w=(3.0,), sigma_lo=(0.5, 6.0), sigma_hi=(5.0,))
    assert family.points() == [{"w": 3.0, "sigma_lo": 0.5, "sigma_hi": 5.0}]  # lo >= hi skipped
    assert family.tables(family.points()[0], HAND_SIGMAS) == {"guidance": w.tolist()}
    constant = GuidanceFamily(w=(2.0,))
    assert constant.tables({"w": 2.0}, HAND_SIGMAS) == {"guidance": [2.0] * 5}


def test_families_enumerate_valid_points():
    family = ChurnFamily(s_churn=(1.0, 2.0), s_min=(0.0, 1.0), s_max=(1.0, 10.0), s_noise=(1.0,))
    # (s_min=1, s_max=1) is skipped: 2 x 3 valid (s_min, s_max) pairs.
    assert len(family.points()) == 6
    assert all(p["s_min"] < p["s_max"] for p in family.points())


def test_presets_per_task(gmm2d):
    sizes = {f.name: len(f) for f in make_families(gmm2d)}
    assert sizes == {"churn": 108, "guidance": 10, "interval": 75}
    small = {f.name: len(f) for f in make_families(gmm2d, points="small")}
    assert small == {"churn": 4, "guidance": 3, "interval": 2}
    # Small grids are subsets of the default ones, so a default run reuses a small run's points.
    for s, d in zip(make_families(gmm2d, points="small"), make_families(gmm2d)):
        assert all(p in d.points() for p in s.points())
    bias = make_task("gmm2d-bias")
    assert [f.name for f in make_families(bias)] == ["churn"]
    # Explicit axis values replace the preset.
    (g,) = make_families(gmm2d, ["guidance"], w=(2.0, 3.0))
    assert g.w == (2.0, 3.0)


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"s_churn": ()}, r"churn grid axis s_churn must not be empty"),
        ({"s_churn": (0.0,)}, r"axis s_churn has 0.0; values must be finite > 0"),
        ({"s_noise": (math.nan,)}, r"axis s_noise has nan"),
        ({"s_min": (-1.0,)}, r"axis s_min has -1.0; values must be finite >= 0"),
        ({"s_min": (5.0,), "s_max": (1.0,)}, r"no point with s_min < s_max"),
        ({"s_churn": (1.0, 1.0)}, r"repeated values"),
    ],
)
def test_bad_churn_grids(kwargs, match):
    axes = {"s_churn": (1.0,), "s_min": (0.0,), "s_max": (10.0,), "s_noise": (1.0,), **kwargs}
    with pytest.raises(ValueError, match=match):
        ChurnFamily(**axes)


def test_bad_family_names_and_knobs(gmm2d):
    with pytest.raises(ValueError, match=r"unknown grid family 'foo'; allowed: churn, guidance"):
        make_families(gmm2d, ["foo"])
    bias = make_task("gmm2d-bias")
    with pytest.raises(
        ValueError,
        match=r"'guidance' needs the guidance knob, which task 'gmm2d-bias' lacks; "
        r"families for this task: churn",
    ):
        make_families(bias, ["guidance"])
    with pytest.raises(ValueError, match=r"needs the guidance knob"):
        run_grid(bias, [GuidanceFamily(w=(2.0,))], n=N_SMALL, progress=False)
    with pytest.raises(ValueError, match=r"unknown points preset 'huge'; allowed: small, default"):
        make_families(gmm2d, ["churn"], points="huge")
    with pytest.raises(ValueError, match=r"grid axis 'w' belongs to none of the families"):
        make_families(gmm2d, ["churn"], w=(2.0,))
    with pytest.raises(ValueError, match=r"must not repeat"):
        make_families(gmm2d, ["churn", "churn"])


@pytest.mark.parametrize("n", [1, 0, 2.5, True])
def test_n_below_two_is_rejected(gmm2d, n):
    with pytest.raises(ValueError, match=r"n must be an int >= 2 \(samples per point\), got"):
        run_grid(gmm2d, [GuidanceFamily(w=(2.0,))], n=n, progress=False)


def test_bad_backend_and_cpus(gmm2d):
    fams = [GuidanceFamily(w=(2.0,))]
    with pytest.raises(ValueError, match=r"unknown backend 'dask'; allowed: local, ray"):
        run_grid(gmm2d, fams, n=N_SMALL, backend="dask", progress=False)
    with pytest.raises(ValueError, match=r"num_cpus must be an int >= 1, got 0"):
        run_grid(gmm2d, fams, n=N_SMALL, num_cpus=0, progress=False)


def test_best_rejects_unknown_metrics(gmm2d):
    result = run_grid(gmm2d, [GuidanceFamily(w=(2.0,))], n=N_SMALL, num_cpus=1, progress=False)
    with pytest.raises(ValueError, match=r"unknown metric 'inception_score'; allowed: "):
        result.best("inception_score")
    with pytest.raises(ValueError, match=r"metric 'fid' is not measured on task 'gmm2d'"):
        result.best("fid")
    with pytest.raises(ValueError, match=r"metric 'fd_digits' is not measured on task 'gmm2d'"):
        result.best("fd_digits")


# ------------------------------------------------------------------------------- evaluation


def test_cost_accounting_is_exact(gmm2d):
    interval = IntervalFamily(w=(2.0,), sigma_lo=(0.3,), sigma_hi=(5.0,))
    result = run_grid(gmm2d, [interval], n=N_SMALL, num_cpus=1, progress=False)
    default, point = result.points
    # Neutral 18-step Heun: 17 two-stage steps + one Euler step = 35 NFE per sample.
    assert default.family == "default"
    assert default.cost.nfe == 35 * N_SMALL
    assert default.cost.samples == N_SMALL
    # Guided steps cost double: per-sample NFE = sum_i stages_i * (2 if w_i != 1 else 1).
    w = point.schedule["guidance"]
    stages = [2] * (gmm2d.num_steps - 1) + [1]
    per_sample = sum(s * (2 if wi != 1.0 else 1) for s, wi in zip(stages, w))
    assert 35 < per_sample < 70
    assert point.cost.nfe == per_sample * N_SMALL
    assert point.nfe_per_sample == per_sample
    assert set(point.cost.seconds) == {"grid_point", "metrics"}
    # The grid's total is the sum over its points (the default sampler's row excluded).
    assert result.total_cost() == point.cost
    assert result.total_cost(include_default=True).nfe == default.cost.nfe + point.cost.nfe


def test_common_random_numbers(gmm2d):
    family = GuidanceFamily(w=(1.5, 2.0, 3.0))
    a = evaluate_point(gmm2d, family, {"w": 2.0}, n=N_SMALL, seed=3)
    b = evaluate_point(gmm2d, family, {"w": 2.0}, n=N_SMALL, seed=3)
    assert a.key == b.key
    assert a.metrics == b.metrics  # identical, not just close
    # A point's result does not depend on the other points in the grid.
    alone = run_grid(
        gmm2d,
        [GuidanceFamily(w=(2.0,))],
        n=N_SMALL,
        seed=3,
        num_cpus=1,
        include_default=False,
        progress=False,
    )
    assert alone.points[0].key == a.key
    assert alone.points[0].metrics == a.metrics
    # A different seed gives different samples.
    c = evaluate_point(gmm2d, family, {"w": 2.0}, n=N_SMALL, seed=4)
    assert c.key != a.key and c.metrics != a.metrics


def test_point_keys_cover_the_protocol(gmm2d):
    fp = task_fingerprint(gmm2d)
    key = point_key(fp, "guidance", {"w": 2.0}, n=64, seed=0)
    assert key == point_key(
        task_fingerprint(make_task("gmm2d")), "guidance", {"w": 2}, n=64, seed=0
    )
    assert key != point_key(fp, "guidance", {"w": 2.5}, n=64, seed=0)
    assert key != point_key(fp, "interval", {"w": 2.0}, n=64, seed=0)
    assert key != point_key(fp, "guidance", {"w": 2.0}, n=65, seed=0)
    assert key != point_key(fp, "guidance", {"w": 2.0}, n=64, seed=1)
    other = task_fingerprint(make_task("gmm2d", model_std=0.6))
    assert other["content_sha256"] != fp["content_sha256"]
    assert key != point_key(other, "guidance", {"w": 2.0}, n=64, seed=0)


def test_point_keys_name_the_noise_device_and_version(monkeypatch):
    """Results on CUDA round differently from the CPU's, and noise version 2 draws other numbers:
    both get other keys, so a grid or comparison never mixes them; CPU keys of noise version 1
    are unchanged from protocol 1's."""
    fp = {"name": "x"}
    monkeypatch.setenv("DIFFGYM_NOISE_VERSION", "2")
    v2 = point_key(fp, "guidance", {"w": 2.0}, n=64, seed=0)
    monkeypatch.setenv("DIFFGYM_NOISE_VERSION", "1")
    cpu = point_key(fp, "guidance", {"w": 2.0}, n=64, seed=0)
    assert cpu == "5667291846d0ab72"  # the key protocol 1 gave before the device was added
    assert v2 != cpu
    assert point_key(fp, "guidance", {"w": 2.0}, n=64, seed=0, device="cpu") == cpu
    assert point_key(fp, "guidance", {"w": 2.0}, n=64, seed=0, device=torch.device("cpu")) == cpu
    cuda = point_key(fp, "guidance", {"w": 2.0}, n=64, seed=0, device="cuda")
    assert cuda != cpu
    assert point_key(fp, "guidance", {"w": 2.0}, n=64, seed=0, device="cuda:1") == cuda


# ------------------------------------------------------------------------------- resumability


def test_interrupted_grid_resumes_without_recomputing(gmm2d, tmp_path):
    families = [GuidanceFamily(w=(1.5, 2.0, 3.0))]  # + the default sampler: 4 points
    kwargs = {"n": N_SMALL, "seed": 0, "num_cpus": 1, "progress": False}
    full = run_grid(gmm2d, families, out_dir=tmp_path / "full", **kwargs)
    assert full.complete and full.num_evaluated == 4

    out = tmp_path / "resumed"
    seen: list[str] = []

    def stop_after_two(point):
        seen.append(point.key)
        if len(seen) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_grid(gmm2d, families, out_dir=out, on_point=stop_after_two, **kwargs)
    saved = json.loads((out / "grid.json").read_text())
    assert [p["key"] for p in saved["points"]] == seen
    assert saved["complete"] is False

    evaluated: list[str] = []
    resumed = run_grid(
        gmm2d, families, out_dir=out, on_point=lambda p: evaluated.append(p.key), **kwargs
    )
    assert (resumed.num_evaluated, resumed.num_reused) == (2, 2)
    assert not set(evaluated) & set(seen)  # finished points were not recomputed
    assert resumed.complete
    assert [p.key for p in resumed.points] == [p.key for p in full.points]
    assert _metrics(resumed) == _metrics(full)
    assert GridResult.load(out).points == resumed.points
    assert (out / "grid.csv").read_text().count("\n") == 5  # header + 4 points

    # Delete one point's entry: only that point is evaluated again.
    saved = json.loads((out / "grid.json").read_text())
    dropped = saved["points"].pop(1)
    (out / "grid.json").write_text(json.dumps(saved))
    evaluated.clear()
    again = run_grid(
        gmm2d, families, out_dir=out, on_point=lambda p: evaluated.append(p.key), **kwargs
    )
    assert evaluated == [dropped["key"]]
    assert _metrics(again) == _metrics(full)


def test_results_of_other_grids_are_kept(gmm2d, tmp_path):
    kwargs = {"n": N_SMALL, "num_cpus": 1, "progress": False, "out_dir": tmp_path}
    run_grid(gmm2d, [GuidanceFamily(w=(1.5, 2.0))], **kwargs)
    smaller = run_grid(gmm2d, [GuidanceFamily(w=(2.0,))], **kwargs)
    assert smaller.num_evaluated == 0 and len(smaller.points) == 2
    saved = json.loads((tmp_path / "grid.json").read_text())
    assert [p["params"] for p in saved["other_points"]] == [{"w": 1.5}]
    bigger = run_grid(gmm2d, [GuidanceFamily(w=(1.5, 2.0))], **kwargs)
    assert bigger.num_evaluated == 0 and len(bigger.points) == 3


def test_best_point_per_family(gmm2d):
    families = [
        GuidanceFamily(w=(1.5, 3.0)),
        ChurnFamily(s_churn=(1.8, 7.2), s_min=(0.05,), s_max=(10.0,)),
    ]
    result = run_grid(gmm2d, families, n=N_SMALL, num_cpus=1, progress=False)
    for metric, pick in (("logp", max), ("sw2", min)):
        best = result.best(metric)
        assert set(best) == {"guidance", "churn"}
        for family, point in best.items():
            values = [p.metrics[metric] for p in result.family_points(family)]
            assert point.metrics[metric] == pick(values)


# ------------------------------------------------------------------------------- CLI


def _parse(argv):
    from diffgym.cli import build_parser

    return build_parser().parse_args(["grid", *argv])


def test_cli_runs_a_small_grid(tmp_path, capsys):
    args = _parse(
        [
            "--task",
            "gmm2d",
            "--families",
            "guidance",
            "--w",
            "2",
            "--n",
            str(N_SMALL),
            "--out",
            str(tmp_path),
            "--no-progress",
            "--num-cpus",
            "1",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "best point per family by sw2" in out and "guidance(w=2)" in out
    assert "grid total: 1 points" in out
    assert GridResult.load(tmp_path / "grid.json").complete


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--families", "renoise"], r"unknown grid family 'renoise'; allowed: churn, guidance"),
        (["--task", "gmm2d-bias", "--families", "interval"], r"lacks; families for this task"),
        (["--n", "1"], r"n must be an int >= 2"),
        (["--backend", "spark"], r"unknown backend 'spark'"),
        (["--points", "tiny"], r"unknown points preset 'tiny'"),
        (["--metric", "inception_score"], r"unknown metric 'inception_score'"),
        (["--metric", "fid"], r"'fid' is not measured on task 'gmm2d'.*need --fid-weights"),
        (["--metric", "fd_digits"], r"'fd_digits' is not measured on task 'gmm2d'; measured: logp"),
    ],
)
def test_cli_bad_input(tmp_path, argv, match):
    args = _parse([*argv, "--out", str(tmp_path), "--no-progress"])
    with pytest.raises(ValueError, match=match):
        args.func(args)


# ------------------------------------------------------------------------------- Ray backend

HAS_RAY = importlib.util.find_spec("ray") is not None


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'diffgym[ray]')")
def test_points_record_their_noise_version_and_versions_never_mix(gmm2d, tmp_path,
                                                                 monkeypatch):
    """Each point records the generator it was drawn with (a record without one is version 1);
    a folder rerun under the other version evaluates again and keeps the first version's points
    under other_points."""
    kwargs = {"n": N_SMALL, "num_cpus": 1, "progress": False, "out_dir": tmp_path}
    v2 = run_grid(gmm2d, [GuidanceFamily(w=(2.0,))], **kwargs)
    assert {p.noise_version for p in v2.points} == {2}
    monkeypatch.setenv("DIFFGYM_NOISE_VERSION", "1")
    v1 = run_grid(gmm2d, [GuidanceFamily(w=(2.0,))], **kwargs)
    assert v1.num_evaluated == 2 and {p.noise_version for p in v1.points} == {1}
    assert v1.points[1].metrics != v2.points[1].metrics
    saved = json.loads((tmp_path / "grid.json").read_text())
    assert {p["noise_version"] for p in saved["points"]} == {1}
    assert {p["noise_version"] for p in saved["other_points"]} == {2}
    legacy = {k: v for k, v in saved["points"][0].items() if k != "noise_version"}
    assert PointResult.from_dict(legacy).noise_version == 1


def test_ray_backend_gives_the_local_table(gmm2d, tmp_path):
    families = [GuidanceFamily(w=(2.0,))]  # + the default sampler: 2 points
    local = run_grid(gmm2d, families, n=N_SMALL, num_cpus=1, progress=False)
    ray = run_grid(
        gmm2d, families, n=N_SMALL, out_dir=tmp_path, backend="ray", num_cpus=1, progress=False
    )
    assert [p.key for p in ray.points] == [p.key for p in local.points]
    for r, loc in zip(ray.points, local.points):
        assert r.metrics == pytest.approx(loc.metrics, rel=1e-6, abs=1e-9)
        assert r.cost.nfe == loc.cost.nfe
        assert r.schedule == loc.schedule
    assert GridResult.load(tmp_path).points == ray.points


def test_ray_backend_without_ray_says_how_to_install(gmm2d, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ImportError, match=r"pip install 'diffgym\[ray\]'"):
        run_grid(gmm2d, [GuidanceFamily(w=(2.0,))], n=N_SMALL, backend="ray", progress=False)


def test_measured_metrics_names_what_task_metrics_reports(gmm2d):
    from diffgym.benchmarks.evaluate import measured_metrics, task_metrics

    x, _ = gmm2d.sample_data(64, torch.Generator().manual_seed(0))
    assert set(task_metrics(gmm2d, x)) == set(measured_metrics(gmm2d))


def test_gmm2d_random_grid_fingerprint_differs_per_seed():
    from diffgym.benchmarks.grid import task_fingerprint

    fp = [task_fingerprint(make_task("gmm2d-random", seed=s)) for s in (0, 1)]
    assert fp[0]["name"] == fp[1]["name"] == "gmm2d-random"
    assert fp[0]["content_sha256"] != fp[1]["content_sha256"]
    assert fp[0]["extra"]["seed"] == 0 and fp[1]["extra"]["seed"] == 1


def test_concurrent_grids_into_one_folder_lose_nothing(gmm2d, tmp_path):
    """A second `diffgym grid` writing into the same folder while this one runs (simulated by
    running it from this grid's point callback) keeps its points: each write merges under the
    folder's lock instead of overwriting."""
    other = [IntervalFamily(w=(2.0,), sigma_lo=(0.3,), sigma_hi=(5.0,))]
    ran = []

    def concurrent_writer(record):
        if not ran:
            ran.append(run_grid(gmm2d, other, n=N_SMALL, out_dir=tmp_path, progress=False))

    mine = run_grid(gmm2d, [GuidanceFamily(w=(2.0, 3.0))], n=N_SMALL, out_dir=tmp_path,
                    progress=False, on_point=concurrent_writer)
    data = json.loads((tmp_path / "grid.json").read_text())
    saved = {p["key"] for p in data["points"]} | {p["key"] for p in data["other_points"]}
    assert {p.key for p in mine.points} <= saved
    assert {p.key for p in ran[0].points} <= saved  # the other run's points survived
    assert {p["family"] for p in data["other_points"]} == {"interval"}


# ------------------------------------------------------------------------------- schedule family


def test_schedule_family_is_opt_in_and_available_on_every_task(gmm2d):
    from diffgym.benchmarks.grid import ScheduleFamily

    assert "schedule" not in [f.name for f in make_families(gmm2d)]
    (s,) = make_families(make_task("gmm2d-bias"), ["schedule"])
    assert isinstance(s, ScheduleFamily) and len(s) == 20
    (small,) = make_families(gmm2d, ["schedule"], points="small")
    assert all(p in s.points() for p in small.points())
    (mine,) = make_families(gmm2d, ["schedule"], num_steps=(4, 8), rho=(7,))
    assert mine.points() == [{"num_steps": 4.0, "rho": 7.0}, {"num_steps": 8.0, "rho": 7.0}]


@pytest.mark.parametrize(
    "axes, match",
    [
        ({"num_steps": (2.5,), "rho": (7.0,)}, r"num_steps has 2.5; values must be integers"),
        ({"num_steps": (0.0,), "rho": (7.0,)}, r"num_steps has 0.0; values must be finite >= 1"),
        ({"num_steps": (4.0,), "rho": (0.0,)}, r"rho has 0.0; values must be finite > 0"),
    ],
)
def test_bad_schedule_grids(axes, match):
    from diffgym.benchmarks.grid import ScheduleFamily

    with pytest.raises(ValueError, match=match):
        ScheduleFamily(**axes)


def test_schedule_points_run_their_own_schedule_with_crn(gmm2d):
    """A point is the default sampler of ``task.replace(num_steps=N, rho=rho)`` under the same
    protocol: its samples and NFE (2N - 1 per sample) match that evaluation exactly; the point at
    the task's own (N, rho) is the default sampler."""
    from diffgym.benchmarks.grid import evaluate_sampler, point_task

    (family,) = make_families(gmm2d, ["schedule"], num_steps=(6, 18), rho=(3, 7))
    result = run_grid(gmm2d, [family], n=N_SMALL, seed=3, progress=False)
    default = result.default
    by_params = {(p.params["num_steps"], p.params["rho"]): p for p in result.points[1:]}
    assert len(by_params) == 4 and all(not p.schedule for p in by_params.values())
    for (steps, rho), point in by_params.items():
        assert point.nfe_per_sample == 2 * steps - 1
        task = point_task(gmm2d, "schedule", point.params)
        assert (task.num_steps, task.rho) == (steps, rho)
        ev = evaluate_sampler(task, n=N_SMALL, seed=3)
        assert ev.metrics == point.metrics
    assert by_params[(18.0, 7.0)].metrics == default.metrics
    assert by_params[(6.0, 3.0)].key != default.key
    assert len({p.key for p in result.points}) == 5


def test_cli_runs_the_schedule_family(tmp_path, capsys):
    args = _parse(["--task", "gmm2d", "--families", "schedule", "--num-steps", "6", "--rho", "5",
                   "--n", str(N_SMALL), "--out", str(tmp_path), "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "schedule(num_steps=6, rho=5)" in out and "11" in out


def test_base_grid_evaluation_is_the_default_sampler_when_neutral():
    from diffgym.benchmarks.grid import evaluate_sampler

    task = make_task("gmm2d", num_steps=6, step_advances=(2, 1, 3, 4))
    a = evaluate_sampler(task, n=32, seed=0)
    b = evaluate_sampler(task, n=32, seed=0, base_grid=True)
    assert torch.equal(a.result.x, b.result.x) and a.metrics == b.metrics
    assert a.cost.nfe == b.cost.nfe == 32 * 11
