"""Smoke run of ``benchmarks/scripts/headroom.py`` with a tiny budget (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "scripts" / "headroom.py"


def test_headroom_script_smoke(tmp_path):
    out = tmp_path / "headroom.json"
    cmd = [
        sys.executable, str(SCRIPT), "--task", "cmix", "--n", "8", "--families", "guidance",
        "--w", "1.5", "2", "--eval-seeds", "1", "2", "--out", str(out),
        "--runs", str(tmp_path / "runs"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["metric"] == "logp" and data["families"] == ["guidance"]
    assert data["grid"] == {"guidance": {"w": [1.5, 2.0]}}
    row = data["best_per_family"]["guidance"]
    assert set(row["per_seed"]) == {"1", "2"} and len(row["improvement_per_seed"]) == 2
    # improvement = best - default for a "max" metric, per evaluation seed
    for s, d in zip(("1", "2"), row["improvement_per_seed"]):
        expected = row["per_seed"][s]["logp"] - data["default"]["per_seed"][s]["logp"]
        assert abs(d - expected) < 1e-12
    assert isinstance(data["headroom"], bool)
