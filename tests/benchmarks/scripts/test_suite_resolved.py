"""benchmarks/scripts/suite_resolved.py: rows of a finished suite against the default sampler,
with a Student-t 95 % interval on the paired differences."""

from __future__ import annotations

import json

import pytest


def _row(method: str, kind: str, values: list[float]) -> dict:
    return {"method": method, "kind": kind,
            "per_seed": [{"eval_seed": 10 * (i + 1), "metrics": {"sw2": v}}
                         for i, v in enumerate(values)]}


def _suite(tmp_path, direction: str = "min"):
    rows = [
        _row("default", "default", [0.30, 0.40, 0.50]),
        _row("grid/guidance", "grid", [0.20, 0.31, 0.40]),  # -0.1 +- 0.005: resolved better
        _row("grid/churn", "grid", [0.35, 0.38, 0.60]),  # +0.043, noisy: a tie
        _row("ppo+gail/js", "learned", [0.40, 0.50, 0.61]),  # +0.103 +- 0.006: resolved worse
    ]
    task = tmp_path / "gmm2d-random-1000"
    task.mkdir()
    (task / "results.json").write_text(json.dumps(
        {"metric": "sw2", "direction": direction, "rows": rows, "best_grid_row": "grid/churn"}))
    return tmp_path


def test_verdicts_counts_and_the_grid_pick(tmp_path, load_script):
    script = load_script("suite_resolved")
    out = tmp_path / "report.json"
    report = script.main(["--suite", str(_suite(tmp_path)), "--out", str(out)])
    assert json.loads(out.read_text())["counts_vs_default"] == report["counts_vs_default"]
    rows = report["tasks"]["gmm2d-random-1000"]["rows"]
    assert rows["grid/guidance"]["verdict"] == "better"
    assert rows["grid/guidance"]["mean"] == pytest.approx(-0.0966667)
    assert rows["grid/guidance"]["z"] == pytest.approx(0.0966667 / rows["grid/guidance"]["std"])
    assert rows["ppo+gail/js"]["z"] < 0  # worse than the default: a negative improvement
    assert rows["grid/churn"]["verdict"] == "tie" and rows["grid/churn"]["grid_pick"] is True
    assert rows["ppo+gail/js"]["verdict"] == "worse"
    # half-width = t(0.975, 2) * std / sqrt(3)
    d = [0.10, 0.10, 0.11]
    std = (sum((x - sum(d) / 3) ** 2 for x in d) / 2) ** 0.5
    assert rows["ppo+gail/js"]["half_width_95"] == pytest.approx(4.303 * std / 3**0.5, rel=1e-3)
    counts = report["counts_vs_default"]
    assert counts["grid pick"] == {"better": 0, "tie": 1, "worse": 0}
    assert counts["grid/churn"] == counts["grid pick"]
    assert counts["ppo+gail/js"] == {"better": 0, "tie": 0, "worse": 1}


def test_a_metric_to_maximise_flips_the_verdicts(tmp_path, load_script):
    script = load_script("suite_resolved")
    rows = script.analyse(_suite(tmp_path, direction="max"))["tasks"]["gmm2d-random-1000"]["rows"]
    assert rows["grid/guidance"]["verdict"] == "worse"
    assert rows["ppo+gail/js"]["verdict"] == "better"


def test_another_metric_is_paired_in_its_own_direction(tmp_path, load_script):
    script = load_script("suite_resolved")
    suite = _suite(tmp_path)
    res = json.loads((suite / "gmm2d-random-1000" / "results.json").read_text())
    for row, tv in zip(res["rows"], ([0.10, 0.11, 0.12], [0.20, 0.21, 0.22], [0.10, 0.12, 0.11],
                                     [0.05, 0.055, 0.06])):
        for s, v in zip(row["per_seed"], tv):
            s["metrics"]["mode_tv"] = v
    (suite / "gmm2d-random-1000" / "results.json").write_text(json.dumps(res))
    report = script.analyse(suite, "mode_tv")
    rows = report["tasks"]["gmm2d-random-1000"]["rows"]
    assert report["tasks"]["gmm2d-random-1000"]["metric"] == "mode_tv"
    assert rows["grid/guidance"]["verdict"] == "worse"  # +0.1 on every seed, lower is better
    assert rows["ppo+gail/js"]["verdict"] == "better"
    assert rows["grid/churn"]["verdict"] == "tie"
    with pytest.raises(ValueError, match="unknown metric 'fid2'; allowed: .*mode_tv"):
        script.analyse(suite, "fid2")


def test_a_folder_without_comparisons_is_a_clear_error(tmp_path, load_script):
    script = load_script("suite_resolved")
    with pytest.raises(ValueError, match="no \\*/results.json under .*: not a suite folder"):
        script.analyse(tmp_path)
