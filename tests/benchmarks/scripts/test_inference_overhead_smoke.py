"""Smoke run of benchmarks/scripts/inference_overhead.py (tiny budget; no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_inference_overhead_quick(tmp_path):
    out = tmp_path / "results" / "overhead.json"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scripts" / "inference_overhead.py"), "--quick",
         "--tasks", "gmm2d", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    (res,) = data["results"]
    assert res["task"] == "gmm2d" and res["n"] == 64 and res["repeats"] == 2
    assert res["identical_samples"] is True
    assert len(res["times_s"]["policy"]) == len(res["times_s"]["schedule"]) == 2
    assert {"overhead_pct", "paired_overhead_pct", "cpu_overhead_pct"} <= set(res)
    assert "gmm2d" in proc.stdout
    assert [p.name for p in out.parent.iterdir()] == ["overhead.json"]  # no temp files left
