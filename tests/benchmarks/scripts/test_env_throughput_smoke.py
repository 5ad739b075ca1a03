"""Smoke run of benchmarks/scripts/env_throughput.py --quick as a subprocess (schema only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "scripts" / "env_throughput.py"
MODES = ["raw", "vector", "sb3", "sync"]


def test_env_throughput_quick(tmp_path):
    out = tmp_path / "nested" / "env_throughput.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--tasks", "gmm2d",
         "--sections", "throughput", "noise", "guided", "ops", "split", "paired",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| task | envs | (a) Heun loop | (b) vector env |" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "env_throughput" and "--quick" in payload["command"]
    machine = payload["machine"]
    assert {"cpu", "cores", "torch", "torch_threads", "device"} <= set(machine)
    assert machine["torch_threads"] == 1 and machine["device"] == "cpu"
    assert machine["git"] is None or len(machine["git"]["commit"]) == 40  # the code measured
    settings = payload["settings"]
    assert settings["quick"] is True and settings["tasks"] == ["gmm2d"]
    num_envs = settings["num_envs"]
    rows = payload["results"]
    assert [(r["num_envs"], r["mode"]) for r in rows] == [(n, m) for n in num_envs for m in MODES]
    for r in rows:
        assert r["task"] == "gmm2d"
        if r["skipped"]:
            assert r["mode"] == "sync" and r["steps_per_s"] is None
            continue
        assert len(r["wall_s"]) == len(r["cpu_s"]) == r["repeats"] >= 1 and r["steps"] >= 1
        assert r["median_wall_s"] > 0 and r["median_cpu_s"] >= 0
        assert r["steps_per_s"] > 0 and r["nfe_per_s"] > 0 and r["nfe"] > 0
    for n in num_envs:  # (a), (b), (c) run the same transitions, so the same NFE
        same = [r for r in rows if r["num_envs"] == n and r["mode"] != "sync"]
        assert len({(r["steps"], r["nfe"]) for r in same}) == 1
    ratio_keys = {"vector_over_raw", "vector_over_sync", "sb3_over_vector", "vector_over_raw_cpu"}
    keys = [(q["task"], q["num_envs"]) for q in payload["ratios"]]
    assert keys == [("gmm2d", n) for n in num_envs]
    for ratio in payload["ratios"]:
        assert ratio_keys <= set(ratio) and ratio["vector_over_raw"] > 0
        # the paired ratio: the median of the repeats' own ratios, inside their range
        (row_v,) = [r for r in rows if (r["num_envs"], r["mode"]) == (ratio["num_envs"], "vector")]
        (row_a,) = [r for r in rows if (r["num_envs"], r["mode"]) == (ratio["num_envs"], "raw")]
        own = sorted((row_v["nfe"] / wv) / (row_a["nfe"] / wa)
                     for wv, wa in zip(row_v["wall_s"], row_a["wall_s"]))
        lo, hi = ratio["vector_over_raw_paired_range"]
        assert (lo, hi) == (own[0], own[-1]) and lo <= ratio["vector_over_raw_paired"] <= hi
    assert {"vector_over_raw_at_1024", "vector_over_sync_at_256"} <= set(payload["targets"])
    assert set(payload["targets"]) >= {"per_sample_over_batch_noise",
                                       "guided_measured_over_predicted_tolerance"}
    (noise,) = payload["noise"]
    assert noise["task"] == "gmm2d" and noise["draw_ratio"] > 0 and noise["sample_ratio"] > 0
    assert noise["draw_ratio_no_prefetch"] > 0 and noise["sample_ratio_no_prefetch"] > 0
    (guided,) = payload["guided"]
    assert guided["task"] == "gmm2d" and guided["nfe"]["guided"] > guided["nfe"]["plain"]
    assert guided["measured_over_predicted"] > 0 and guided["guided_steps"] >= 1
    (ops,) = payload["ops"]
    assert ops["task"] == "gmm2d" and ops["num_envs"] == max(num_envs)
    assert ops["ops_per_step"] == sum(ops["by_name"].values()) > 0
    assert "softmax" not in ops["by_name"]  # the mixture denoiser's work is not counted
    (split,) = payload["split"]
    assert split["task"] == "gmm2d" and split["num_envs"] == max(num_envs)
    for mode in ("raw", "vector"):
        part = split[mode]
        assert part["model_us"] > 0 and part["outside_us"] > 0 and part["step_us"] > 0
    assert split["vector_over_raw"] > 0 and split["vector_over_raw_same_model"] > 0
    assert set(split["vector_parts_us"]) == {"validate_actions", "observe",
                                             "sampler_step_outside_model", "step_body"}
    assert split["vector_parts_us"]["validate_actions"] > 0
    assert "split, gmm2d" in proc.stdout
    (paired,) = payload["paired"]
    assert paired["task"] == "gmm2d" and paired["pairs"] == settings["pairs"] == 3
    assert len(paired["raw_wall_s"]) == len(paired["vector_wall_s"]) == 3
    own = sorted(a / b for a, b in zip(paired["raw_wall_s"], paired["vector_wall_s"]))
    assert paired["vector_over_raw_paired"] == own[1]  # the median of the pairs' own ratios
    lo, hi = paired["vector_over_raw_ci95"]
    assert own[0] <= lo <= paired["vector_over_raw_paired"] <= hi <= own[-1]
    assert paired["steps_per_chunk"] % paired["episodes_per_chunk"] == 0
    assert "paired, gmm2d" in proc.stdout
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left
