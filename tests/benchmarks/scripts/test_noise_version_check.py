"""benchmarks/scripts/noise_version_check.py: the two per-sample noise generators scored alike."""

from __future__ import annotations

import json
import os

import pytest

from diffgym.envs.noise import NOISE_VERSION_ENV


def test_both_versions_are_scored_and_the_default_is_restored(tmp_path, load_script, monkeypatch):
    check = load_script("noise_version_check")
    out = tmp_path / "check.json"
    report = check.main(["--tasks", "gmm2d", "--n", "128", "--seeds", "0", "1", "2",
                         "--out", str(out)])
    assert os.environ[NOISE_VERSION_ENV] == ""  # the process default is left as it was
    assert json.loads(out.read_text())["tasks"].keys() == {"gmm2d"}
    res = report["tasks"]["gmm2d"]
    assert res.keys() == {"default", "churn"}
    for sampler in res.values():
        v1, v2 = sampler["per_seed"]["1"], sampler["per_seed"]["2"]
        assert len(v1) == len(v2) == 3
        assert v1 != v2  # other numbers from the same seeds
        s = sampler["summary"]["sw2"]
        assert s["diff"] == pytest.approx(s["v2_mean"] - s["v1_mean"])
        assert s["v1_std"] > 0 and s["v2_std"] > 0
    # the default sampler's evaluations under version 1 are the library's at version 1
    monkeypatch.setenv(NOISE_VERSION_ENV, "1")
    from diffgym.benchmarks.evaluate import eval_seed, evaluate_sampler
    from diffgym.envs import make_task

    again = evaluate_sampler(make_task("gmm2d"), None, n=128, seed=eval_seed(1)).metrics
    assert again == res["default"]["per_seed"]["1"][1]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("cifar", 64, [0, 1]), "unknown task 'cifar'; known tasks: .*gmm2d"),
        (("gmm2d", 64, [3, 3]), r"at least two distinct seeds >= 0 \(no repeats\), got \[3, 3\]"),
    ],
)
def test_bad_input(args, match, load_script):
    with pytest.raises(ValueError, match=match):
        load_script("noise_version_check").check_task(*args)
