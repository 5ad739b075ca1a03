"""Smoke run of benchmarks/gpu_check.py on the CPU (schema only, no timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "scripts" / "gpu_check.py"


def test_gpu_check_quick_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--skip-tests",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["complete"] is True
    assert report["machine"]["device"] == "cpu" and report["machine"]["gpu"] is None
    assert report["throughput"]["benchmark"] == "env_throughput"
    training = report["training"]
    assert training["cost"]["rollout_nfe"] > 0 and training["cost"]["timesteps"] > 0
    assert "eval/sw2" in training["final"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_check_refuses_a_missing_gpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode != 0
    assert "CUDA is not available" in proc.stderr
