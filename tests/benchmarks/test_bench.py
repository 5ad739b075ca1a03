"""Tests of diffgym.benchmarks.bench on a tiny benchmark (gmm2d, two agents, two seeds, two
training rounds, a three-point grid, 512 samples): files, the normalized score in the table,
resuming without retraining, an excluded task, the Ray backend's table, the CLI and bad input."""

from __future__ import annotations

import argparse
import csv
import functools
import importlib.util
import io
import json
import math
import shutil

import numpy as np
import pytest
import torch

from diffgym.benchmarks import bench
from diffgym.benchmarks.bench import BenchConfig, run_bench
from diffgym.benchmarks.compare import eval_seed
from diffgym.benchmarks.stats import iqm, task_reference

N_ENVS = 8
N_STEPS = 18  # one episode per env per round
TINY = dict(
    agents=("ppo", "a2c"),
    tasks=("gmm2d",),
    seeds=(0, 1),
    rewards=("irl",),
    timesteps=2 * N_ENVS * N_STEPS,  # two rounds
    n_eval=512,
    grid_points="small",
    grid_families=("guidance",),
    n_envs=N_ENVS,
    agent_overrides={
        # no neutral bias: the greedy policy of an untrained net is not the default sampler
        "ppo": {"n_steps": N_STEPS, "batch_size": N_ENVS * N_STEPS, "n_epochs": 1,
                "policy_kwargs": {"neutral_bias": 0.0}},
        "a2c": {"policy_kwargs": {"neutral_bias": 0.0}},
    },
    reps=200,
    progress=False,
)
HAS_RAY = importlib.util.find_spec("ray") is not None
DETERMINISTIC = ["task", "agent", "reward", "seed", "eval_seed", "metric", "value", "default",
                 "grid", "score", "nfe_per_sample", "train_timesteps", "train_nfe"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray trial runs: the same arithmetic, the same table
    try:
        yield run_bench(BenchConfig(out_dir=out, **TINY)), out
    finally:
        torch.set_num_threads(threads)


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_writes_every_file(tiny):
    result, out = tiny
    for name in ("bench.json", "bench.csv", "leaderboard.md", "aggregates.png", "profiles.png",
                 "per_task.png", "references.json", "grid/gmm2d/grid.json"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    for agent in ("ppo", "a2c"):
        for k in (0, 1):
            run = out / "runs" / "gmm2d" / f"{agent}_irl_seed{k}"
            for name in ("cost.json", "final_model.zip", "bench_eval.json", "config.json"):
                assert (run / name).is_file(), (run, name)
    data = json.loads((out / "bench.json").read_text())
    assert data["format"] == "diffgym-bench/1"
    assert data["tasks_used"] == ["gmm2d"] and data["excluded_tasks"] == []
    assert set(data["aggregates"]) == {"ppo/irl", "a2c/irl"}
    assert data["probability_of_improvement"][0]["x"] == "ppo/irl"
    assert len(data["profiles"]["taus"]) == len(data["profiles"]["ppo/irl"]["profile"])


def test_table_has_one_row_per_trial_with_the_normalized_score(tiny):
    result, out = tiny
    rows = _rows(out / "bench.csv")
    assert [(r["agent"], r["seed"]) for r in rows] == [
        ("ppo", "0"), ("ppo", "1"), ("a2c", "0"), ("a2c", "1")
    ]
    ref = result.references["gmm2d"]
    assert ref.metric == "sw2" and ref.direction == "min"
    assert sorted(ref.default) == [eval_seed(0), eval_seed(1)]
    gain = np.mean([float(r["default"]) - float(r["grid"]) for r in rows[:2]])
    assert gain == pytest.approx(ref.gain)
    for r in rows:
        # s = (m_default(e) - m(e)) / gain for a metric where lower is better, paired on seed e
        expected = (float(r["default"]) - float(r["value"])) / gain
        assert float(r["score"]) == pytest.approx(expected)
        assert int(r["eval_seed"]) == eval_seed(int(r["seed"]))
        assert int(r["train_timesteps"]) == 2 * N_ENVS * N_STEPS
    # the scores are not all the default's: the untrained greedy policies pick knobs
    assert any(abs(float(r["score"])) > 1e-6 for r in rows)
    scores = result.scores["ppo/irl"]
    assert scores.shape == (2, 1)
    assert result.aggregates["ppo/irl"]["iqm"].point == pytest.approx(iqm(scores))


def test_reference_is_the_best_grid_point_on_the_search_seed(tiny):
    result, out = tiny
    grid = json.loads((out / "grid" / "gmm2d" / "grid.json").read_text())
    guidance = [p for p in grid["points"] if p["family"] == "guidance"]
    best = min(guidance, key=lambda p: p["metrics"]["sw2"])
    info = result.reference_info["gmm2d"]
    assert info["best_point"] == f"guidance(w={best['params']['w']:g})"
    assert info["grid_points"] == 3


def test_leaderboard_states_the_protocol_and_every_table(tiny):
    result, out = tiny
    text = (out / "leaderboard.md").read_text()
    for needle in ("0 = the default sampler, 1 = the best grid point", "## Task references",
                   "| ppo/irl |", "| a2c/irl |", "P(X > Y)", "## Mean normalized score per task",
                   "## Headline metric per task", "| best grid point |", "gmm2d sw2 ↓",
                   "diffgym --threads 1 bench --agents ppo a2c --tasks gmm2d --seeds 0 1"):
        assert needle in text, needle


def test_rerun_reuses_runs_and_evaluations_and_logs_to_wandb(tiny, tmp_path):
    result, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again = run_bench(BenchConfig(out_dir=copy, **{**TINY, "wandb": True}))  # wandb disabled
    assert again.num_trained == 0
    assert [r["score"] for r in again.trials] == [r["score"] for r in result.trials]


def test_cached_evaluations_are_keyed_by_the_noise_version(tiny, tmp_path, monkeypatch):
    """A bench folder rerun under another per-sample noise version keeps its training runs but
    evaluates them again: a run's cached evaluation names the version it was drawn with."""
    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    caches = sorted(copy.rglob("bench_eval.json"))
    assert caches and all(json.loads(c.read_text())["key"]["noise_version"] == 2 for c in caches)
    monkeypatch.setenv("DIFFGYM_NOISE_VERSION", "1")
    again = run_bench(BenchConfig(out_dir=copy, **TINY))
    assert again.num_trained == 0
    assert all("noise_version" not in json.loads(c.read_text())["key"] for c in caches)


def test_a_task_whose_grid_gains_nothing_is_reported_and_excluded(tiny, tmp_path, monkeypatch):
    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    # a floor no gain can pass: the task is excluded, its scores are nan
    monkeypatch.setattr(bench, "task_reference",
                        functools.partial(task_reference, min_gain_rel=1e9))
    result = run_bench(BenchConfig(out_dir=copy, **TINY))
    assert result.excluded_tasks == ["gmm2d"] and result.tasks_used == []
    assert result.aggregates == {} and all(math.isnan(r["score"]) for r in result.trials)
    text = (copy / "leaderboard.md").read_text()
    assert "**excluded**" in text and "Every task is excluded" in text
    assert "## Headline metric per task" in text  # the raw values are still reported
    assert json.loads((copy / "bench.json").read_text())["excluded_tasks"] == ["gmm2d"]


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'diffgym[ray]')")
def test_ray_backend_gives_the_local_table(tiny, tmp_path):
    result, out = tiny
    ray_out = tmp_path / "ray"
    ray_out.mkdir()
    shutil.copytree(out / "grid", ray_out / "grid")  # the grid's own Ray path is tested in grid
    # one agent (Ray start-up and each worker's imports are the slow part); a method's rows and
    # statistics do not depend on the other methods benchmarked with it
    ppo = {**TINY, "agents": ("ppo",), "agent_overrides": {"ppo": TINY["agent_overrides"]["ppo"]}}
    ray_result = run_bench(BenchConfig(out_dir=ray_out, backend="ray", num_cpus=1, **ppo))
    assert ray_result.num_trained == 2  # every run trained in a Ray task
    local_rows = [r for r in _rows(out / "bench.csv") if r["agent"] == "ppo"]
    ray_rows = _rows(ray_out / "bench.csv")
    assert [{k: r[k] for k in DETERMINISTIC} for r in ray_rows] == [
        {k: r[k] for k in DETERMINISTIC} for r in local_rows
    ]
    assert ray_result.aggregates["ppo/irl"] == result.aggregates["ppo/irl"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"agents": ("sac",)}, ValueError, r"unknown agent 'sac'; allowed: .*ppo"),
        ({"agents": ()}, ValueError, "agents must not be empty"),
        ({"tasks": ("mnist",)}, ValueError, r"unknown task 'mnist'; allowed: .*gmm2d"),
        ({"rewards": ("gail",)}, ValueError, r"unknown reward mode 'gail'; allowed: irl, exact"),
        ({"tasks": ("digits",), "rewards": ("exact",)}, ValueError,
         r"'exact' needs a mixture task.*'digits' has none"),
        ({"seeds": (0, 0)}, ValueError, "seeds must not repeat"),
        ({"seeds": (-1,)}, ValueError, "seeds must be a non-empty list of ints >= 0"),
        ({"backend": "dask"}, ValueError, r"unknown backend 'dask'; allowed: local, ray"),
        ({"n_eval": 1}, ValueError, r"n_eval must be an int >= 2, got 1"),
        ({"timesteps": 0}, ValueError, r"timesteps must be an int >= 1, got 0"),
        ({"num_cpus": 0}, ValueError, r"num_cpus must be an int >= 1"),
        ({"grid_points": "huge"}, ValueError, r"unknown grid points preset 'huge'"),
        ({"grid_families": ("spiral",)}, ValueError, r"unknown grid family 'spiral'"),
        ({"agent_overrides": {"trpo": {}}}, ValueError, r"agent_overrides for \['trpo'\]"),
        ({"agent_overrides": {"ppo": 3}}, TypeError, r"agent_overrides\['ppo'\] must be"),
        ({"reps": 0}, ValueError, "reps must be an int >= 1"),
        ({"tasks": ("gmm2d-random:1000",)}, ValueError,
         r"'gmm2d-random:1000': the seed must be an int in the development range 0-99 "
         r"\(held-out seeds are evaluated only by `diffgym suite --split heldout`\)"),
        ({"tasks": ("gmm2d-random:x",)}, ValueError, r"development range 0-99.*got 'x'"),
        ({"tasks": ("gmm2d-random:-1",)}, ValueError, r"development range 0-99.*got '-1'"),
        ({"tasks": ("gmm2d-random: 3",)}, ValueError, r"development range 0-99.*got ' 3'"),
        ({"tasks": ("gmm2d-random:03",)}, ValueError, r"development range 0-99.*got '03'"),
        ({"tasks": ("gmm2d-random",)}, ValueError,
         r"task 'gmm2d-random' is procedural: name its seed, gmm2d-random:K"),
        ({"tasks": ("gmm2d:3",)}, ValueError,
         r"task 'gmm2d:3': only procedural tasks \(gmm2d-random\) take a :K seed"),
        ({"tasks": ("gmm2d-random:2", "gmm2d-random:2")}, ValueError, "tasks must not repeat"),
        ({"tasks": ()}, ValueError, "tasks must not be empty"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, error, match):
    base = {"agents": ("ppo",), "tasks": ("gmm2d",)}
    with pytest.raises(error, match=match):
        BenchConfig(**{**base, **kwargs})


def test_exact_reward_trains_without_irl_on_the_terminal_log_density():
    from diffgym.agents.train import TrainConfig

    config = BenchConfig(agents=("reinforce",), tasks=("gmm2d-bias",), seeds=(3,),
                         rewards=("exact",), timesteps=100, out_dir="somewhere")
    (trial,) = bench._trials(config)
    train = TrainConfig.from_dict(trial.train)
    assert (train.irl, train.reward, train.seed, train.task) == (
        "none", "terminal_logp", 3, "gmm2d-bias"
    )
    assert trial.eval_seed == eval_seed(3) and trial.method == "reinforce/exact"
    assert trial.run_dir.endswith("runs/gmm2d-bias/reinforce_exact_seed3")


def test_procedural_task_spec_trains_and_searches_that_mixture(tmp_path):
    from diffgym.agents.train import TrainConfig
    from diffgym.envs import make_task

    assert bench.parse_bench_task("gmm2d-random:7") == ("gmm2d-random", {"seed": 7})
    assert bench.parse_bench_task("gmm2d") == ("gmm2d", {})
    config = BenchConfig(agents=("ppo",), tasks=("gmm2d-random:7", "gmm2d"), seeds=(0,),
                         rewards=("exact",), timesteps=100, out_dir=tmp_path)
    random_trial, plain_trial = bench._trials(config)
    train = TrainConfig.from_dict(random_trial.train)
    assert (train.task, dict(train.task_overrides)) == ("gmm2d-random", {"seed": 7})
    assert random_trial.task == "gmm2d-random:7"
    assert random_trial.run_dir.endswith("runs/gmm2d-random-7/ppo_exact_seed0")
    assert TrainConfig.from_dict(plain_trial.train).task_overrides == {}
    # The same YAML block as gmm2d (the procedural family shares its default configuration).
    assert config.timesteps_for("ppo", "gmm2d-random:7") == 100
    assert bench._make_bench_task("gmm2d-random:7").extra == make_task(
        "gmm2d-random", seed=7
    ).extra


def test_tiny_bench_on_a_procedural_task(tmp_path):
    config = BenchConfig(**{**TINY, "agents": ("ppo",), "seeds": (0,), "n_eval": 256,
                            "agent_overrides": {"ppo": TINY["agent_overrides"]["ppo"]},
                            "tasks": ("gmm2d-random:1",), "out_dir": tmp_path})
    result = run_bench(config)
    (row,) = [r for r in result.trials if r["task"] == "gmm2d-random:1"]
    assert (tmp_path / "grid" / "gmm2d-random-1").is_dir()
    assert (tmp_path / "runs" / "gmm2d-random-1" / "ppo_irl_seed0").is_dir()
    assert math.isfinite(row["metrics"]["sw2"])


def test_cli_builds_the_config(monkeypatch, tmp_path, capsys):
    from diffgym.cli import build_parser, main

    seen = {}

    def fake(config):
        seen["config"] = config
        raise ValueError("stop here")

    monkeypatch.setattr(bench, "run_bench", fake)
    argv = ["bench", "--agents", "ppo", "trpo", "--tasks", "gmm2d", "gmm2d-bias", "--seeds", "0",
            "2", "--reward", "irl", "exact", "--backend", "ray", "--out", str(tmp_path),
            "--timesteps", "500", "--n-eval", "128", "--num-cpus", "2", "--no-progress"]
    assert isinstance(build_parser().parse_args(argv), argparse.Namespace)
    assert main(argv) == 2  # the ValueError is reported as a CLI error
    assert "diffgym bench: error: stop here" in capsys.readouterr().err
    c = seen["config"]
    assert (c.agents, c.tasks, c.seeds, c.rewards) == (
        ("ppo", "trpo"), ("gmm2d", "gmm2d-bias"), (0, 2), ("irl", "exact")
    )
    assert (c.backend, c.out_dir, c.timesteps, c.n_eval, c.num_cpus, c.progress) == (
        "ray", tmp_path, 500, 128, 2, False
    )
    assert main(["bench", "--agents", "sac"]) == 2
    assert "unknown agent 'sac'" in capsys.readouterr().err


def test_markdown_and_csv_round_trip(tiny):
    result, out = tiny
    assert result.to_csv() == (out / "bench.csv").read_text()
    assert list(csv.DictReader(io.StringIO(result.to_csv())))[0]["task_excluded"] == "False"
