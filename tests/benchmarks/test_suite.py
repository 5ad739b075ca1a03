"""Tests of diffgym.benchmarks.suite: a tiny suite of two development tasks (files, resuming), the
aggregation on fixed synthetic numbers, the held-out split guard, seed parsing and the CLI."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math

import pytest
import torch

from diffgym.agents.cost import Cost
from diffgym.benchmarks import suite
from diffgym.benchmarks.compare import BUDGETS, eval_seed
from diffgym.benchmarks.grid import GridResult, PointResult
from diffgym.benchmarks.report import ComparisonResult, ComparisonRow
from diffgym.benchmarks.suite import (
    MethodOutcome,
    SuiteConfig,
    SuiteResult,
    check_split,
    outcomes_from_comparison,
    parse_task_seeds,
    reached,
    run_suite,
    summarize,
)

N_ENVS, N_STEPS = 8, 18
TINY = dict(
    task="gmm2d-random",
    agents=("ppo",),
    seeds=(0,),
    timesteps=2 * N_ENVS * N_STEPS,  # two rounds
    n_eval=128,
    grid_points="small",
    grid_families=("guidance",),
    overhead_repeats=1,
    n_envs=N_ENVS,
    agent_overrides={"n_steps": N_STEPS, "batch_size": N_ENVS * N_STEPS, "n_epochs": 1},
    threads=1,
)
METHOD = "ppo+gail/js"


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A suite of seeds 0 and 1 killed when it reaches seed 1 (the tables as then written),
    then run again to the end."""
    out = tmp_path_factory.mktemp("suite")
    config = SuiteConfig(task_seeds=(0, 1), out_dir=out, **TINY)
    real = suite.run_comparison

    def killed_at_seed_1(cfg, *, progress):
        if cfg.task_overrides["seed"] == 1:
            raise Killed
        return real(cfg, progress=progress)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suite, "run_comparison", killed_at_seed_1)
        with pytest.raises(Killed):
            run_suite(config, progress=False)
    partial = {name: (out / f"suite.{name}").read_text() for name in ("json", "csv", "md")}
    return partial, run_suite(config, progress=False), out


def test_tiny_suite_writes_the_files_and_the_table(tiny):
    _, result, out = tiny
    assert result.complete and result.metric == "sw2" and result.direction == "min"
    for name in ("suite.json", "suite.csv", "suite.md", "suite.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for seed in (0, 1):
        assert (out / f"gmm2d-random-{seed}" / "results.json").is_file()
    assert not list(out.glob("*.tmp"))

    with open(out / "suite.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["task_seed"], r["method"]) for r in rows] == [("0", METHOD), ("1", METHOD)]
    for col in ("delta_mean", "delta_std", "reached", "mode_tv_delta_mean",
                "mode_tv_le_default", "ratio_nfe", "ratio_nfe_per_run", "ratio_seconds"):
        assert col in rows[0], col

    data = json.loads((out / "suite.json").read_text())
    assert data["format"] == "diffgym-suite/1" and data["complete"] is True
    assert data["split"] == "dev" and data["task_seeds"] == [0, 1]
    assert [t["task"]["seed"] for t in data["tasks"]] == [0, 1]
    assert list(data["summary"]) == [METHOD] and len(data["verdicts"]) == 1

    md = (out / "suite.md").read_text()
    assert "| task seed |" in md and f"verdict {METHOD}:" in md and "targets met" in md
    assert "Development seeds" in md
    assert "terminal_mmd_weight" not in md  # no reward option: none named
    shaped = dataclasses.replace(
        result, config=result.config.replace(reward_options={"terminal_mmd_weight": 5.0}))
    assert "grid small, terminal_mmd_weight = 5.0)" in shaped.to_markdown()


def test_outcomes_are_read_from_each_comparison(tiny):
    _, result, _ = tiny
    for o in result.outcomes:
        comparison = result.comparisons[o.task_seed]
        row = comparison.row(METHOD)
        deltas, mean, _ = comparison.paired_delta(row)
        assert list(o.deltas) == deltas and o.delta_mean == mean
        assert o.reached == (mean <= 0)  # one pair: no std, the rule is <= 0
        default = comparison.row("default")
        assert o.mode_tv_delta_mean == pytest.approx(
            row.metrics["mode_tv"] - default.metrics["mode_tv"])
        assert o.ratio_nfe == pytest.approx(row.cost_ratio_nfe)
        assert o.ratio_seconds == pytest.approx(row.cost_ratio_seconds)
        assert [s["eval_seed"] for s in row.per_seed] == [eval_seed(0)]


def test_a_killed_suite_resumes_and_a_rerun_reuses_everything(tiny, monkeypatch):
    partial, full, out = tiny
    before = json.loads(partial["json"])
    assert before["complete"] is False and [t["task_seed"] for t in before["tasks"]] == [0]
    assert "PARTIAL: 1 of 2 tasks" in partial["md"]
    assert full.to_csv().splitlines()[:2] == partial["csv"].splitlines()
    assert full.comparisons[0].num_trained == 0 and full.comparisons[0].num_evaluations == 0
    assert full.comparisons[1].num_trained == 1 and full.num_trained == 1

    def no_training(self):
        raise AssertionError("a finished run must not be retrained")

    monkeypatch.setattr("diffgym.agents.train.TrainingRun.train", no_training)
    again = run_suite(full.config, progress=False)
    assert again.num_trained == 0 and again.num_evaluations == 0
    assert again.to_csv() == full.to_csv()
    assert again.to_markdown() == full.to_markdown()


# --------------------------------------------------------------------------------------------
# aggregation on fixed numbers
# --------------------------------------------------------------------------------------------


def test_reached_rule_at_the_boundary():
    assert reached(0.1, 0.1) is True  # mean == +1 std: reached
    assert reached(0.1 + 1e-12, 0.1) is False
    assert reached(-0.5, 0.1) is True
    assert reached(0.0, math.nan) is True and reached(1e-9, math.nan) is False  # one pair
    assert reached(math.nan, 0.1) is None
    # a metric to maximise: learned - grid must be >= -1 std
    assert reached(-0.1, 0.1, "max") is True and reached(-0.2, 0.1, "max") is False


def _outcome(seed, method="m", *, d=0.0, s=0.1, tv=None, runs=1, grid_nfe=1000.0,
             nfe=100.0, tau=math.nan):
    return MethodOutcome(
        task_seed=seed, method=method, metric="sw2", direction="min", learned=0.3,
        best_grid=0.3 - d, default=0.4, grid_method="grid/guidance", deltas=(d, d),
        delta_mean=d, delta_std=s, reached=reached(d, s), mode_tv_ok=tv, runs=runs,
        learned_nfe=nfe, grid_nfe=grid_nfe, learned_seconds=10.0, grid_seconds=40.0,
        tau1_minus_greedy=tau,
    )


def test_summary_fractions_and_cost_ratios():
    outcomes = [
        _outcome(0, d=0.1, s=0.1, tv=True, nfe=100.0, tau=-0.01),  # boundary: reached
        _outcome(1, d=0.2, s=0.1, tv=False, nfe=50.0, tau=0.03),   # not reached
        _outcome(2, d=-0.1, s=0.1, tv=True, nfe=200.0),            # reached
        _outcome(3, d=0.0, s=0.1, tv=None, nfe=25.0, runs=2),      # reached; no mode TV
        _outcome(0, "other", d=1.0, s=0.1, tv=False),
    ]
    summary = summarize(outcomes)
    assert list(summary) == ["m", "other"]
    m = summary["m"]
    assert (m.tasks, m.reached, m.reached_defined) == (4, 3, 4)
    assert m.frac_reached == 0.75
    assert (m.mode_tv_ok, m.mode_tv_defined) == (2, 3)  # undefined mode TV left out
    # grid / learned NFE: 10, 20, 5, 40 (per run: 10, 20, 5, 80)
    assert m.ratio_nfe_median == 15.0 and m.ratio_nfe_min == 5.0
    assert m.ratio_nfe_per_run_median == 15.0 and m.ratio_nfe_per_run_min == 5.0
    assert m.ratio_seconds_median == 4.0
    assert m.tau1_minus_greedy_mean == pytest.approx(0.01)
    assert (m.tau1_no_worse, m.tau1_defined) == (1, 2)
    assert m.targets_met() == {"reached": False, "mode_tv": False, "cost_ratio_nfe": True}
    assert "3/4 tasks (75 %" in m.verdict() and "1/3 targets met" in m.verdict()
    assert summary["other"].reached == 0 and summary["other"].frac_mode_tv_ok == 0.0


def test_summary_meets_the_targets_at_their_thresholds():
    outcomes = [_outcome(i, d=0.0 if i < 8 else 1.0, tv=i < 9, nfe=100.0) for i in range(10)]
    m = summarize(outcomes)["m"]
    assert m.frac_reached == 0.8 and m.frac_mode_tv_ok == 0.9 and m.ratio_nfe_median == 10.0
    assert all(m.targets_met().values()) and "3/3 targets met" in m.verdict()


def _row(method, kind, sw2, tv, *, cost=None, search=None, **extra):
    per_seed = [{"eval_seed": eval_seed(k), "metrics": {"sw2": a, "mode_tv": b}}
                for k, (a, b) in enumerate(zip(sw2, tv))]
    for s, e in zip(per_seed, extra.pop("per_seed_extra", [{}] * len(per_seed))):
        s.update(e)
    return ComparisonRow(
        method=method, kind=kind, detail="", per_seed=per_seed, nfe_per_sample=35.0,
        cost=cost or Cost(),
        metrics={"sw2": sum(sw2) / len(sw2), "mode_tv": sum(tv) / len(tv)},
        metrics_std={}, info={} if search is None else {"search_metrics": {"sw2": search}},
        **extra,
    )


def test_outcomes_from_a_synthetic_comparison():
    """Paired on the evaluation seeds; the best grid row is the search seed's pick (guidance,
    though interval scores better on the evaluation seeds)."""
    sel = [{"temperature": 1.0, "selection": {"greedy": 0.5, "τ=1": 0.4}},
           {"temperature": None, "selection": {"greedy": 0.5, "τ=1": 0.7}}]
    rows = [
        _row("default", "default", [0.5, 0.6], [0.10, 0.20]),
        _row("grid/guidance", "grid", [0.30, 0.40], [0.2, 0.2], search=0.25,
             cost=Cost(nfe=3000)),
        _row("grid/interval", "grid", [0.20, 0.30], [0.2, 0.2], search=0.35,
             cost=Cost(nfe=1000)),
        _row("ppo+gail/js", "learned", [0.35, 0.40], [0.05, 0.25], cost=Cost(nfe=200), runs=2,
             per_seed_extra=sel),
    ]
    points = [PointResult(key=f, family=f, params={}, metrics={}, cost=Cost(nfe=nfe), schedule={})
              for f, nfe in (("default", 99), ("guidance", 3000), ("interval", 1000))]
    grid = GridResult(task={"name": "gmm2d-random"}, n=64, seed=0, families={}, points=points,
                      num_points=3)
    result = ComparisonResult(task="gmm2d-random", fingerprint={}, metric="sw2", direction="min",
                              metric_names=["sw2", "mode_tv"], rows=rows, grid=grid, sigmas=[],
                              settings={})
    (o,) = outcomes_from_comparison(result, task_seed=7)
    assert o.task_seed == 7 and o.grid_method == "grid/guidance"
    assert o.deltas == pytest.approx((0.05, 0.0))
    assert o.delta_mean == pytest.approx(0.025) and o.delta_std == pytest.approx(0.05 / 2**0.5)
    assert o.reached is True  # 0.025 <= 0.035
    assert o.mode_tv_delta_mean == pytest.approx(0.0) and o.mode_tv_ok is True
    assert o.grid_nfe == 4000 and o.learned_nfe == 200  # the full grid: default left out
    assert o.ratio_nfe == 20.0 and o.ratio_nfe_per_run == 40.0
    assert o.tau1_minus_greedy == pytest.approx(0.05)  # mean of -0.1 and +0.2
    assert o.tau1_runs == 1
    # One run evaluated on both seeds (eval_repeats = 2): its temperature counts once, and both
    # seeds are pairs (its sampling noise).
    one_run = copy.deepcopy(result)
    one_run.settings["eval_repeats"] = 2
    learned = one_run.rows[-1]
    learned.runs = 1
    for s in learned.per_seed:
        s.update(sel[0], train_seed=0)
    (o1,) = outcomes_from_comparison(one_run, task_seed=7)
    assert o1.tau1_runs == 1 and o1.tau1_minus_greedy == pytest.approx(-0.1)
    assert o1.deltas == pytest.approx((0.05, 0.0)) and o1.ratio_nfe_per_run == 20.0
    # the references: the default misses the grid point by 0.2 ± 0; the grid point's mode TV is
    # above the default's by 0.05 on average
    assert o.default_reached is False and o.grid_mode_tv_ok is False
    twin = dataclasses.replace(o, method="reinforce+gail/js")
    cfg = SuiteConfig(task_seeds=(7,), seeds=(0, 1), grid_points="small")
    md = SuiteResult(config=cfg, metric="sw2", direction="min", outcomes=[o, twin]).to_markdown()
    assert ("the default sampler reaches the best grid point on 0/1 tasks (0 %); the best grid "
            "point has mode TV <= default on 0/1 (0 %)") in md
    assert o.default_runs == 0 and "runs on the default sampler" not in md
    # guarded: a run the guard sent to the default sampler is counted, per task and per method
    guarded = copy.deepcopy(result)
    guarded.rows[-1].per_seed[1].update(inference="default")
    (og,) = outcomes_from_comparison(guarded, task_seed=7)
    assert og.default_runs == 1 and og.to_row("gmm2d-random")["default_runs"] == 1
    gcfg = cfg.replace(inference_guard="mode_tv")
    gres = SuiteResult(config=gcfg, metric="sw2", direction="min", outcomes=[og, o])
    assert gres.summaries()["ppo+gail/js"].default_runs == 1
    assert "| runs on the default sampler |" in gres.to_markdown()
    assert "| 1/4 |" in gres.to_markdown()  # 1 of the 2 + 2 runs of the two tasks
    # the mean action among the candidates: runs that chose it are counted, per task and method
    meaned = copy.deepcopy(result)
    meaned.rows[-1].per_seed[0].update(temperature="mean")
    (om,) = outcomes_from_comparison(meaned, task_seed=7)
    assert om.mean_runs == 1 and om.tau1_runs == 0 and om.to_row("x")["mean_runs"] == 1
    meaned.rows[-1].per_seed[0].update(temperature="mean:f=2,cut=1")  # reshaped: still counted
    (reshaped,) = outcomes_from_comparison(meaned, task_seed=7)
    assert reshaped.mean_runs == 1 and reshaped.tau1_runs == 0
    rmd = SuiteResult(config=cfg.replace(inference_candidates=("mean:f=2,cut=1",)),
                      metric="sw2", direction="min", outcomes=[reshaped, o]).to_markdown()
    assert "runs on the mean action" in rmd and "inference among mean f=2,cut=1" in rmd
    # no run had both greedy and tau = 1 among its candidates: a dash, not a nan, per task and in
    # the summary
    only_mean = dataclasses.replace(reshaped, tau1_minus_greedy=math.nan)
    dmd = SuiteResult(config=cfg.replace(inference_candidates=("mean:f=2,cut=1",)), metric="sw2",
                      direction="min", outcomes=[only_mean]).to_markdown()
    row = next(line for line in dmd.splitlines() if line.startswith("| 7 | "))
    assert row.endswith("| — |") and "nan" not in row.split("|")[-2]
    summary = next(line for line in dmd.splitlines() if line.startswith("| ppo+gail/js | 1 |"))
    assert "| — |" in summary and "(0/0;" not in summary
    assert "— where a run's inference candidates do not include both" in dmd
    assert "| — |" not in md  # a run with both: its difference, as before
    meaned.rows[-1].per_seed[0].update(temperature="mean")
    assert o.mean_runs == 0 and "runs on the mean action" not in md
    mcfg = cfg.replace(inference_candidates=("greedy", 1.0, "mean"))
    mres = SuiteResult(config=mcfg, metric="sw2", direction="min", outcomes=[om, o])
    assert mres.summaries()["ppo+gail/js"].mean_runs == 1
    mmd = mres.to_markdown()
    assert "| runs on the mean action |" in mmd and "inference among greedy, τ=1, mean" in mmd


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tokens, seeds",
    [(["0-3"], (0, 1, 2, 3)), (["0-2", "7", "9,12"], (0, 1, 2, 7, 9, 12)), (["5-5"], (5,)),
     ([4, "1000-1001"], (4, 1000, 1001))],
)
def test_parse_task_seeds(tokens, seeds):
    assert parse_task_seeds(tokens) == seeds


@pytest.mark.parametrize("token", ["3-1", "a", "-2", "1-", "1-2-3", "+3", "2.5"])
def test_parse_task_seeds_rejects_bad_tokens(token):
    with pytest.raises(ValueError, match=r"bad task seed .*expected an int >= 0 or a range A-B"):
        parse_task_seeds(["0", token])


def test_split_guard_names_the_offending_seeds_and_the_range():
    with pytest.raises(ValueError, match=r"split 'dev' .*development seeds 0-99 only; got 1000, "
                       r"1099 .*held-out seeds 1000-1099 need split 'heldout'"):
        SuiteConfig(task_seeds=(3, 1000, 1099), split="dev")
    with pytest.raises(ValueError, match=r"split 'heldout' .*held-out seeds 1000-1099 only; "
                       r"got 5 .*development seeds 0-99 need split 'dev'"):
        SuiteConfig(task_seeds=(1000, 5), split="heldout")
    with pytest.raises(ValueError, match=r"unknown split 'test'; allowed: dev, heldout"):
        SuiteConfig(task_seeds=(0,), split="test")
    assert SuiteConfig(task_seeds=(1000, 1001), split="heldout").task_seeds == (1000, 1001)
    check_split("gmm2d", [5, 1000], "heldout")  # no split on this task: ignored


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task_seeds": ()}, r"task seeds must be a non-empty list"),
        ({"task_seeds": (0, 1, 1)}, r"task seeds must not repeat; repeated: \[1\]"),
        ({"task_seeds": (0, -1)}, r"task seeds must be"),
        ({"task_overrides": {"seed": 3}}, r"must not hold 'seed'"),
        ({"threads": 0}, r"threads must be an int >= 1"),
        ({"agents": ("dqn",)}, r"unknown agent 'dqn'"),
        ({"n_eval": 1}, r"n_eval must be"),
    ],
)
def test_config_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SuiteConfig(**{"task_seeds": (0,), **kwargs})


def test_a_task_without_seeds_fails_before_any_work(tmp_path):
    config = SuiteConfig(task="gmm2d", task_seeds=(1,), split="heldout", out_dir=tmp_path / "s")
    with pytest.raises(TypeError, match="unexpected keyword argument 'seed'"):
        run_suite(config, progress=False)
    assert not (tmp_path / "s").exists()


def test_compare_config_is_the_compare_command_of_each_task(tmp_path):
    config = SuiteConfig(task_seeds=(2, 4), out_dir=tmp_path, **TINY)
    c = config.compare_config(4)
    assert c.task == "gmm2d-random" and dict(c.task_overrides) == {"seed": 4}
    assert c.out_dir == tmp_path / "gmm2d-random-4"
    assert (c.seeds, c.n_eval, c.grid_families) == ((0,), 128, ("guidance",))
    assert c.reward_options == {}
    shaped = config.replace(reward_options={"action_cost": 0.01}).compare_config(2)
    assert shaped.reward_options == {"action_cost": 0.01}
    with pytest.raises(ValueError, match="unknown reward option 'beta'"):
        config.replace(reward_options={"beta": 1.0})
    assert c.inference_guard is None
    assert config.replace(inference_guard="mode_tv").compare_config(2).inference_guard == "mode_tv"
    with pytest.raises(ValueError, match="unknown inference guard metric 'tv'"):
        config.replace(inference_guard="tv")
    assert c.inference_candidates == (None, 1.0)
    assert config.replace(inference_candidates=("greedy", "mean")).compare_config(
        2).inference_candidates == (None, "mean")
    with pytest.raises(ValueError, match="unknown inference candidate 'median'"):
        config.replace(inference_candidates=("median",))
    assert c.select_checkpoints == 1
    assert config.replace(select_checkpoints=3).compare_config(2).select_checkpoints == 3
    with pytest.raises(ValueError, match="select_checkpoints must be an int in .*, got 21"):
        config.replace(select_checkpoints=21)
    assert c.selection_n is None
    assert config.replace(selection_n=512).compare_config(2).selection_n == 512


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def test_cli_parses_seeds_resolves_the_budget_and_prints(tiny, monkeypatch, capsys, tmp_path):
    from diffgym.cli import build_parser

    _, result, _ = tiny
    seen = {}

    def fake(config, *, progress):
        seen.update(config=config, progress=progress)
        return result

    monkeypatch.setattr(suite, "run_suite", fake)
    args = build_parser().parse_args(
        ["suite", "--task-seeds", "0-3", "9", "--budget", "quick", "--n-eval", "512",
         "--out", str(tmp_path), "--no-progress"])
    assert args.func(args) == 0
    config, quick = seen["config"], BUDGETS["quick"]
    assert config.task == "gmm2d-random" and config.task_seeds == (0, 1, 2, 3, 9)
    assert config.split == "dev" and config.n_eval == 512 and config.seeds == quick.seeds
    assert config.threads == quick.threads and seen["progress"] is False
    out = capsys.readouterr().out
    assert "| task seed |" in out and f"verdict {METHOD}" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task-seeds", "0", "1000"], "development seeds 0-99 only; got 1000"),
        (["--task-seeds", "5", "--split", "heldout"], "held-out seeds 1000-1099 only; got 5"),
        (["--task-seeds", "0-x"], "bad task seed '0-x'"),
        (["--task-seeds", "0", "--budget", "huge"], "unknown budget 'huge'"),
        (["--task-seeds", "0", "--inference-candidates", "greedy", "0"],
         "unknown inference candidate '0'; allowed: greedy, mean, or a temperature"),
    ],
)
def test_cli_bad_input_exits_2(argv, message, capsys, tmp_path):
    from diffgym.cli import main

    assert main(["suite", *argv, "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffgym suite: error:") and message in err
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------------------------
# benchmarks/scripts/guidance_band.py on the tiny suite
# --------------------------------------------------------------------------------------------


def test_guidance_band_replays_the_comparison_and_masks_by_noise_level(tiny, load_script,
                                                                       tmp_path):
    """The policy as is reproduces each comparison's own numbers (the script checks it); a cut
    above sigma_max masks nothing and one below it masks every step's guidance."""
    _, _, out = tiny
    script = load_script("guidance_band")
    assert script.main(["--suite", str(out), "--run", "ppo_js_seed0", "--cuts", "100",
                        "--out", str(tmp_path / "band.json")]) == 0
    data = json.loads((tmp_path / "band.json").read_text())
    assert [r["variant"] for r in data["summary"]] == ["policy", "above:100", "below:100"]
    for task in data["tasks"]:
        assert task["above:100"] == task["policy"]  # no step has sigma above 100
    assert len(data["tasks"]) == 2 and data["summary"][0]["tasks"] == 2
    greedy = script.study_task(out / "gmm2d-random-0", "ppo_js_seed0", [100.0], greedy=True)
    assert greedy["temperatures"] == [None] and greedy["above:100"] == greedy["policy"]

    # the mask itself: at sigma_0 = 80 every guidance weight is set to 1 below a cut of 100,
    # none above it
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_policy
    from diffgym.envs.noise import PerSampleNoise

    policy, task, _ = load_policy(out / "gmm2d-random-0" / "runs" / "ppo_js_seed0")
    sampler = PolicySampler(policy, task, greedy=False, temperature=1.0)
    x = torch.randn(64, *task.data_shape) * 80
    state = (x, torch.zeros(64, dtype=torch.long), torch.zeros(64, dtype=torch.long), None)
    knobs = {side: script.masked_actions(sampler, None if side is None else 100.0, side,
                                         PerSampleNoise(range(64)))(*state)
             for side in ("above", "below", None)}
    assert (knobs[None].guidance != 1).any()  # the policy guides some samples at sigma_0
    assert torch.equal(knobs["above"].guidance, knobs[None].guidance)
    assert (knobs["below"].guidance == 1).all()


def test_guidance_band_replays_a_chosen_mean_action(tiny, load_script, tmp_path):
    """On a suite whose runs chose the mean action (``inference_candidates=("mean",)``), the
    policy as is is the mean-action sampler: the script reproduces the comparison's numbers (it
    stops otherwise)."""
    import shutil

    _, _, out = tiny
    copy = tmp_path / "suite"
    shutil.copytree(out, copy)
    config = SuiteConfig(task_seeds=(0, 1), out_dir=copy,
                         **{**TINY, "inference_candidates": ("mean",)})
    result = run_suite(config, progress=False)
    assert result.num_trained == 0
    assert all(o.mean_runs == o.runs for o in result.outcomes)
    script = load_script("guidance_band")
    assert script.main(["--suite", str(copy), "--run", "ppo_js_seed0", "--cuts", "100",
                        "--out", str(tmp_path / "band.json")]) == 0
    data = json.loads((tmp_path / "band.json").read_text())
    assert all(t["temperatures"] == ["mean"] for t in data["tasks"])
