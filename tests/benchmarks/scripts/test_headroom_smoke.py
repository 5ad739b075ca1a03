"""Smoke run of ``benchmarks/scripts/headroom.py`` with a tiny budget (subprocess)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_headroom_from_a_finished_comparison(tmp_path):
    """--from-compare reads the default and best-grid rows of a stored comparison (here the
    committed gmm2d-net one) and pairs them per evaluation seed; nothing is sampled."""
    results = SCRIPT.parents[1] / "results" / "compare" / "gmm2d-net-main" / "results.json"
    out = tmp_path / "headroom.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--from-compare", str(results), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    stored = json.loads(results.read_text())
    assert data["task"] == "gmm2d-net" and data["metric"] == "sw2"
    assert data["eval_seeds"] == stored["settings"]["eval_seeds"]
    assert data["families"] == ["churn", "guidance", "interval"]
    default = {r["eval_seed"]: r["metrics"]["sw2"]
               for r in next(r for r in stored["rows"] if r["kind"] == "default")["per_seed"]}
    for row in stored["rows"]:
        if row["kind"] != "grid":
            continue
        fam = data["best_per_family"][row["info"]["family"]]
        want = [default[r["eval_seed"]] - r["metrics"]["sw2"] for r in row["per_seed"]]
        assert fam["improvement_per_seed"] == want  # lower is better: default - point
        lo, hi = fam["improvement_ci95"]
        assert lo <= fam["improvement_mean"] <= hi
    # interval's best point is the default sampler's schedule on this task: z = 0, not NaN
    assert data["best_per_family"]["interval"]["z"] == 0.0
    assert data["headroom"] is False  # RESULTS §11: gmm2d-net has no headroom on SW2
    assert data["fingerprint"] == stored["fingerprint"]

    bad = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         timeout=600, env={"PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and "exactly one of --task and --from-compare" in bad.stderr


def test_family_rows_one_seed_claims_no_headroom_and_bad_values_are_named():
    import importlib.util

    spec = importlib.util.spec_from_file_location("headroom_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    one = mod.family_rows("sw2", {1: {"sw2": 0.3}}, {"churn": ({}, None, {1: {"sw2": 0.1}})})
    assert math.isnan(one["churn"]["z"]) and mod._winner(one) is None
    two = mod.family_rows(
        "logp", {1: {"logp": -3.0}, 2: {"logp": -3.0}},
        {"guidance": ({"w": 2.0}, None, {1: {"logp": -2.0}, 2: {"logp": -2.5}})},
    )
    assert two["guidance"]["improvement_per_seed"] == [1.0, 0.5]  # higher is better: pt - def
    assert two["guidance"]["z"] == pytest.approx(0.75 / math.sqrt(0.125))
    with pytest.raises(ValueError, match=r"no evaluation on seeds \[2\]"):
        mod.family_rows("sw2", {1: {"sw2": 0.3}}, {"churn": ({}, None, {2: {"sw2": 0.1}})})
    with pytest.raises(ValueError, match=r"sw2 of churn or the default is not finite on seeds"):
        mod.family_rows("sw2", {1: {"sw2": None}}, {"churn": ({}, None, {1: {"sw2": 0.1}})})
