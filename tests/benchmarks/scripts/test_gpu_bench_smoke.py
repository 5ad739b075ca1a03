"""Smoke run of benchmarks/scripts/gpu_bench.py on the CPU: every phase, tiny sizes (schema and
bookkeeping only, no timings asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "scripts" / "gpu_bench.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
TINY = [
    "--tests-path", "tests/benchmarks/test_metrics.py",
    "--env-tasks", "gmm2d", "--env-sizes", "4", "8", "--env-steps", "2", "--env-repeats", "1",
    "--grid-tasks", "gmm2d", "--grid-n", "64",
    "--train-tasks", "gmm2d", "--train-envs", "4", "--train-rounds", "1",
    "--compile-batch", "8", "--compile-iters", "2", "--compile-backend", "eager",
]


def _run(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
        env=ENV, check=False,
    )


def test_gpu_bench_all_phases_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run(["--device", "cpu", "--out", str(out), *TINY])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["benchmark"] == "gpu_bench" and report["complete"] is True
    assert report["machine"]["device"] == "cpu" and report["machine"]["gpu"] is None
    phases = report["phases"]
    assert list(phases) == ["tests", "env", "grid", "training", "compile"]
    for name, entry in phases.items():
        assert entry["status"] == "ok", (name, entry.get("stderr_tail"))
        assert entry["seconds"] <= entry["limit_s"] + 10
    assert phases["tests"]["result"]["returncode"] == 0  # the CUDA cases: skipped on a CPU
    env_items = phases["env"]["result"]["items"]
    assert [(i["task"], i["num_envs"]) for i in env_items] == [("gmm2d", 4), ("gmm2d", 8)]
    assert "vector" in {r["mode"] for r in env_items[0]["results"]}
    (point,) = phases["grid"]["result"]["items"]
    assert point["task"] == "gmm2d" and point["n"] == 64 and point["nfe"] > 0
    assert "mmd" in point["metrics"] and point["metrics_s"] > 0
    (train,) = phases["training"]["result"]["items"]
    assert train["num_envs"] == 4 and train["transitions_per_round"] > 0
    assert 0 < train["discriminator_share"] < 1
    compiled = phases["compile"]["result"]
    assert compiled["batch"] == 8 and compiled["max_abs_diff"] < 1e-4
    # the log says what each phase did
    for line in ("tests: ok", "env gmm2d 8 envs", "grid gmm2d n=64", "training gmm2d 4 envs",
                 "compile (eager)"):
        assert line in proc.stdout, line


def test_gpu_bench_rejects_bad_arguments(tmp_path):
    out = str(tmp_path / "x.json")
    proc = _run(["--device", "cpu", "--out", out, "--phases", "env", "warp"], timeout=120)
    assert proc.returncode == 2 and "unknown phase(s) ['warp']" in proc.stderr
    proc = _run(["--device", "cpu", "--out", out, "--limit", "env=-3"], timeout=120)
    assert proc.returncode == 2 and "--limit takes PHASE=SECONDS" in proc.stderr
    proc = _run(["--device", "cpu", "--out", out, "--train-envs", "yaml", "0"], timeout=120)
    assert proc.returncode == 2 and "--train-envs takes 'yaml' or integers" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_bench_refuses_a_missing_gpu(tmp_path):
    proc = _run(["--device", "cuda", "--out", str(tmp_path / "x.json")], timeout=120)
    assert proc.returncode == 2
    assert "CUDA is not available" in proc.stderr
