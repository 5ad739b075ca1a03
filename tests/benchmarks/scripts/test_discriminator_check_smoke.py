"""Smoke run of benchmarks/discriminator_check.py --quick as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "scripts" / "discriminator_check.py"


def test_discriminator_check_quick(tmp_path):
    out = tmp_path / "nested" / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| step | sigma | Pearson | RMSE |" in proc.stdout
    assert "### pair `bias`" in proc.stdout and "### pair `blur`" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["quick"] is True and "--quick" in payload["command"]
    assert [res["config"]["pair"] for res in payload["results"]] == ["bias", "blur"]
    for res in payload["results"]:
        assert len(res["rows"]) == 4
        for row in res["rows"]:
            assert set(row) == {"step", "sigma", "pearson", "rmse", "ratio_std"}
            assert -1.0 <= row["pearson"] <= 1.0 and row["rmse"] >= 0.0
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary file
