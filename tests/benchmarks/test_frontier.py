"""The NFE frontier: points from grid.json / results.json, the Pareto front, the
learned-vs-default reading, and a smoke run of benchmarks/scripts/nfe_frontier.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from diffgym.benchmarks.frontier import (
    FrontierPoint,
    default_match,
    frontier_points,
    pareto_front,
    plot_nfe_frontier,
)
from diffgym.benchmarks.grid import make_families, run_grid
from diffgym.envs import make_task

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "scripts" / "nfe_frontier.py"

GRID = {
    "task": {"name": "gmm2d", "num_steps": 18, "rho": 7.0},
    "seed": 0,
    "points": [
        {"family": "default", "params": {}, "metrics": {"sw2": 0.10}, "nfe_per_sample": 35.0},
        {"family": "schedule", "params": {"num_steps": 6.0, "rho": 7.0},
         "metrics": {"sw2": 0.40}, "nfe_per_sample": 11.0},
        {"family": "schedule", "params": {"num_steps": 12.0, "rho": 7.0},
         "metrics": {"sw2": 0.20}, "nfe_per_sample": 23.0},
        {"family": "schedule", "params": {"num_steps": 6.0, "rho": 3.0},
         "metrics": {"sw2": 0.30}, "nfe_per_sample": 11.0},
        {"family": "churn", "params": {"s_churn": 1.0}, "metrics": {"sw2": 0.09},
         "nfe_per_sample": 35.0},
    ],
}
RESULTS = {
    "task": "gmm2d",
    "metric": "sw2",
    "rows": [
        {"method": "default", "kind": "default", "detail": "plain Heun", "nfe_per_sample": 35.0,
         "per_seed": [{"eval_seed": 1000, "metrics": {"sw2": 0.11}, "nfe_per_sample": 35.0}]},
        {"method": "ppo+gail/js", "kind": "learned", "detail": "", "nfe_per_sample": 20.0,
         "per_seed": [{"eval_seed": 1000, "metrics": {"sw2": 0.20}, "nfe_per_sample": 19.0},
                      {"eval_seed": 1001, "metrics": {"sw2": 0.30}, "nfe_per_sample": 21.0}]},
    ],
}


def test_points_kinds_and_front():
    points = frontier_points(metric="sw2", comparison=RESULTS, grid=GRID)
    kinds = {p.label: p.kind for p in points}
    assert kinds["default at N=6"] == kinds["default at N=12"] == "default_n"
    assert kinds["schedule(N=6, rho=3)"] == "schedule" and kinds["ppo+gail/js"] == "learned"
    learned = next(p for p in points if p.kind == "learned")
    assert (learned.nfe_per_sample, learned.value) == (20.0, pytest.approx(0.25))
    assert learned.std == pytest.approx(math.sqrt(0.005)) and learned.seeds == (1000, 1001)
    front = [p.label for p in pareto_front(points, "min")]
    assert front == ["schedule(N=6, rho=3)", "ppo+gail/js", "default at N=12",
                     "churn(s_churn=1)"]


def test_default_match_reads_the_default_curve():
    points = frontier_points(metric="sw2", comparison=RESULTS, grid=GRID)
    match = default_match(points, "min")["ppo+gail/js"]
    assert match["nfe_ratio"] == pytest.approx(20.0 / 35.0)
    assert match["delta"] == pytest.approx(0.25 - 0.11)  # against the same-seed default row
    # sw2 0.25 lies between N=6 (0.40, 11 NFE) and N=12 (0.20, 23 NFE): 3/4 of the way in log NFE
    assert match["default_nfe_at_this_quality"] == pytest.approx(11.0 ** 0.25 * 23.0 ** 0.75)


def test_bad_input():
    with pytest.raises(ValueError, match="give a comparison"):
        frontier_points(metric="sw2")
    with pytest.raises(ValueError, match="no point measured metric 'fid'"):
        frontier_points(metric="fid", grid=GRID)
    with pytest.raises(ValueError, match="direction must be 'min' or 'max'"):
        pareto_front([FrontierPoint("a", "default", 1.0, 1.0)], "up")


def test_plot_writes_a_png(tmp_path):
    points = frontier_points(metric="sw2", comparison=RESULTS, grid=GRID)
    plot_nfe_frontier(points, tmp_path / "f.png", metric="sw2", direction="min")
    assert (tmp_path / "f.png").stat().st_size > 0


def test_script_on_a_real_schedule_grid(tmp_path):
    task = make_task("gmm2d")
    families = make_families(task, ["schedule"], num_steps=(4, 8), rho=(7,))
    run_grid(task, families, n=32, seed=0, out_dir=tmp_path / "grid", progress=False)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--grid", str(tmp_path / "grid"), "--out",
         str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out" / "nfe_frontier.json").read_text())
    assert data["metric"] == "sw2" and data["task"] == "gmm2d"
    assert sorted(p["nfe_per_sample"] for p in data["points"]) == [7.0, 15.0, 35.0]
    assert (tmp_path / "out" / "nfe_frontier.png").is_file()
