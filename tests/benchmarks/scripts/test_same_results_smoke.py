"""benchmarks/scripts/same_results.py: finds identical and differing results."""

from __future__ import annotations

import json


def test_same_and_different_grids(tmp_path, load_script):
    script = load_script("same_results")
    point = {"key": "k1", "metrics": {"sw2": 0.2}, "cost": {"nfe": 10}}
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps({"points": [point]}))
    b.write_text(json.dumps({"points": [point]}))
    assert script.main([str(a), str(b)]) == 0
    b.write_text(json.dumps({"points": [{**point, "metrics": {"sw2": 0.2000001}}]}))
    out = tmp_path / "report.json"
    assert script.main([str(a), str(b), "--out", str(out)]) == 1
    assert json.loads(out.read_text())["different"] == ["k1"]


def test_comparisons_row_by_row(tmp_path, load_script):
    script = load_script("same_results")
    row = {"method": "default", "metrics": {"sw2": 0.2}, "metrics_std": {"sw2": 0.01},
           "per_seed": [{"metrics": {"sw2": 0.2}}], "nfe_per_sample": 35.0, "cost": {"nfe": 70}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"rows": [row]}))
    b.write_text(json.dumps({"rows": [{**row, "cost": {"nfe": 71}}]}))
    assert script.main([str(a), str(b)]) == 1
