"""Tests of diffgym.benchmarks.compare on a tiny budget: files, rows and columns, resuming without
retraining, the cost ledger, the CLI, and errors for bad input."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch

from diffgym.benchmarks import compare, runs
from diffgym.benchmarks.compare import (
    BUDGETS,
    CompareConfig,
    ComparisonResult,
    eval_seed,
    run_comparison,
)
from diffgym.benchmarks.report import log_wandb

# A user-defined 2x2 mixture with unequal weights (no code change needed to compare on it).
MIXTURE = {
    "means": [[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]],
    "weights": [0.1, 0.2, 0.3, 0.4],
    "model_std": 0.5,
}
N_ENVS = 8
N_STEPS = 18  # one episode per env per round
TINY = dict(
    task_overrides=MIXTURE,
    seeds=(0,),
    timesteps=2 * N_ENVS * N_STEPS,  # two rounds
    n_eval=64,
    grid_points="small",
    progress=False,
    overhead_repeats=1,
    n_envs=N_ENVS,
    agent_overrides={"n_steps": N_STEPS, "batch_size": N_ENVS * N_STEPS, "n_epochs": 1},
)
METHOD = "ppo+gail/js"
RUN = "ppo_js_seed0"



@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[ComparisonResult, object]:
    out = tmp_path_factory.mktemp("compare")
    return run_comparison("gmm2d", out_dir=out, **TINY), out


def test_writes_every_file_with_the_rows_and_columns(tiny):
    result, out = tiny
    for name in ("results.json", "results.csv", "results.md", "quality_vs_cost.png",
                 "action_profile.png", "samples.png", "evals.json", "grid/grid.json"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0
    assert (out / "runs" / RUN / "final_metrics.json").is_file()
    assert not list(out.rglob("*.tmp")), "atomic writes leave no temporary files"

    methods = ["default", "grid/churn", "grid/guidance", "grid/interval", METHOD]
    assert [r.method for r in result.rows] == methods
    assert result.metric == "sw2" and result.direction == "min"
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == methods
    for col in ("sw2", "sw2_std", "mode_tv", "logp", "nfe_per_sample", "cost_nfe",
                "cost_seconds", "ratio_nfe", "ratio_seconds", "inference_overhead_pct"):
        assert col in rows[0], col
    learned = rows[-1]
    assert float(learned["ratio_nfe"]) > 0 and float(learned["inference_overhead_pct"]) == float(
        learned["inference_overhead_pct"]
    )
    assert rows[1]["ratio_nfe"] == ""  # grid rows have no ratio

    md = (out / "results.md").read_text()
    assert "| method |" in md and "verdict:" in md
    assert all(f"| {m} |" in md for m in methods)

    data = json.loads((out / "results.json").read_text())
    assert data["format"] == "diffgym-compare/1"
    assert data["settings"]["eval_seeds"] == [eval_seed(0)]
    assert data["settings"]["task_overrides"]["weights"] == MIXTURE["weights"]
    assert [r["method"] for r in data["rows"]] == methods
    assert data["verdict"] == result.verdict()
    assert data["best_grid_row"] in methods[1:4]
    assert list(data["paired_vs_best_grid"]) == [METHOD]


def test_rows_are_evaluated_identically(tiny):
    result, _ = tiny
    for r in result.rows:
        assert [s["eval_seed"] for s in r.per_seed] == [eval_seed(0)]
        assert all(s["cost"]["samples"] == TINY["n_eval"] for s in r.per_seed)
    learned = result.row(METHOD)
    assert learned.per_seed[0]["train_seed"] == 0
    profile = learned.info["profile"]
    assert set(profile) == {"churn", "guidance"}  # gmm2d's knobs
    assert len(profile["churn"]["mean"]) == len(result.sigmas) - 1
    grid_row = result.best_grid_row()
    assert grid_row is not None and grid_row.kind == "grid"
    deltas, mean, _ = result.paired_delta(learned)
    assert deltas == [pytest.approx(learned.metrics["sw2"] - grid_row.metrics["sw2"])]
    assert mean == pytest.approx(deltas[0])
    overhead = learned.info["overhead"]
    assert overhead["policy_transitions"] == overhead["schedule_transitions"] == 18
    assert math.isfinite(learned.inference_overhead_pct)


def test_cost_ratio_is_computed_from_the_ledger(tiny):
    result, out = tiny
    grid = json.loads((out / "grid" / "grid.json").read_text())
    points = [p for p in grid["points"] if p["family"] != "default"]
    grid_nfe = sum(p["cost"]["nfe"] for p in points)
    grid_s = sum(sum(p["cost"]["seconds"].values()) for p in points)

    run = out / "runs" / RUN
    train = json.loads((run / "cost.json").read_text())
    final = json.loads((run / "final_metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())["train"]
    train_eval_nfe = round(final["eval/nfe_per_sample"] * config["eval_samples"])
    learned = result.row(METHOD)
    eval_nfe = round(learned.nfe_per_sample * TINY["n_eval"])
    eval_s = sum(learned.per_seed[0]["cost"]["seconds"].values())
    # the inference temperature is chosen on the search seed: those evaluations count too
    selection = learned.per_seed[0]["selection_cost"]
    assert set(learned.per_seed[0]["selection"]) == {"greedy", "τ=1"}
    learned_nfe = train["rollout_nfe"] + train_eval_nfe + eval_nfe + selection["nfe"]
    learned_s = sum(train["seconds"].values()) + eval_s + sum(selection["seconds"].values())

    assert train["rollout_nfe"] > 0
    assert learned.cost.nfe == learned_nfe
    assert learned.cost.total_seconds == pytest.approx(learned_s)
    assert result.grid_cost.nfe == grid_nfe
    assert learned.cost_ratio_nfe == pytest.approx(grid_nfe / learned_nfe)
    assert learned.cost_ratio_seconds == pytest.approx(grid_s / learned_s)
    # A grid row costs its family's points; the default row its one evaluation.
    churn = [p for p in points if p["family"] == "churn"]
    assert result.row("grid/churn").cost.nfe == sum(p["cost"]["nfe"] for p in churn)
    assert result.row("default").cost.nfe == 35 * TINY["n_eval"]


def test_rerun_reuses_runs_grid_points_and_evaluations(tiny, monkeypatch):
    first, out = tiny
    model = out / "runs" / RUN / "final_model.zip"
    mtime = model.stat().st_mtime_ns

    def no_training(self):
        raise AssertionError("a finished run must not be retrained")

    monkeypatch.setattr("diffgym.agents.train.TrainingRun.train", no_training)
    again = run_comparison("gmm2d", out_dir=out, **TINY)
    assert again.num_trained == 0
    assert again.num_evaluations == 0
    assert again.grid.num_evaluated == 0 and again.grid.num_reused == len(first.grid.points)
    assert model.stat().st_mtime_ns == mtime
    for a, b in zip(first.rows, again.rows):
        assert a.metrics == b.metrics and a.cost == b.cost


def test_interrupted_run_resumes_from_its_checkpoint(tiny, tmp_path):
    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    run = copy / "runs" / RUN
    (run / "final_metrics.json").unlink()  # as if killed after the last checkpoint
    curve = (run / "learning_curve.csv").read_text()
    assert (run / "checkpoints" / "latest.json").is_file()
    result = run_comparison("gmm2d", out_dir=copy, **TINY)
    assert result.num_trained == 1
    assert (run / "final_metrics.json").is_file()
    assert (run / "learning_curve.csv").read_text() == curve  # no round was repeated


def test_eval_repeats_evaluate_one_run_on_several_seeds(tiny, tmp_path, monkeypatch):
    first, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)

    def no_training(self):
        raise AssertionError("a finished run must not be retrained")

    monkeypatch.setattr("diffgym.agents.train.TrainingRun.train", no_training)
    again = run_comparison("gmm2d", out_dir=copy, **{**TINY, "eval_repeats": 3})
    seeds = [eval_seed(0), eval_seed(0, 1), eval_seed(0, 2)]
    assert len(set(seeds)) == 3 and seeds[0] == first.settings["eval_seeds"][0]
    assert again.num_trained == 0 and again.settings["eval_seeds"] == seeds
    assert again.settings["eval_repeats"] == 3 and again.settings["heldout"] is False
    assert again.settings["noise_version"] == 2
    for a, b in zip(first.rows, again.rows):  # every row on the same three seeds
        assert [s["eval_seed"] for s in b.per_seed] == seeds
        assert b.per_seed[0]["metrics"] == a.per_seed[0]["metrics"]  # the first is reused
    learned = again.row(METHOD)
    assert [s["train_seed"] for s in learned.per_seed] == [0, 0, 0]
    assert len({s["temperature"] for s in learned.per_seed}) == 1  # chosen once per run
    # one run, counted once: the further evaluations measure the sampler and cost nothing
    assert learned.runs == 1 and learned.cost == first.row(METHOD).cost
    deltas, mean, std = again.paired_delta(learned)
    grid = again.best_grid_row()
    assert deltas == [pytest.approx(a["metrics"]["sw2"] - b["metrics"]["sw2"])
                      for a, b in zip(learned.per_seed, grid.per_seed)]
    assert math.isfinite(std)  # three pairs from one run
    with pytest.raises(ValueError, match=r"eval_repeats must be an int >= 1, got 0"):
        CompareConfig(task="gmm2d", eval_repeats=0)
    with pytest.raises(ValueError, match=r"eval_repeats=2 needs training seeds below 1000 .*"
                                         r"got \[1000\]"):
        CompareConfig(task="gmm2d", seeds=(0, 1000), eval_repeats=2)
    with pytest.raises(ValueError, match=r"repeats > 0 need a training seed in \[0, 1000\)"):
        eval_seed(1000, 1)
    assert CompareConfig(task="gmm2d", seeds=(1000,)).eval_repeats == 1  # no repeat: any seed


def test_run_with_another_config_is_refused(tiny, tmp_path):
    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(ValueError, match="another config"):
        run_comparison("gmm2d", out_dir=copy, **{**TINY, "timesteps": 3 * N_ENVS * N_STEPS})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"agents": ("dqn",)}, r"unknown agent 'dqn'; allowed: .*ppo"),
        ({"divergences": ("kl",)}, r"unknown divergence 'kl'; allowed: .*js"),
        ({"irl": "bc"}, r"unknown irl method 'bc'; allowed: gail, airl, none"),
        ({"grid_families": ("annealing",)}, r"unknown grid family 'annealing'; allowed: churn"),
        ({"grid_points": "huge"}, r"unknown grid points preset 'huge'; allowed: small, default"),
        ({"backend": "slurm"}, r"unknown backend 'slurm'; allowed: local, ray"),
        ({"seeds": (0, -1)}, r"seeds must be"),
        ({"seeds": (0, 0)}, r"seeds must not repeat"),
        ({"n_eval": 1}, r"n_eval must be"),
        ({"agents": ()}, r"agents must not be empty"),
        ({"reward_options": {"temperature": 1.0}},
         r"unknown reward option 'temperature'; allowed: disc_grad_penalty, disc_spectral_norm"),
        ({"reward_options": {"terminal_mmd_weight": -1.0}},
         r"terminal_mmd_weight must be a finite number >= 0, got -1.0"),
        ({"irl": "none", "reward_options": {"action_cost": 0.1}},
         r"need irl 'gail' or 'airl', got irl 'none'"),
    ],
)
def test_bad_input_names_the_allowed_values(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        run_comparison("gmm2d", out_dir=tmp_path, **{**TINY, **kwargs})
    assert not (tmp_path / "runs").exists()  # rejected before any work


def test_unknown_task_and_missing_knob_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown task 'cifar'; allowed: .*gmm2d"):
        run_comparison("cifar", out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"guidance knob.*families for this task: churn"):
        run_comparison("gmm2d-bias", out_dir=tmp_path, grid_families=("guidance",))


def _parse(argv):
    from diffgym.cli import build_parser

    return build_parser().parse_args(argv)


def test_cli_resolves_the_budget_and_prints_the_table(tiny, monkeypatch, capsys, tmp_path):
    result, _ = tiny
    seen = {}

    def fake(config, *, progress):
        seen.update(config=config, progress=progress)
        return result

    monkeypatch.setattr(compare, "run_comparison", fake)
    args = _parse(["compare", "--task", "gmm2d", "--budget", "quick", "--n-eval", "128",
                   "--eval-repeats", "2", "--out", str(tmp_path), "--no-progress"])
    assert args.func(args) == 0
    quick = BUDGETS["quick"]
    config = seen["config"]
    assert config.task == "gmm2d" and config.n_eval == 128  # flag wins over the budget
    assert config.eval_repeats == 2
    assert config.timesteps == quick.timesteps and config.seeds == quick.seeds
    assert config.grid_points == quick.grid_points and seen["progress"] is False
    printed = capsys.readouterr().out
    assert "| method |" in printed and "verdict:" in printed

    with pytest.raises(ValueError, match=r"unknown budget 'huge'; allowed: quick, main, full"):
        args = _parse(["compare", "--budget", "huge"])
        args.func(args)


def test_config_validates_and_replaces(tmp_path):
    config = CompareConfig(task="gmm2d", seeds=(0,), n_eval=64, out_dir=str(tmp_path))
    assert config.out_dir == tmp_path and config.agents == ("ppo",)
    assert config.replace(n_eval=128).n_eval == 128
    with pytest.raises(ValueError, match=r"n_eval must be an int in \[2, 1000000\), got 1"):
        config.replace(n_eval=1)
    with pytest.raises(TypeError, match="either a CompareConfig or keyword arguments"):
        run_comparison(config, n_eval=64)


def test_reward_options_reach_every_training_run_and_the_row(compare_config_of, tmp_path):
    """``--reward-option`` (repeatable) becomes ``CompareConfig.reward_options``, and that is
    the ``irl_kwargs`` of every run's TrainConfig (so a run with other options is another run)."""
    from types import SimpleNamespace

    args = _parse(["compare", "--budget", "quick", "--out", str(tmp_path),
                   "--reward-option", "terminal_mmd_weight=5",
                   "--reward-option", "disc_spectral_norm=true"])
    config = compare_config_of(args)
    want = {"terminal_mmd_weight": 5.0, "disc_spectral_norm": True}
    assert config.reward_options == want
    train = compare._train_config(SimpleNamespace(config=config), "reinforce", "js", 0, 100)
    assert train.irl_kwargs == want
    plain = compare._train_config(SimpleNamespace(config=config.replace(reward_options={})),
                                  "reinforce", "js", 0, 100)
    assert plain.irl_kwargs == {} and plain.fingerprint() != train.fingerprint()


def test_cli_refuses_a_reward_option_given_twice(capsys, tmp_path):
    from diffgym.cli import main

    assert main(["compare", "--budget", "quick", "--out", str(tmp_path / "c"),
                 "--reward-option", "action_cost=0.1", "--reward-option", "action_cost=0"]) == 2
    err = capsys.readouterr().err
    assert "--reward-option action_cost given more than once" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("option, message", [
    ("terminal_mmd_weight", "expected NAME=VALUE"),
    ("gamma=1", "expected NAME=VALUE with NAME one of disc_grad_penalty"),
    ("action_cost=-0.5", "action_cost must be a finite number >= 0, got -0.5"),
    ("action_cost=nan", "action_cost must be a finite number >= 0"),
    ("disc_spectral_norm=2", "disc_spectral_norm must be true or false, got '2'"),
])
def test_cli_bad_reward_option_exits_2(option, message, capsys, tmp_path):
    from diffgym.cli import main

    with pytest.raises(SystemExit) as exit_:  # argparse's own error exit
        main(["compare", "--reward-option", option, "--out", str(tmp_path / "c")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "diffgym compare: error: argument --reward-option:" in err and message in err
    assert not (tmp_path / "c").exists()


def test_policy_options_reach_every_training_run(compare_config_of, tmp_path):
    """``--policy-option`` becomes ``CompareConfig.agent_overrides`` (policy_kwargs, merged key by
    key into the YAML's), and so the agent overrides of every run's TrainConfig."""
    from types import SimpleNamespace

    from diffgym.agents.registry import agent_config
    from diffgym.envs import DiffusionSamplingEnv

    args = _parse(["compare", "--budget", "quick", "--out", str(tmp_path),
                   "--policy-option", "sample_input=false", "--policy-option", "neutral_bias=1.5",
                   "--policy-option", "hidden=16"])
    config = compare_config_of(args)
    want = {"policy_kwargs": {"neutral_bias": 1.5,
                              "features_extractor_kwargs": {"sample_input": False, "hidden": 16}}}
    assert config.agent_overrides == want
    train = compare._train_config(SimpleNamespace(config=config), "reinforce", "js", 0, 100)
    assert train.agent_overrides == want
    plain = compare._train_config(SimpleNamespace(config=config.replace(agent_overrides={})),
                                  "reinforce", "js", 0, 100)
    assert plain.fingerprint() != train.fingerprint()
    hp = agent_config("reinforce", DiffusionSamplingEnv("gmm2d", 2), **want)
    assert hp.policy_kwargs["neutral_bias"] == 1.5
    feats = hp.policy_kwargs["features_extractor_kwargs"]
    assert feats == {"features_dim": 32, "hidden": 16, "sample_input": False}  # YAML's kept
    assert compare_config_of(_parse(["compare", "--budget", "quick"])).agent_overrides == {}
    # and the learned row's detail names them (the features extractor's flattened)
    assert compare._policy_detail(want) == "neutral_bias=1.5, sample_input=False, hidden=16, "
    assert compare._policy_detail({"n_steps": 18}) == ""


@pytest.mark.parametrize("option, message", [
    ("sample_input", "expected NAME=VALUE with NAME one of sample_input"),
    ("net_arch=[]", "expected NAME=VALUE with NAME one of sample_input"),
    ("sample_input=0", "--policy-option sample_input: expected true or false, got '0'"),
    ("hidden=0", "--policy-option hidden: expected an int >= 1, got '0'"),
    ("hidden=2.5", "--policy-option hidden: expected an int >= 1, got '2.5'"),
    ("neutral_bias=-1", "--policy-option neutral_bias: expected a finite number >= 0, got '-1'"),
    ("neutral_bias=inf", "--policy-option neutral_bias: expected a finite number >= 0"),
])
def test_cli_bad_policy_option_exits_2(option, message, capsys, tmp_path):
    from diffgym.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["suite", "--task-seeds", "0", "--policy-option", option,
              "--out", str(tmp_path / "s")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "diffgym suite: error: argument --policy-option:" in err and message in err
    assert not (tmp_path / "s").exists()


def test_cli_refuses_a_policy_option_given_twice(capsys, tmp_path):
    from diffgym.cli import main

    assert main(["compare", "--budget", "quick", "--out", str(tmp_path / "c"),
                 "--policy-option", "hidden=8", "--policy-option", "hidden=16"]) == 2
    assert "--policy-option hidden given more than once" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_wandb_logging_runs_disabled(tiny, monkeypatch):
    pytest.importorskip("wandb")
    result, out = tiny
    monkeypatch.setenv("WANDB_MODE", "disabled")
    log_wandb(result, out)


def test_a_held_out_seed_needs_heldout_in_the_library_too(tmp_path):
    """Held-out discipline without the command line: CompareConfig refuses a held-out seed of a
    procedural task unless ``heldout=True`` (a suite's held-out split sets it)."""
    from diffgym.benchmarks.suite import SuiteConfig

    with pytest.raises(ValueError, match=r"seed 1005 is a held-out seed of gmm2d-random "
                       r"\(1000-1099\); develop and tune on seeds 0-99, and pass heldout=True"):
        CompareConfig(task="gmm2d-random", task_overrides={"seed": 1005}, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())
    ok = CompareConfig(task="gmm2d-random", task_overrides={"seed": 1005}, heldout=True)
    assert ok.heldout and dict(ok.task_overrides) == {"seed": 1005}
    assert not CompareConfig(task="gmm2d-random", task_overrides={"seed": 5}).heldout
    suite = SuiteConfig(task_seeds=(1005,), split="heldout")
    assert suite.compare_config(1005).heldout
    assert not SuiteConfig(task_seeds=(5,)).compare_config(5).heldout


def test_cli_task_seed_is_the_seed_task_override(compare_config_of, tmp_path):
    args = _parse(["compare", "--task", "gmm2d-random", "--task-seed", "5", "--budget", "quick",
                   "--out", str(tmp_path)])
    config = compare_config_of(args)
    assert config.task == "gmm2d-random" and dict(config.task_overrides) == {"seed": 5}


def test_schedule_family_row_runs_its_own_schedule(tmp_path):
    """``grid_families=("schedule",)``: the grid row is the best N x rho point, re-evaluated on
    the evaluation seed with its own number of steps (its NFE per sample is 2 N - 1)."""
    result = run_comparison("gmm2d", out_dir=tmp_path, **{**TINY, "grid_families": ("schedule",),
                                                           "plots": False})
    assert result.grid.num_points == 1 + 4  # default + the small N x rho preset
    row = result.best_grid_row()
    assert row is not None and row.method == "grid/schedule"
    steps = row.info["params"]["num_steps"]
    nfe = row.per_seed[0]["cost"]["nfe"] / row.per_seed[0]["cost"]["samples"]
    assert steps in (6, 12) and nfe == 2 * steps - 1


def test_compare_with_the_step_knob(tmp_path):
    """A policy trained with the step knob is evaluated on its base grid (its NFE per sample is
    what its steps cost), profiled on the base grid, and plotted; the default row is plain Heun."""
    overrides = {**MIXTURE, "step_advances": (2, 1, 3, 4)}
    result = run_comparison("gmm2d", out_dir=tmp_path, **{**TINY, "task_overrides": overrides,
                                                           "grid_families": ("schedule",)})
    default = result.row("default")
    assert default.per_seed[0]["cost"]["nfe"] == TINY["n_eval"] * (2 * N_STEPS - 1)
    learned = result.row(METHOD)
    base = 2 * (N_STEPS - 1) + 1
    assert len(learned.info["profile_sigmas"]) == base + 1
    assert len(learned.info["profile"]["step"]["mean"]) == base
    nfe = learned.per_seed[0]["nfe_per_sample"]
    assert 0 < nfe <= 2 * base - 1
    assert (tmp_path / "action_profile.png").is_file()


@pytest.mark.parametrize(("greedy", "tau1", "default", "want"), [
    ((0.30, 0.040), (0.20, 0.050), (0.31, 0.045), (None, False)),  # tau=1 raises the guard
    ((0.30, 0.040), (0.20, 0.044), (0.31, 0.045), (1.0, False)),  # both keep it: best sw2
    ((0.32, 0.050), (0.20, 0.050), (0.31, 0.045), (None, True)),  # neither: the default
    ((0.32, 0.040), (0.33, 0.044), (0.31, 0.045), (None, True)),  # the default's sw2 is best
])
def test_inference_guard_keeps_the_guard_metric_of_the_default(greedy, tau1, default, want):
    """``inference_guard``: the best primary metric among the temperatures and the default
    sampler, of those no worse than the default on the guard metric (search-seed numbers)."""
    from diffgym.benchmarks.runs import choose_inference

    rec = lambda sw2, tv: {"metrics": {"sw2": sw2, "mode_tv": tv}}  # noqa: E731
    selection = {None: rec(*greedy), 1.0: rec(*tau1)}
    ref = {"sw2": default[0], "mode_tv": default[1]}
    assert choose_inference(selection, "sw2", "min", "mode_tv", ref) == want
    # without the guard, the best sw2 among the temperatures, whatever the masses
    best = min(selection, key=lambda t: selection[t]["metrics"]["sw2"])
    assert choose_inference(selection, "sw2", "min", None, ref) == (best, False)
    with pytest.raises(ValueError, match="inference guard 'fid' is not a metric of"):
        choose_inference(selection, "sw2", "min", "fid", ref)
    with pytest.raises(ValueError, match="needs the default sampler's row"):
        choose_inference(selection, "sw2", "min", "mode_tv", None)


@pytest.mark.parametrize(("greedy", "tau1", "want"), [
    # a strict candidate beats the default: the tolerance changes nothing, even for a better
    # sw2 within it
    ((0.25, 0.044), (0.20, 0.047), (None, False)),
    # no strict candidate beats the default: the best sw2 within the tolerance
    ((0.32, 0.044), (0.20, 0.047), (1.0, False)),
    ((0.22, 0.048), (0.20, 0.047), (1.0, False)),
    # within the tolerance but not better than the default's sw2, or beyond it: the default
    ((0.32, 0.040), (0.315, 0.049), (None, True)),
    ((0.20, 0.051), (0.20, 0.0505), (None, True)),
])
def test_inference_guard_tolerance_is_a_fallback_before_the_default(greedy, tau1, want):
    """``tolerance``: only when no candidate that is no worse on the guard beats the default,
    the best primary metric among those at most ``tolerance`` worse on it (default's search-seed
    sw2 0.31, mode TV 0.045; tolerance 0.005)."""
    from diffgym.benchmarks.runs import choose_inference

    rec = lambda sw2, tv: {"metrics": {"sw2": sw2, "mode_tv": tv}}  # noqa: E731
    selection = {None: rec(*greedy), 1.0: rec(*tau1)}
    ref = {"sw2": 0.31, "mode_tv": 0.045}
    assert choose_inference(selection, "sw2", "min", "mode_tv", ref, 0.005) == want
    strict = choose_inference(selection, "sw2", "min", "mode_tv", ref)
    if want[1] or want[0] is None:  # the strict rule already chose it
        assert strict == want
    else:
        assert strict == (None, True)


def test_inference_guard_tolerance_config_and_cli(compare_config_of, tmp_path):
    """The tolerance is a finite number >= 0 and applies to fallback rules (it needs some); the
    CLI and the suite forward it."""
    fb = {"inference_guard": "mode_tv", "inference_candidates": ("mean",),
          "inference_fallback": ("greedy",)}
    for bad in (-0.1, math.nan, math.inf, True, "0.1"):
        with pytest.raises(ValueError, match="inference_guard_tolerance must be a finite number"):
            CompareConfig(**fb, inference_guard_tolerance=bad)
    with pytest.raises(ValueError, match="inference_guard_tolerance 0.01 applies to fallback "
                       "rules; give some"):
        CompareConfig(inference_guard="mode_tv", inference_guard_tolerance=0.01)
    assert CompareConfig(inference_guard="mode_tv").inference_guard_tolerance == 0.0
    args = _parse(["compare", "--budget", "quick", "--inference-guard", "mode_tv",
                   "--inference-candidates", "mean", "--inference-fallback", "greedy",
                   "--inference-guard-tolerance", "0.005", "--out", str(tmp_path)])
    assert compare_config_of(args).inference_guard_tolerance == 0.005
    from diffgym.benchmarks.suite import SuiteConfig

    suite = SuiteConfig(task_seeds=(0,), **fb, inference_guard_tolerance=0.005)
    assert suite.compare_config(0).inference_guard_tolerance == 0.005


def test_inference_guard_config_and_the_default_sampler_as_the_learned_row(tiny, tmp_path,
                                                                            monkeypatch):
    """A bad guard name is refused; when the guard keeps the default sampler, the learned row
    is the default row's evaluation on the same seeds, and its cost counts the training run,
    the selection runs, the default's search-seed run and that evaluation."""
    with pytest.raises(ValueError, match="unknown inference guard metric 'masses'; allowed: .*"
                       "mode_tv"):
        CompareConfig(inference_guard="masses")
    first, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setattr(runs, "choose_inference", lambda *args: (None, True))
    again = run_comparison("gmm2d", out_dir=copy, **{**TINY, "inference_guard": "mode_tv"})
    assert again.num_trained == 0 and again.settings["inference_guard"] == "mode_tv"
    rows = {r.method: r for r in again.rows}
    learned, default = rows[METHOD], rows["default"]
    assert learned.metrics == default.metrics and learned.nfe_per_sample == default.nfe_per_sample
    assert learned.per_seed[0]["inference"] == "default" and "inference default" in learned.detail
    guard = learned.per_seed[0]["selection_guard"]  # what the choice compared, for the record
    assert set(guard) == {"greedy", "τ=1", "default"}
    assert guard["default"] == default.info["search_metrics"]["mode_tv"]
    assert learned.inference_overhead_pct is None
    grid = json.loads((copy / "grid" / "grid.json").read_text())
    old = {r.method: r for r in first.rows}[METHOD]
    rec = old.per_seed[0]
    train_nfe = old.cost.nfe - rec["selection_cost"]["nfe"] - rec["cost"]["nfe"]
    search_default = next(p for p in grid["points"] if p["family"] == "default")["cost"]["nfe"]
    assert learned.cost.nfe == (train_nfe + rec["selection_cost"]["nfe"] + search_default
                                + default.per_seed[0]["cost"]["nfe"])


def test_cli_inference_guard(compare_config_of, tmp_path):
    args = _parse(["compare", "--budget", "quick", "--inference-guard", "mode_tv",
                   "--out", str(tmp_path)])
    assert compare_config_of(args).inference_guard == "mode_tv"
    args = _parse(["compare", "--budget", "quick", "--out", str(tmp_path)])
    assert compare_config_of(args).inference_guard is None


def test_search_inference_prefers_the_final_model_on_ties_and_records_every_candidate():
    """Ties go to the later checkpoint (the final model first); the records hold every
    candidate's metric (and guard metric); one candidate with ``checkpoints`` still writes them;
    the default sampler's choice records no checkpoint round."""
    from types import SimpleNamespace

    def rec(sw2, tv=0.1):
        return {"metrics": {"sw2": sw2, "mode_tv": tv}, "cost": {"nfe": 10}}

    values = {(1, None): rec(0.5), (1, 1.0): rec(0.3), (2, None): rec(0.4), (2, 1.0): rec(0.3)}
    cands = [SimpleNamespace(round=1), SimpleNamespace(round=2)]
    temps = (None, 1.0)
    ev = lambda c, t: values[(c.round, t)]  # noqa: E731
    chosen, tau, use_default, sel, cost, fields = runs.search_inference(
        cands, ev, temps, "sw2", "min", checkpoints=True)
    assert (chosen.round, tau, use_default) == (2, 1.0, False)  # the tie goes to round 2
    assert cost.nfe == 40 and sel == {None: values[(2, None)], 1.0: values[(2, 1.0)]}
    assert fields == {"checkpoint_round": 2, "total_rounds": 2, "checkpoint_selection": {
        "1": {"greedy": 0.5, "τ=1": 0.3}, "2": {"greedy": 0.4, "τ=1": 0.3}}}
    values[(1, 1.0)] = rec(0.29)  # strictly better: leaves the final model
    assert runs.search_inference(cands, ev, temps, "sw2", "min")[:2] == (cands[0], 1.0)
    _, _, use_default, _, _, fields = runs.search_inference(
        cands, ev, temps, "sw2", "min", "mode_tv", {"sw2": 0.1, "mode_tv": 0.05},
        checkpoints=True)
    assert use_default and fields["checkpoint_round"] is None
    assert fields["checkpoint_selection_guard"]["1"] == {"greedy": 0.1, "τ=1": 0.1}
    one = runs.search_inference(cands[1:], ev, temps, "sw2", "min", checkpoints=True)[-1]
    assert set(one["checkpoint_selection"]) == {"2"} and one["checkpoint_round"] == 2


def test_search_inference_evaluates_the_fallback_only_when_the_guard_keeps_the_default():
    """``fallback``: not evaluated (nor counted) when a candidate qualifies; evaluated, counted
    and chosen among when the choice would be the default sampler, with the tolerance (which
    never admits a candidate); the default sampler still when no fallback rule qualifies."""
    from types import SimpleNamespace

    def rec(sw2, tv, nfe=10):
        return {"metrics": {"sw2": sw2, "mode_tv": tv}, "cost": {"nfe": nfe}}

    run = SimpleNamespace(round=1)
    ref = {"sw2": 0.3, "mode_tv": 0.05}
    values = {"mean": rec(0.2, 0.04), None: rec(0.1, 0.051, nfe=7)}
    calls = []

    def ev(c, t):
        calls.append(t)
        return values[t]

    args = ([run], ev, ("mean",), "sw2", "min", "mode_tv", ref)
    _, tau, use_default, sel, cost, _ = runs.search_inference(*args, fallback=(None,))
    assert (tau, use_default, calls, cost.nfe, list(sel)) == ("mean", False, ["mean"], 10,
                                                               ["mean"])
    values["mean"] = rec(0.2, 0.07)  # the candidate raises the guard: the fallback runs
    calls.clear()
    _, tau, use_default, sel, cost, _ = runs.search_inference(*args, fallback=(None,))
    assert (tau, use_default, calls, cost.nfe) == (None, True, ["mean", None], 17)
    assert list(sel) == ["mean", None]  # both recorded, in order
    # greedy's 0.051 is within a tolerance of 0.005 of the default's 0.05: chosen
    _, tau, use_default, _, _, _ = runs.search_inference(*args, fallback=(None,),
                                                         tolerance=0.005)
    assert (tau, use_default) == (None, False)
    values["mean"] = rec(0.05, 0.052)  # within the tolerance too, but a candidate: strict
    assert runs.search_inference(*args, fallback=(None,), tolerance=0.005)[1] is None
    calls.clear()  # without a fallback, nothing more is evaluated
    assert runs.search_inference(*args)[2] is True and calls == ["mean"]


def test_inference_fallback_config_and_cli(compare_config_of, tmp_path):
    """Fallback rules are normalised, need a guard and must not repeat a candidate; the CLI
    forwards them and the suite passes them to each comparison."""
    cfg = CompareConfig(inference_guard="mode_tv", inference_candidates=("mean:f=2",),
                        inference_fallback=("greedy",))
    assert cfg.inference_fallback == (None,)
    assert CompareConfig(inference_fallback=[]).inference_fallback == ()  # none, as ()
    with pytest.raises(ValueError, match=r"inference_fallback \['greedy'\] needs an inference "
                       "guard"):
        CompareConfig(inference_fallback=("greedy",))
    with pytest.raises(ValueError, match=r"must not repeat an inference candidate; both hold "
                       r"\['greedy'\]"):
        CompareConfig(inference_guard="mode_tv", inference_fallback=("greedy",))
    with pytest.raises(ValueError, match="inference candidate"):
        CompareConfig(inference_guard="mode_tv", inference_fallback=(-1.0,))
    args = _parse(["compare", "--budget", "quick", "--inference-guard", "mode_tv",
                   "--inference-candidates", "mean:f=2", "--inference-fallback", "greedy",
                   "--out", str(tmp_path)])
    assert compare_config_of(args).inference_fallback == (None,)
    from diffgym.benchmarks.suite import SuiteConfig

    suite = SuiteConfig(task_seeds=(0,), inference_guard="mode_tv",
                        inference_candidates=("mean",), inference_fallback=("greedy",))
    assert suite.compare_config(0).inference_fallback == (None,)


def test_a_forced_checkpoint_is_evaluated_and_counted(tmp_path, monkeypatch, caplog):
    """With the choice forced to round 1 at tau = 1, the evaluation seed runs round 1's policy
    (not the final model's), and the row's cost is training + the 4 selection runs + that
    evaluation; forced to the default sampler under a guard, no checkpoint round is recorded;
    a run as long as one round chooses among 1 checkpoint without failing."""
    from diffgym.agents.train import load_run_config
    from diffgym.benchmarks.evaluate import task_fingerprint
    from diffgym.envs import make_task

    cfg = {**TINY, "select_checkpoints": 2}
    base = run_comparison("gmm2d", out_dir=tmp_path / "a", **cfg)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    monkeypatch.setattr(runs, "choose_inference", lambda *a: ((1, 1.0), False))
    forced = run_comparison("gmm2d", out_dir=tmp_path / "b", **cfg)
    assert forced.num_trained == 0
    row = {r.method: r for r in forced.rows}[METHOD]
    rec = row.per_seed[0]
    assert rec["checkpoint_round"] == 1 and rec["temperature"] == 1.0
    run_dir = tmp_path / "b" / "runs" / RUN
    trained = runs.train_or_load(load_run_config(run_dir), run_dir, device="cpu",
                                 progress=False)
    task = make_task("gmm2d", **MIXTURE)
    got = {}
    for c in trained.at_milestones(2):
        got[c.round] = runs.evaluate_policy(
            run=c, config=trained.config, method=METHOD, task=task,
            task_fp=task_fingerprint(task), n=TINY["n_eval"], device="cpu",
            cache=runs.EvalCache(None), tau=1.0, seed=rec["eval_seed"])[1]["metrics"]
    assert rec["metrics"] == got[1] and got[1] != got[2]
    was = {r.method: r for r in base.rows}[METHOD].per_seed[0]
    train_nfe = {r.method: r for r in base.rows}[METHOD].cost.nfe - was["selection_cost"][
        "nfe"] - was["cost"]["nfe"]
    assert row.cost.nfe == train_nfe + rec["selection_cost"]["nfe"] + rec["cost"]["nfe"]
    assert rec["selection_cost"] == was["selection_cost"]  # the same four runs, counted once

    shutil.copytree(tmp_path / "a", tmp_path / "c")
    monkeypatch.setattr(runs, "choose_inference", lambda *a: (None, True))
    guarded = run_comparison("gmm2d", out_dir=tmp_path / "c",
                             **{**cfg, "inference_guard": "mode_tv"})
    rec = {r.method: r for r in guarded.rows}[METHOD].per_seed[0]
    assert rec["inference"] == "default" and rec["checkpoint_round"] is None
    assert set(rec["checkpoint_selection_guard"]) == {"1", "2"}

    monkeypatch.undo()
    with caplog.at_level("WARNING", logger="diffgym.benchmarks.runs"):
        short = run_comparison("gmm2d", out_dir=tmp_path / "d",
                               **{**cfg, "timesteps": N_ENVS * N_STEPS})  # one round
    row = {r.method: r for r in short.rows}[METHOD]
    assert row.per_seed[0]["total_rounds"] == 1 and "best of 1 checkpoints" in row.detail
    assert "has 1 rounds: choosing among 1 checkpoints, not 2" in caplog.text  # said, not silent


def _search_seed_records(out, *, n: int, modes: bool = False) -> dict[str, dict]:
    """The comparison's run in ``out`` evaluated at each default inference temperature on the
    search seed with ``n`` samples (as the comparison scores its candidates), by name."""
    from diffgym.agents.train import load_run_config
    from diffgym.benchmarks.evaluate import SEARCH_SEED, task_fingerprint
    from diffgym.envs import make_task

    run_dir = out / "runs" / RUN
    trained = runs.train_or_load(load_run_config(run_dir), run_dir, device="cpu", progress=False)
    task = make_task("gmm2d", **MIXTURE)
    return {compare.tau_name(t): runs.evaluate_policy(
        run=trained, config=trained.config, method=METHOD, task=task,
        task_fp=task_fingerprint(task), n=n, device="cpu", cache=runs.EvalCache(None), tau=t,
        seed=SEARCH_SEED, modes=modes)[1] for t in compare.INFERENCE_TEMPERATURES}


def test_selection_n_chooses_the_temperature_on_more_samples(tiny, tmp_path):
    """``selection_n``: the temperatures are scored on the search seed at that n (the same
    numbers as ``evaluate_policy`` there), their cost is what the learned row counts, and the
    evaluation seeds keep ``n_eval``."""

    with pytest.raises(ValueError, match="selection_n must be None or an int in .*, got 1"):
        CompareConfig(selection_n=1)
    first, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again = run_comparison("gmm2d", out_dir=copy, **{**TINY, "selection_n": 128})
    assert again.num_trained == 0 and again.settings["selection_n"] == 128
    learned = {r.method: r for r in again.rows}[METHOD]
    old = {r.method: r for r in first.rows}[METHOD]
    rec = learned.per_seed[0]
    nfe = 0
    for name, r in _search_seed_records(copy, n=128).items():
        assert rec["selection"][name] == r["metrics"]["sw2"]
        nfe += r["cost"]["nfe"]
    assert rec["selection_cost"]["nfe"] == nfe
    assert rec["selection_cost"]["nfe"] > old.per_seed[0]["selection_cost"]["nfe"]
    assert rec["cost"]["samples"] == 64 and "chosen on 128 samples" in learned.detail
    was = old.per_seed[0]
    train_nfe = old.cost.nfe - was["selection_cost"]["nfe"] - was["cost"]["nfe"]
    assert learned.cost.nfe == train_nfe + nfe + rec["cost"]["nfe"]


def test_the_guard_at_selection_n_compares_with_the_default_at_that_n(tiny, tmp_path):
    """``selection_n`` with the guard: the reference is the default sampler on the search seed
    at ``selection_n`` (the grid's own evaluation arguments), recorded as the guard's input and
    counted once in the selection cost, with every candidate's run at that n."""
    from diffgym.benchmarks.evaluate import SEARCH_SEED, evaluate_sampler, task_fingerprint
    from diffgym.envs import make_task

    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cfg = {**TINY, "inference_guard": "mode_tv", "plots": False}
    at_eval = run_comparison("gmm2d", out_dir=copy, **cfg)
    again = run_comparison("gmm2d", out_dir=copy, **{**cfg, "selection_n": 128})
    assert again.num_trained == 0 and again.settings["selection_n"] == 128
    task = make_task("gmm2d", **MIXTURE)
    ref = evaluate_sampler(task, None, n=128, seed=SEARCH_SEED, guided=False,
                           category="grid_point")
    assert ref.cost.nfe == 128 * 35  # plain Heun: 2 x 18 - 1 NFE per sample
    rec = {r.method: r for r in again.rows}[METHOD].per_seed[0]
    was = {r.method: r for r in at_eval.rows}[METHOD].per_seed[0]
    assert rec["selection_guard"]["default"] == ref.metrics["mode_tv"]
    default_row = next(r for r in at_eval.rows if r.kind == "default")
    assert was["selection_guard"]["default"] != ref.metrics["mode_tv"]  # the grid's, at n_eval
    same_n = runs.guard_reference(task, task_fingerprint(task), TINY["n_eval"], seed=SEARCH_SEED,
                                  device="cpu", cache=runs.EvalCache(None))
    assert same_n["metrics"]["mode_tv"] == was["selection_guard"]["default"]  # = the grid's point
    searched = 0
    for name, r in _search_seed_records(copy, n=128).items():
        assert rec["selection_guard"][name] == r["metrics"]["mode_tv"]
        searched += r["cost"]["nfe"]
    assert rec["selection_cost"]["nfe"] == searched + ref.cost.nfe
    # the default row itself (the evaluation seeds) is not changed by the guard's n
    assert {r.method: r for r in again.rows}["default"].metrics == default_row.metrics


def test_cli_select_checkpoints(compare_config_of, tmp_path):
    args = _parse(["compare", "--budget", "quick", "--select-checkpoints", "4",
                   "--out", str(tmp_path)])
    assert compare_config_of(args).select_checkpoints == 4
    assert compare_config_of(args).selection_n is None
    sel = _parse(["compare", "--budget", "quick", "--selection-n", "8192", "--out", str(tmp_path)])
    assert compare_config_of(sel).selection_n == 8192
    assert compare.CompareConfig().select_checkpoints == 1
    assert compare._train_config(
        _ctx_of(compare_config_of(args)), "ppo", "js", 0, 100).keep_milestones == 4


def _ctx_of(config):
    """A comparison context holding only ``config`` (what ``_train_config`` reads)."""
    ctx = compare._Context.__new__(compare._Context)
    ctx.config = config
    return ctx


def test_a_guard_the_task_cannot_apply_fails_before_any_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the guard must be checked before training")

    monkeypatch.setattr(compare, "train_or_load", no_training)
    with pytest.raises(ValueError, match="inference guard 'fid' is not a metric of task 'gmm2d'"):
        run_comparison("gmm2d", out_dir=tmp_path, **{**TINY, "inference_guard": "fid"})


def test_select_checkpoints_chooses_checkpoint_and_temperature_on_the_search_seed(tiny, tmp_path):
    """``select_checkpoints=2`` keeps round 1 of the two-round run, evaluates both rounds at
    both temperatures on the search seed, evaluates the best on the evaluation seed, and counts
    all four selection runs; a run trained without the milestones is refused by name."""
    from diffgym.agents.checkpoint import read_checkpoint
    from diffgym.agents.train import load_run_config
    from diffgym.benchmarks.evaluate import SEARCH_SEED, task_fingerprint
    from diffgym.benchmarks.report import tau_name
    from diffgym.envs import make_task

    with pytest.raises(ValueError, match=r"select_checkpoints must be an int in \[1, 20\], got 0"):
        CompareConfig(select_checkpoints=0)
    with pytest.raises(ValueError, match="select_checkpoints must be an int in .*, got True"):
        CompareConfig(select_checkpoints=True)
    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(ValueError, match=r"lacks the checkpoints of rounds \[1\] that selecting "
                       "among 2 checkpoints needs"):
        run_comparison("gmm2d", out_dir=copy, **{**TINY, "select_checkpoints": 2})

    result = run_comparison("gmm2d", out_dir=tmp_path / "sel", **{**TINY, "select_checkpoints": 2})
    assert result.settings["select_checkpoints"] == 2
    learned = {r.method: r for r in result.rows}[METHOD]
    rec = learned.per_seed[0]
    assert rec["total_rounds"] == 2 and set(rec["checkpoint_selection"]) == {"1", "2"}
    searched = {(int(r), t): v for r, by_tau in rec["checkpoint_selection"].items()
                for t, v in by_tau.items()}
    order = sorted(searched, key=lambda k: (-k[0], k[1] != "greedy"))  # later rounds first
    best = min(order, key=searched.get)  # a tie goes to the later round
    assert (rec["checkpoint_round"], tau_name(rec["temperature"])) == best
    assert f"at round {best[0]}/2" in learned.detail and "best of 2 checkpoints" in learned.detail
    assert rec["selection"] == rec["checkpoint_selection"][str(best[0])]

    # The candidates again, evaluated afresh: the same values, and the four runs' cost counted.
    run_dir = tmp_path / "sel" / "runs" / RUN
    trained = runs.train_or_load(load_run_config(run_dir), run_dir, device="cpu",
                                 progress=False)
    assert not trained.trained_now
    candidates = trained.at_milestones(2)
    assert [c.round for c in candidates] == [1, 2]
    state = read_checkpoint(run_dir / "checkpoints" / "round_00001.pt")["algo"]["policy"]
    first = candidates[0].policy.state_dict()
    assert all(torch.equal(first[k], v) for k, v in state.items())
    assert not all(torch.equal(first[k], v)
                   for k, v in candidates[1].policy.state_dict().items())
    task = make_task("gmm2d", **MIXTURE)
    cache = runs.EvalCache(None)
    nfe = 0
    for c in candidates:
        for t in compare.INFERENCE_TEMPERATURES:
            _, r, _ = runs.evaluate_policy(
                run=c, config=trained.config, method=METHOD, task=task,
                task_fp=task_fingerprint(task), n=TINY["n_eval"], device="cpu", cache=cache,
                tau=t, seed=SEARCH_SEED)
            assert r["metrics"]["sw2"] == searched[(c.round, tau_name(t))]
            nfe += r["cost"]["nfe"]
    assert rec["selection_cost"]["nfe"] == nfe


# --------------------------------------------------------------------------------------------
# inference candidates: the mean action as a third choice on the search seed
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, want", [
    ((None, 1.0), (None, 1.0)),
    (("greedy", "1", "mean"), (None, 1.0, "mean")),
    ("mean", ("mean",)),
    ((0.5, 2), (0.5, 2.0)),
    (np.int64(2), (2.0,)),
    (("greedy", "mean:f=2,cut=1"), (None, "mean:f=2,cut=1")),
    (("1:cut=1, f=0.50",), ("1:f=0.5,cut=1",)),
    (("greedy:f=0", "0.5:cut=2.5"), ("greedy:f=0", "0.5:cut=2.5")),
])
def test_inference_candidates_are_normalised(given, want):
    assert runs.check_inference_candidates(given) == want
    assert CompareConfig(inference_candidates=given).inference_candidates == want
    assert CompareConfig().inference_candidates == compare.INFERENCE_TEMPERATURES == (None, 1.0)


@pytest.mark.parametrize("given, match", [
    ((), "inference candidates must not be empty; allowed: greedy, mean, or a temperature"),
    (("greedy", "median"), "unknown inference candidate 'median'; allowed: greedy, mean, or a "
     "temperature \\(a finite number > 0\\)"),
    ((0.0,), "unknown inference candidate 0.0"),
    ((-1,), "unknown inference candidate -1"),
    ((math.nan,), "unknown inference candidate nan"),
    ((math.inf,), "unknown inference candidate inf"),
    ((True,), "unknown inference candidate True"),
    (("1", 1.0), "must not repeat .*, got \\['τ=1', 'τ=1'\\]"),
    ((None, "greedy"), "must not repeat .*, got \\['greedy', 'greedy'\\]"),
    ((1.0, 1.0000001), "nor two temperatures share a name\\), got \\['τ=1', 'τ=1'\\]"),
    ({None, 1.0}, "inference candidates must be an ordered list"),
    (("mean:f=-1",), "bad reshaping 'f=-1' in inference candidate 'mean:f=-1'; "
     "allowed: f=A \\(A >= 0\\), cut=C \\(C > 0\\) and smin=S \\(S > 0\\)"),
    (("mean:cut=0",), "bad reshaping 'cut=0'"),
    (("mean:w=2",), "bad reshaping 'w=2'"),
    (("mean:f=2,f=3",), "bad reshaping 'f=3'"),
    (("mean:f",), "bad reshaping 'f'"),
    (("mean:f=nan",), "bad reshaping 'f=nan'"),
    (("hot:f=2",), "unknown inference candidate 'hot'"),
    (("mean:f=1",), "'mean:f=1' reshapes nothing"),
    (("mean:f=2,cut=1", "mean:cut=1,f=2"), "must not repeat"),
    (("mean:smin=0",), "bad reshaping 'smin=0'"),
    (("mean:smin=0.3,smin=0.4",), "bad reshaping 'smin=0.4'"),
    (("mean:cut=1,smin=0.3", "mean:smin=0.3,cut=1"), "must not repeat"),
])
def test_bad_inference_candidates_are_refused(given, match):
    with pytest.raises(ValueError, match=match):
        CompareConfig(inference_candidates=given)


def test_the_mean_action_candidate_is_scored_counted_and_evaluated_as_the_mean_action(
        tiny, tmp_path, monkeypatch):
    """With ``"mean"`` among the candidates, the search seed scores it (the PolicySampler's mean
    action at tau = 1, sampled as the comparison samples), its run is counted in the selection
    cost, the earlier candidates keep their cached numbers, and the choice is the best of the
    three; forced to the mean action, the learned row evaluates that sampler on its seeds."""
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_run_config
    from diffgym.benchmarks.evaluate import SEARCH_SEED, evaluate_sampler, task_fingerprint
    from diffgym.envs import make_task

    first, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cached = json.loads((copy / "evals.json").read_text())["evals"]
    cfg = {**TINY, "inference_candidates": ("greedy", 1, "mean")}
    again = run_comparison("gmm2d", out_dir=copy, **cfg)
    assert again.num_trained == 0 and again.settings["inference_candidates"] == [None, 1.0, "mean"]
    old = {r.method: r for r in first.rows}[METHOD].per_seed[0]
    rec = {r.method: r for r in again.rows}[METHOD].per_seed[0]
    # greedy and tau = 1 keep their cache keys: the only new records are the mean action's
    # (the search seed, and the evaluation seed when it is chosen)
    now = json.loads((copy / "evals.json").read_text())["evals"]
    assert {k: now[k] for k in cached} == cached
    assert len(now) - len(cached) == 1 + (rec["temperature"] == "mean")
    assert again.num_evaluations == len(now) - len(cached)  # a record put again counts once
    assert set(rec["selection"]) == {"greedy", "τ=1", "mean"}
    assert {k: rec["selection"][k] for k in ("greedy", "τ=1")} == old["selection"]
    assert compare.tau_name(rec["temperature"]) == min(rec["selection"], key=rec["selection"].get)
    run_dir = copy / "runs" / RUN
    trained = runs.train_or_load(load_run_config(run_dir), run_dir, device="cpu", progress=False)
    task = make_task("gmm2d", **MIXTURE)
    _, r, sampler = runs.evaluate_policy(
        run=trained, config=trained.config, method=METHOD, task=task,
        task_fp=task_fingerprint(task), n=64, device="cpu", cache=runs.EvalCache(None),
        tau="mean", seed=SEARCH_SEED)
    assert sampler.mean_action and not sampler.greedy and sampler.temperature == 1.0
    assert rec["selection"]["mean"] == r["metrics"]["sw2"] != rec["selection"]["greedy"]
    assert rec["selection_cost"]["nfe"] == old["selection_cost"]["nfe"] + r["cost"]["nfe"]

    def scored(seed):  # the mean-action sampler on its own, as the comparison samples a policy
        mean = PolicySampler(trained.policy, task, mean_action=True)
        with torch.inference_mode():
            return evaluate_sampler(task, mean.actions(None), n=64, seed=seed,
                                    guided="guidance" in mean.knob_names,
                                    renoise_budget=mean.renoise_budget, base_grid=True)

    assert scored(SEARCH_SEED).metrics["sw2"] == rec["selection"]["mean"]
    # forced to the mean action: the learned row is that sampler on the evaluation seed
    real_choose = runs.choose_inference
    monkeypatch.setattr(runs, "choose_inference", lambda sel, *a: (
        next(k for k in sel if k[1] == "mean"), False))
    forced = run_comparison("gmm2d", out_dir=copy, **{**cfg, "plots": False})
    monkeypatch.setattr(runs, "choose_inference", real_choose)
    learned = {r.method: r for r in forced.rows}[METHOD]
    got = learned.per_seed[0]
    assert got["temperature"] == "mean" and "inference mean" in learned.detail
    assert got["metrics"]["sw2"] == scored(got["eval_seed"]).metrics["sw2"]
    assert got["nfe_per_sample"] == scored(got["eval_seed"]).nfe_per_sample


def test_reshaped_rules_read_back_and_name():
    from diffgym.benchmarks.report import split_rule

    assert split_rule("mean:f=2,cut=1") == ("mean", {"guidance_factor": 2.0,
                                                     "guidance_max_sigma": 1.0})
    assert split_rule("greedy:cut=0.5") == (None, {"guidance_max_sigma": 0.5})
    assert split_rule("1.5:f=0") == (1.5, {"guidance_factor": 0.0})
    assert split_rule(1.0) == (1.0, {}) and split_rule(None) == (None, {})
    assert compare.tau_name("mean:f=2,cut=1") == "mean f=2,cut=1"
    assert compare.tau_name("1:cut=1") == "τ=1 cut=1"


def _forced_to(tiny, tmp_path, monkeypatch, rule, candidates, task, **sampler_kw):
    """A copy of the tiny comparison run again with its choice forced to ``rule`` among
    ``candidates`` (0 trained), and ``scored(seed)``: the mean-action sampler with
    ``sampler_kw`` on ``task``, sampled as the comparison samples a policy."""
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_run_config
    from diffgym.benchmarks.evaluate import evaluate_sampler

    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cfg = {**TINY, "inference_candidates": candidates, "plots": False}
    run_dir = copy / "runs" / RUN
    trained = runs.train_or_load(load_run_config(run_dir), run_dir, device="cpu", progress=False)

    def scored(seed):
        sampler = PolicySampler(trained.policy, task, mean_action=True, **sampler_kw)
        with torch.inference_mode():
            return evaluate_sampler(task, sampler.actions(None), n=64, seed=seed, guided=True,
                                    renoise_budget=sampler.renoise_budget, base_grid=True)

    real_choose = runs.choose_inference
    monkeypatch.setattr(runs, "choose_inference", lambda sel, *a: (
        next(k for k in sel if k[1] == rule), False))
    forced = run_comparison("gmm2d", out_dir=copy, **cfg)
    monkeypatch.setattr(runs, "choose_inference", real_choose)
    assert forced.num_trained == 0
    return forced, scored, cfg


def test_a_reshaped_candidate_is_scored_and_evaluated_as_that_sampler(tiny, tmp_path,
                                                                      monkeypatch):
    """``mean:f=2,cut=1`` among the candidates: the search seed scores the mean-action sampler
    with its guidance doubled below sigma = 1; forced to it, the learned row evaluates that
    sampler on its seed, NFE included; a task without a guidance menu refuses it before any
    work."""
    from diffgym.benchmarks.evaluate import SEARCH_SEED
    from diffgym.envs import make_task

    rule = "mean:f=2,cut=1"
    forced, scored, cfg = _forced_to(tiny, tmp_path, monkeypatch, rule, ("greedy", 1, rule),
                                     make_task("gmm2d", **MIXTURE), guidance_factor=2.0,
                                     guidance_max_sigma=1.0)
    learned = {r.method: r for r in forced.rows}[METHOD]
    got = learned.per_seed[0]
    assert got["selection"]["mean f=2,cut=1"] == scored(SEARCH_SEED).metrics["sw2"]
    assert got["temperature"] == rule and "inference mean f=2,cut=1" in learned.detail
    assert got["metrics"]["sw2"] == scored(got["eval_seed"]).metrics["sw2"]
    assert got["nfe_per_sample"] == scored(got["eval_seed"]).nfe_per_sample
    # without a guidance menu a reshaping acts on nothing: the rule is its base rule
    plain = run_comparison("gmm2d", out_dir=tmp_path / "none", **{
        **cfg, "inference_guard": "mode_tv", "inference_fallback": ("mean:f=3",),
        "task_overrides": {**cfg.get("task_overrides", {}), "guidance_levels": (1.0,)}})
    assert plain.settings["inference_candidates"] == [None, 1.0, "mean"]
    assert plain.settings["inference_fallback"] == []  # "mean" is already a candidate
    assert set({r.method: r for r in plain.rows}[METHOD].per_seed[0]["selection"]) <= {
        "greedy", "τ=1", "mean"}


def test_unreshaped_rules_are_their_base_rules():
    assert runs.unreshaped((None, "mean:f=2", "mean:f=2,cut=1", 1.0), ("1:cut=1", "0.5:f=2")) == (
        (None, "mean", 1.0), (0.5,))
    assert runs.unreshaped((None, 1.0)) == ((None, 1.0), ())
    # a schedule key is not a guidance reshaping: it stays
    assert runs.unreshaped(("mean:cut=1,smin=0.3", "mean:f=2,smin=0.3", "mean:cut=1")) == (
        ("mean:smin=0.3", "mean"), ())


def test_schedule_keys_of_a_rule():
    """``smin=S``: the rule samples the task's schedule ending at sigma_min = S (same steps);
    it is not a PolicySampler argument, and a schedule the task refuses names the rule."""
    from diffgym.benchmarks.report import rule_schedule, split_rule
    from diffgym.envs import make_task

    (rule,) = runs.check_inference_candidates(["mean:smin=0.30,cut=1"])
    assert rule == "mean:cut=1,smin=0.3" and compare.tau_name(rule) == "mean cut=1,smin=0.3"
    assert split_rule(rule) == ("mean", {"guidance_max_sigma": 1.0})
    assert rule_schedule(rule) == {"sigma_min": 0.3} and rule_schedule("mean:f=2") == {}
    assert rule_schedule(None) == {} and rule_schedule(1.0) == {}
    task = make_task("gmm2d", **MIXTURE)
    assert runs.rule_task(task, "mean:f=2") is task
    on = runs.rule_task(task, rule)
    assert on.sigma_min == 0.3 and on.num_steps == task.num_steps
    assert on.sigmas()[-2] == pytest.approx(0.3) and task.sigmas()[-2] < 0.01
    with pytest.raises(ValueError, match="inference rule 'mean:smin=100' on task 'gmm2d'"):
        runs.rule_task(task, "mean:smin=100")  # above sigma_max


def test_cli_inference_candidates(compare_config_of, capsys, tmp_path):
    from diffgym.cli import main

    args = _parse(["compare", "--budget", "quick", "--inference-candidates", "greedy", "1",
                   "mean", "--out", str(tmp_path)])
    assert compare_config_of(args).inference_candidates == (None, 1.0, "mean")
    args = _parse(["compare", "--budget", "quick", "--out", str(tmp_path)])
    assert compare_config_of(args).inference_candidates == compare.INFERENCE_TEMPERATURES
    assert main(["compare", "--budget", "quick", "--inference-candidates", "mean", "mode",
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "unknown inference candidate 'mode'; allowed: greedy, mean" in err
    args = _parse(["compare", "--budget", "quick", "--inference-candidates", "greedy",
                   "mean:cut=1,f=2", "--out", str(tmp_path)])
    assert compare_config_of(args).inference_candidates == (None, "mean:f=2,cut=1")
    assert main(["compare", "--budget", "quick", "--inference-candidates", "mean:f=x",
                 "--out", str(tmp_path / "c")]) == 2
    assert "bad reshaping 'f=x'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_the_guard_with_the_mean_action_among_the_candidates(tiny, tmp_path, monkeypatch):
    """Guarded, the choice compares every candidate and the default on the guard metric (all
    recorded); the default fallback still gives the default row's evaluation."""
    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cfg = {**TINY, "inference_candidates": ("greedy", 1, "mean"), "inference_guard": "mode_tv",
           "plots": False}
    guarded = run_comparison("gmm2d", out_dir=copy, **cfg)
    rows = {r.method: r for r in guarded.rows}
    rec = rows[METHOD].per_seed[0]
    assert set(rec["selection_guard"]) == {"greedy", "τ=1", "mean", "default"}
    assert set(rec["selection"]) == {"greedy", "τ=1", "mean"}
    ok = [t for t in rec["selection"] if rec["selection_guard"][t] <= rec["selection_guard"][
        "default"]]
    best = min(ok, key=rec["selection"].get) if ok else None
    default_sw2 = rows["default"].info["search_metrics"]["sw2"]
    if best is None or rec["selection"][best] > default_sw2:
        assert rec["inference"] == "default"
    else:
        assert compare.tau_name(rec["temperature"]) == best and "inference" not in rec
    monkeypatch.setattr(runs, "choose_inference", lambda *args: (None, True))
    fallback = run_comparison("gmm2d", out_dir=copy, **cfg)
    rows = {r.method: r for r in fallback.rows}
    got = rows[METHOD].per_seed[0]
    assert got["inference"] == "default" and got["temperature"] is None
    assert rows[METHOD].metrics == rows["default"].metrics
    assert set(got["selection_guard"]) == {"greedy", "τ=1", "mean", "default"}


def test_checkpoint_selection_with_the_mean_action(tmp_path):
    """With several checkpoints, every round is scored at every candidate, the mean action
    included, and the choice is the best pair."""
    result = run_comparison("gmm2d", out_dir=tmp_path / "sel", **{
        **TINY, "select_checkpoints": 2, "inference_candidates": ("greedy", "mean"),
        "plots": False})
    rec = {r.method: r for r in result.rows}[METHOD].per_seed[0]
    assert {r: set(v) for r, v in rec["checkpoint_selection"].items()} == {
        "1": {"greedy", "mean"}, "2": {"greedy", "mean"}}
    searched = {(int(r), t): v for r, by in rec["checkpoint_selection"].items()
                for t, v in by.items()}
    order = sorted(searched, key=lambda k: (-k[0], k[1] != "greedy"))  # later rounds first
    assert (rec["checkpoint_round"], compare.tau_name(rec["temperature"])) == min(
        order, key=searched.get)


def test_eval_cache_counts_new_keys_once(tmp_path):
    """A record put again under its key (the overhead added after the first put) is one new
    evaluation, and the file keeps the latest record."""
    cache = runs.EvalCache(tmp_path / "evals.json")
    cache.put("a", {"metrics": {"sw2": 1.0}})
    cache.put("a", {"metrics": {"sw2": 1.0}, "overhead": {"overhead_pct": 5.0}})
    cache.put("b", {"metrics": {"sw2": 2.0}})
    assert cache.num_new == 2
    again = runs.EvalCache(tmp_path / "evals.json")
    assert again.num_new == 0 and again.get("a")["overhead"] == {"overhead_pct": 5.0}


def test_step_advances_reach_the_task_of_compare_and_suite(compare_config_of, monkeypatch,
                                                           capsys, tmp_path):
    """``--step-advances`` gives every task the step knob with that menu (a task override, so
    part of every fingerprint), on ``compare`` and on ``suite``; a menu the task refuses is an
    error naming the value, before anything is written."""
    from diffgym.benchmarks import suite as suite_module
    from diffgym.cli import main
    from diffgym.envs import make_task

    config = compare_config_of(_parse(["compare", "--task", "gmm2d", "--budget", "quick",
                                       "--step-advances", "1", "18", "--out", str(tmp_path)]))
    assert config.task_overrides == {"step_advances": [1, 18]}  # stored as plain JSON values
    task = make_task("gmm2d", **config.task_overrides)
    assert (task.schedule_factor, task.step_advances) == (1, (1, 18))
    assert compare_config_of(_parse(["compare", "--budget", "quick"])).task_overrides == {}
    seen = {}

    class Stop(Exception):
        pass

    def fake(config, *, progress):
        seen["config"] = config
        raise Stop

    real = suite_module.run_suite
    monkeypatch.setattr(suite_module, "run_suite", fake)
    with pytest.raises(Stop):
        main(["suite", "--task-seeds", "0", "1", "--budget", "quick", "--step-advances", "1", "18",
              "--out", str(tmp_path / "s")])
    assert dict(seen["config"].task_overrides) == {"step_advances": (1, 18)}
    assert [seen["config"].compare_config(k).task_overrides for k in (0, 1)] == [
        {"step_advances": [1, 18], "seed": 0}, {"step_advances": [1, 18], "seed": 1}]
    monkeypatch.setattr(suite_module, "run_suite", real)  # it builds every task first
    assert main(["suite", "--task-seeds", "0", "--budget", "quick", "--step-advances", "1", "40",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "step advance 40 in step_advances=(1, 40) is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_candidate_with_a_schedule_key_samples_that_schedule(tiny, tmp_path, monkeypatch):
    """``mean:cut=1,smin=0.3`` forced: the search seed and the learned row are the mean-action
    sampler, unguided above sigma = 1, on the task's schedule ending at sigma_min = 0.3 (NFE
    included); a rule whose schedule the task refuses stops the comparison before any work."""
    from diffgym.benchmarks.evaluate import SEARCH_SEED
    from diffgym.envs import make_task

    rule = "mean:cut=1,smin=0.3"
    forced, scored, cfg = _forced_to(tiny, tmp_path, monkeypatch, rule, ("greedy", rule),
                                     make_task("gmm2d", **MIXTURE).replace(sigma_min=0.3),
                                     guidance_max_sigma=1.0)
    got = {r.method: r for r in forced.rows}[METHOD].per_seed[0]
    assert got["selection"]["mean cut=1,smin=0.3"] == scored(SEARCH_SEED).metrics["sw2"]
    assert got["selection"]["mean cut=1,smin=0.3"] != got["selection"]["greedy"]
    assert got["temperature"] == rule
    assert got["metrics"]["sw2"] == scored(got["eval_seed"]).metrics["sw2"]
    assert got["nfe_per_sample"] == scored(got["eval_seed"]).nfe_per_sample
    with pytest.raises(ValueError, match="inference rule 'mean:smin=500'"):
        run_comparison("gmm2d", out_dir=tmp_path / "bad", **{
            **cfg, "inference_candidates": ("greedy", "mean:smin=500")})
    assert not (tmp_path / "bad" / "runs").exists()


def test_the_guard_allowance_in_paired_standard_errors(tiny, tmp_path, monkeypatch):
    """``inference_guard_se``: the reference is the default sampler on the candidates' own
    search-seed samples (counted once), cached records without per-sample modes are evaluated
    again with them, each candidate's recorded allowance is ``z`` paired standard errors of its
    modes against the reference's, and the choice is ``choose_inference`` with them."""
    from diffgym.benchmarks.evaluate import SEARCH_SEED, task_fingerprint
    from diffgym.benchmarks.paired_guard import MODES_FIELD, guard_allowance
    from diffgym.envs import make_task

    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    z = 1.5
    result = run_comparison("gmm2d", out_dir=copy, **{
        **TINY, "inference_guard": "mode_tv", "inference_guard_se": z, "plots": False})
    assert result.num_trained == 0 and result.settings["inference_guard_se"] == z
    learned = {r.method: r for r in result.rows}[METHOD]
    rec = learned.per_seed[0]
    assert f"guard allowance {z:g} paired s.e." in learned.detail
    task = make_task("gmm2d", **MIXTURE)
    ref = runs.guard_reference(task, task_fingerprint(task), TINY["n_eval"], seed=SEARCH_SEED,
                               device="cpu", cache=runs.EvalCache(None), modes=True)
    assert rec["selection_guard"]["default"] == ref["metrics"]["mode_tv"]
    default = next(r for r in result.rows if r.kind == "default")
    assert ref["metrics"] == default.info["search_metrics"]  # the grid's own default point
    searched, nfe, allow = {}, 0, {}
    for name, r in _search_seed_records(copy, n=TINY["n_eval"], modes=True).items():
        allow[name] = guard_allowance(r, ref, task.target.weights, z)
        assert rec["selection_guard_allowance"][name] == pytest.approx(allow[name])
        same = r[MODES_FIELD] == ref[MODES_FIELD]  # e.g. a neutral greedy: the default itself
        assert (allow[name] == 0) == same
        searched[name] = r
        nfe += r["cost"]["nfe"]
    assert rec["selection_cost"]["nfe"] == nfe + ref["cost"]["nfe"]
    by_name = {compare.tau_name(t): t for t in compare.INFERENCE_TEMPERATURES}
    want = runs.choose_inference({by_name[k]: v for k, v in searched.items()}, "sw2", "min",
                                 "mode_tv", ref["metrics"],
                                 allowance={by_name[k]: a for k, a in allow.items()})
    assert (rec.get("inference") == "default") == want[1]
    if not want[1]:
        assert rec["temperature"] == want[0]
    cached = json.loads((copy / "evals.json").read_text())["evals"].values()
    assert sum(MODES_FIELD in r for r in cached) == len(searched) + 1  # and the reference's


def test_the_paired_guard_on_a_task_without_modes_fails_before_any_work(tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the task must be refused before any work")

    monkeypatch.setattr(compare, "run_grid", no_work)
    monkeypatch.setattr(compare, "train_or_load", no_work)
    with pytest.raises(ValueError, match="inference_guard_se needs a task scored with mixture "
                       "metrics .* task 'cmix' has metric suite 'conditional_mixture'"):
        run_comparison("cmix", out_dir=tmp_path, **{
            **TINY, "task_overrides": {}, "inference_guard": "mode_tv",
            "inference_guard_se": 1.0})
