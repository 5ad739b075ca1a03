"""Smoke run of benchmarks/scripts/reward_options.py (one tiny round) and its seed guard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scripts" / "reward_options.py"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
                               "PATH": "/usr/bin:/bin", **env})


def test_reward_options_script_writes_paired_results(tmp_path):
    out = tmp_path / "out"
    res = _run("--task-seeds", "2", "--options", "terminal_mmd", "--timesteps", "2304",
               "--n", "64", "--out", str(out), "--runs", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    row = json.loads((out / "task2_terminal_mmd_s0_t2304.json").read_text())
    assert row["irl_kwargs"] == {"terminal_mmd_weight": 1.0}
    for mode in ("greedy", "tau1"):
        assert {"sw2", "mode_tv", "sw2_minus_default"} <= set(row[mode])
    base = json.loads((out / "task2_baselines_n64.json").read_text())
    assert base["task_extra"]["seed"] == 2 and base["best_guidance"]["w"] > 1
    # the folder holds noise version 2: resuming it under version 1 is refused before any work
    assert (out / "noise_version.txt").read_text().strip() == "2"
    other = _run("--task-seeds", "2", "--options", "terminal_mmd", "--timesteps", "2304",
                 "--n", "64", "--out", str(out), "--runs", str(tmp_path / "runs"),
                 DIFFGYM_NOISE_VERSION="1")
    assert other.returncode == 2
    assert "per-sample noise version 2; this run draws version 1" in other.stderr


def test_reward_options_script_refuses_held_out_seeds(tmp_path):
    res = _run("--task-seeds", "1000", "--out", str(tmp_path))
    assert res.returncode == 2
    assert "not development seeds" in res.stderr
