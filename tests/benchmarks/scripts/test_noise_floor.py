"""benchmarks/scripts/noise_floor.py and the library noise floor: real data scored against real
data."""

from __future__ import annotations

import json

import pytest


def test_real_vs_real_on_gmm2d(tmp_path, load_script):
    noise_floor = load_script("noise_floor")
    out = tmp_path / "floor.json"
    report = noise_floor.main(["--task", "gmm2d", "--n", "256", "--seeds", "0", "1", "2",
                               "--out", str(out)])
    assert json.loads(out.read_text())["summary"] == report["summary"]
    assert len(report["per_seed"]) == 3
    summary = report["summary"]
    # Real data covers every mode; what remains is finite-sample noise, which shrinks with n.
    assert summary["mode_recall"]["mean"] == 1.0
    assert summary["sw2"]["mean"] > 0 and summary["sw2"]["std"] > 0
    larger = noise_floor.real_vs_real("gmm2d", 2048, [0, 1, 2])["summary"]
    for metric in ("sw2", "mode_tv"):
        assert larger[metric]["mean"] < 0.6 * summary[metric]["mean"], metric
    # The same seeds give the same numbers (fresh task, same generators).
    again = noise_floor.real_vs_real("gmm2d", 256, [0, 1, 2])
    assert again["per_seed"] == report["per_seed"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("cifar", 64, [0, 1]), "unknown task 'cifar'; allowed: .*gmm2d"),
        (("gmm2d", 1, [0, 1]), r"n must be an int >= 2 \(samples per point\), got 1"),
        (("gmm2d", 64, [3, 3]), r"at least two distinct seeds >= 0 \(no repeats\), got \[3, 3\]"),
        (("gmm2d", 64, [0, 0, 1]), r"\(no repeats\), got \[0, 0, 1\]"),
    ],
)
def test_bad_input(args, match, load_script):
    noise_floor = load_script("noise_floor")
    with pytest.raises(ValueError, match=match):
        noise_floor.real_vs_real(*args)


def test_library_noise_floor_matches_the_script(load_script):
    from diffgym.benchmarks.evaluate import eval_seed, noise_floor
    from diffgym.envs import make_task

    script = load_script("noise_floor").real_vs_real("gmm2d", 128, [0, 1])
    lib = noise_floor(make_task("gmm2d"), 128, [eval_seed(0), eval_seed(1)], sample_seeds=[7, 8])
    assert lib == script
    with pytest.raises(ValueError, match="sample_seeds must have one entry per seed"):
        noise_floor(make_task("gmm2d"), 128, [0, 1], sample_seeds=[7])
