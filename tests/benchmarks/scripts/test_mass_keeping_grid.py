"""benchmarks/scripts/mass_keeping_grid.py on a hand-made grid: which point is the best, which the
best that keeps the mode masses, and the gap between them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "scripts" / "mass_keeping_grid.py"


def point(key: str, family: str, sw2: float, tv: float) -> dict:
    return {"key": key, "family": family, "params": {}, "metrics": {"sw2": sw2, "mode_tv": tv}}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_best_and_mass_keeping_best(tmp_path):
    grid = {"task": "toy", "n": 8, "seed": 0, "complete": True, "points": [
        point("d", "default", 0.30, 0.05),
        point("a", "guidance", 0.10, 0.08),  # the sharpest, but it moves mass
        point("b", "churn", 0.13, 0.04),  # the sharpest that keeps the masses
        point("c", "churn", 0.50, 0.01),
    ]}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    out = tmp_path / "out.json"
    proc = run(str(tmp_path / "grid.json"), "--tolerance", "0.02", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["tasks"]
    assert row["best"]["key"] == "a" and row["mass_keeping_best"]["key"] == "b"
    assert abs(row["gap"] - 0.03) < 1e-12 and not row["within_tolerance"]
    assert (row["near_best"], row["near_best_keeping"]) == (1, 0)
    loose = run(str(tmp_path / "grid.json"), "--tolerance", "0.05", "--out", str(out))
    assert loose.returncode == 0
    (row,) = json.loads(out.read_text())["tasks"]
    assert row["within_tolerance"] and (row["near_best"], row["near_best_keeping"]) == (2, 1)
    assert "1 of 1" in loose.stdout


def test_bad_input_is_named(tmp_path):
    proc = run(str(tmp_path / "missing.json"))
    assert proc.returncode != 0 and "no such grid.json" in proc.stderr
    (tmp_path / "g.json").write_text(json.dumps({"task": "t", "n": 1, "seed": 0, "points": []}))
    proc = run(str(tmp_path / "g.json"), "--tolerance", "-1")
    assert proc.returncode != 0
    assert "--tolerance must be a finite number >= 0, got -1" in proc.stderr
