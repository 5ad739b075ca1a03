"""Smoke runs of benchmarks/scripts/reward_alignment.py, large_n_check.py and
action_distribution.py on a tiny run."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from diffgym.agents.train import TrainConfig, TrainingRun


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = TrainConfig(
        task="gmm2d", agent="ppo", n_envs=8, timesteps=8 * 18 * 2, checkpoint_every=1,
        eval_every=0, eval_samples=64,
        agent_overrides={"n_steps": 18, "batch_size": 48, "n_epochs": 1},
    )
    path = tmp_path_factory.mktemp("runs") / "ppo"
    TrainingRun(cfg, path, progress=False).train()
    return path


def test_reward_alignment(run_dir, tmp_path, capsys, load_script):
    reward_alignment = load_script("reward_alignment")
    out = tmp_path / "align.json"
    argv = ["--runs", str(run_dir), "--n", "64", "--seeds", "0", "100", "--out", str(out)]
    assert reward_alignment.main(argv) == 0
    (report,) = json.loads(out.read_text())["runs"].values()
    rows = report["variants"]
    assert list(rows)[:4] == ["default", "policy (greedy)", "policy (tau = 1, as trained)",
                              "greedy, no churn"]
    assert rows["default"]["nfe_per_sample"] == 35.0  # plain Heun: 17 x 2 + 1
    forced_on = rows["greedy, w = 3 below 0.03"]
    forced_off = rows["greedy, no guidance below 0.03"]
    assert forced_on["nfe_per_sample"] > forced_off["nfe_per_sample"]  # guided steps cost 2 NFE
    for r in rows.values():
        assert all(math.isfinite(r[k]) for k in ("return", "return_late", "reward_final"))
        assert len(r["per_seed"]) == 2 and "sw2" in r["per_seed"][0]["metrics"]
    assert report["pairs_ranked_alike"].endswith("/15")
    assert "pairs ranked alike" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # overlapping sample seeds are refused
        reward_alignment.main(["--runs", str(run_dir), "--n", "64", "--seeds", "0", "10"])


def test_large_n_check(run_dir, tmp_path, load_script):
    large_n_check = load_script("large_n_check")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"task": "gmm2d", "rows": [
        {"method": "default", "kind": "default", "info": {"schedule": {}}},
        {"method": "grid/guidance", "kind": "grid", "info": {"schedule": {"guidance": [3.0] * 18}}},
    ]}))
    out = tmp_path / "large_n.json"
    argv = ["--results", str(results), "--runs", str(run_dir), "--n", "64", "--seeds", "0", "100",
            "--out", str(out)]
    assert large_n_check.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["best_grid"] == "grid/guidance" and data["noise_floor_sw2"]["mean"] > 0
    group = data["summary"]["ppo+gail/js [batch_size=48,n_epochs=1,n_steps=18] (greedy)"]
    assert group["runs"] == 1 and len(group["sw2_per_run"]) == 1
    # Paired difference to the default, recomputed from the per-seed numbers.
    per_run = data["per_seed"]["runs"][
        "ppo+gail/js [batch_size=48,n_epochs=1,n_steps=18] (greedy)"][str(run_dir)]
    fixed = data["per_seed"]["fixed"]["default"]
    diff = sum(a["sw2"] - b["sw2"] for a, b in zip(per_run, fixed)) / 2
    assert group["paired_sw2_vs_default"][0] == pytest.approx(diff)


def test_action_distribution(run_dir, tmp_path, load_script):
    action_distribution = load_script("action_distribution")

    out = tmp_path / "dist.json"
    assert action_distribution.main(["--runs", str(run_dir), "--n", "16", "--out", str(out)]) == 0
    (r,) = json.loads(out.read_text()).values()
    assert set(r["probs"]) == set(r["menus"]) == {"churn", "guidance"}
    for knob, per_step in r["probs"].items():
        assert len(per_step) == len(r["sigmas"]) == 18
        assert all(len(p) == len(r["menus"][knob]) for p in per_step)
        assert all(abs(sum(p) - 1) < 1e-3 for p in per_step)  # a distribution at every step
    assert r["sigmas"][0] == pytest.approx(80.0) and r["sigmas"][-1] == pytest.approx(0.002)


def _large_n_suite(run_dir, root, metrics_of, **learned_extra):
    """A one-task suite folder around the tiny gmm2d run: default, a guided grid point and the
    run at tau = 1 on two evaluation seeds, with the per-seed metrics ``metrics_of(kind, seed)``."""
    import shutil

    suite = root / "suite"
    task_dir = suite / "gmm2d-0"
    shutil.copytree(run_dir, task_dir / "runs" / "ppo_js_seed0")
    seeds = (0, 100)

    def per_seed(kind, **extra):
        rows = []
        for s in seeds:  # the NFE sits beside the metrics, as in compare's records
            metrics = dict(metrics_of(kind, s))
            nfe = {"nfe_per_sample": metrics.pop("nfe_per_sample")} if (
                "nfe_per_sample" in metrics) else {}
            rows.append({"eval_seed": s, "metrics": metrics, **nfe, **extra})
        return rows

    results = {"task": "gmm2d", "metric": "sw2", "settings": {"n_eval": 64},
               "best_grid_row": "grid/guidance", "rows": [
                   {"method": "default", "kind": "default", "detail": "plain Heun",
                    "per_seed": per_seed("default"),
                    "info": {"family": "default", "params": {}, "schedule": {}}},
                   {"method": "grid/guidance", "kind": "grid", "detail": "guidance(w=3)",
                    "per_seed": per_seed("grid"),
                    "info": {"family": "guidance", "params": {"w": 3.0},
                             "schedule": {"guidance": [3.0] * 18}}},
                   {"method": "ppo+gail/js", "kind": "learned",
                    "per_seed": per_seed("learned", run="ppo_js_seed0",
                                         **{"temperature": 1.0, **learned_extra})}]}
    (task_dir / "results.json").write_text(json.dumps(results))
    (suite / "suite.json").write_text(json.dumps({"split": "dev", "task": "gmm2d",
                                                  "task_seeds": [0]}))
    return suite


def _as_compared(run_dir, kind: str, seed: int, n: int = 64, round: int | None = None,
                 mean_action: bool = False) -> dict:
    """A row's metrics and NFE per sample as the comparison computes them (benchmarks/compare.py
    and benchmarks/runs.evaluate_policy), independently of the script; the learned row at
    tau = 1, or with ``mean_action`` the mean action."""
    from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET, PolicySampler
    from diffgym.agents.train import load_policy
    from diffgym.benchmarks.evaluate import evaluate_sampler
    from diffgym.envs.sampler import PerSampleNoise, schedule_actions

    policy, task, _ = load_policy(run_dir, round=round)
    if kind == "default":
        ev = evaluate_sampler(task, None, n=n, seed=seed)
    elif kind == "grid":
        ev = evaluate_sampler(task, schedule_actions(guidance=[3.0] * 18), n=n, seed=seed,
                              guided=True)
    else:
        sampler = PolicySampler(policy, task, greedy=False, temperature=1.0,
                                mean_action=mean_action)
        noise = PerSampleNoise([ACTION_SEED_OFFSET + seed + b for b in range(n)])
        ev = evaluate_sampler(task, sampler.actions(noise), n=n, seed=seed,
                              guided="guidance" in sampler.knob_names,
                              renoise_budget=sampler.renoise_budget, base_grid=True)
    return {**{m: ev.metrics[m] for m in ("sw2", "mode_tv")},
            "nfe_per_sample": float(ev.result.nfe.double().mean())}


def test_suite_large_n_reproduces_the_comparison_at_its_own_n(run_dir, tmp_path, load_script):
    """At the suite's own n the script's default, grid and learned rows are the comparison's
    numbers (computed here as compare computes them); a row that differs is refused."""
    suite_large_n = load_script("suite_large_n")
    suite = _large_n_suite(run_dir, tmp_path, lambda kind, s: _as_compared(run_dir, kind, s))
    out = tmp_path / "n64.json"
    argv = ["--suite", str(suite), "--run", "ppo_js_seed0", "--n", "64", "--out", str(out)]
    assert suite_large_n.main(argv) == 0
    (task,) = json.loads(out.read_text())["tasks"]
    for kind in ("default", "grid", "learned"):
        for s, got in zip((0, 100), task["per_seed"][kind]):
            want = _as_compared(run_dir, kind, s)
            assert got == pytest.approx(want, rel=1e-9), kind
    assert task["inference"] == ["τ=1", "τ=1"]
    # One wrong number in the suite and the script stops.
    bad = _large_n_suite(run_dir, tmp_path / "bad",
                         lambda kind, s: {"sw2": 9.0, "mode_tv": 9.0} if kind == "grid"
                         else _as_compared(run_dir, kind, s))
    with pytest.raises(SystemExit, match="grid sw2 on seed 0 is .*, the suite's 9.0"):
        suite_large_n.main(["--suite", str(bad), "--run", "ppo_js_seed0", "--n", "64",
                            "--out", str(out)])
    nfe = _large_n_suite(run_dir, tmp_path / "nfe",
                         lambda kind, s: {**_as_compared(run_dir, kind, s), "nfe_per_sample": 1.0}
                         if kind == "learned" else _as_compared(run_dir, kind, s))
    with pytest.raises(SystemExit, match="learned nfe_per_sample on seed 0 is .*, the suite's 1.0"):
        suite_large_n.main(["--suite", str(nfe), "--run", "ppo_js_seed0", "--n", "64",
                            "--out", str(out)])


def test_suite_large_n_scores_a_rule_with_a_schedule_key_on_its_schedule(run_dir, tmp_path,
                                                                         load_script):
    """A learned row chosen as ``mean:cut=1,smin=0.3`` is re-scored on the task's schedule
    ending at sigma_min = 0.3 (the suite's own numbers come back at its n, or it stops)."""
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_policy
    from diffgym.benchmarks.evaluate import evaluate_sampler

    suite_large_n = load_script("suite_large_n")
    policy, task, _ = load_policy(run_dir)
    on = task.replace(sigma_min=0.3)

    def metrics_of(kind, s):
        if kind != "learned":
            return _as_compared(run_dir, kind, s)
        sampler = PolicySampler(policy, on, mean_action=True, guidance_max_sigma=1.0)
        ev = evaluate_sampler(on, sampler.actions(None), n=64, seed=s, guided=True,
                              renoise_budget=sampler.renoise_budget, base_grid=True)
        return {"sw2": ev.metrics["sw2"], "mode_tv": ev.metrics["mode_tv"],
                "nfe_per_sample": float(ev.result.nfe.double().mean())}

    assert metrics_of("learned", 0) != _as_compared(run_dir, "learned", 0, mean_action=True)
    suite = _large_n_suite(run_dir, tmp_path, metrics_of, temperature="mean:cut=1,smin=0.3")
    out = tmp_path / "n64.json"
    assert suite_large_n.main(["--suite", str(suite), "--run", "ppo_js_seed0", "--n", "64",
                               "--out", str(out)]) == 0
    (got,) = json.loads(out.read_text())["tasks"]
    assert got["inference"] == ["mean cut=1,smin=0.3"] * 2
    assert got["per_seed"]["learned"][1] == pytest.approx(metrics_of("learned", 100), rel=1e-9)


def test_suite_large_n_scores_the_checkpoint_the_comparison_chose(run_dir, tmp_path,
                                                                  load_script):
    """A learned row chosen at checkpoint round 1 (``--select-checkpoints``) is re-scored with
    that checkpoint's policy, which differs from the final model's here."""
    suite_large_n = load_script("suite_large_n")
    at_1 = lambda kind, s: _as_compared(run_dir, kind, s, round=1)  # noqa: E731
    assert at_1("learned", 0) != _as_compared(run_dir, "learned", 0)
    suite = _large_n_suite(run_dir, tmp_path, at_1, checkpoint_round=1, total_rounds=2)
    out = tmp_path / "n64.json"
    argv = ["--suite", str(suite), "--run", "ppo_js_seed0", "--n", "64", "--out", str(out)]
    assert suite_large_n.main(argv) == 0  # it reproduces the round-1 numbers, or it stops
    (task,) = json.loads(out.read_text())["tasks"]
    assert task["checkpoint_round"] == 1
    assert task["per_seed"]["learned"][0] == pytest.approx(at_1("learned", 0), rel=1e-9)
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_policy  # the greedy row is round 1's greedy policy
    from diffgym.benchmarks.evaluate import evaluate_sampler

    policy, gtask, _ = load_policy(run_dir, round=1)
    greedy = PolicySampler(policy, gtask, greedy=True)
    ev = evaluate_sampler(gtask, greedy.actions(None), n=64, seed=0,
                          guided="guidance" in greedy.knob_names,
                          renoise_budget=greedy.renoise_budget, base_grid=True)
    assert task["per_seed"]["greedy"][0]["sw2"] == pytest.approx(ev.metrics["sw2"], rel=1e-9)
    final = _large_n_suite(run_dir, tmp_path / "final", at_1)  # the final model: refused
    with pytest.raises(SystemExit, match="learned sw2 on seed 0 is"):
        suite_large_n.main(["--suite", str(final), "--run", "ppo_js_seed0", "--n", "64",
                            "--out", str(out)])


def test_suite_large_n_replays_a_chosen_mean_action(run_dir, tmp_path, load_script):
    """A learned row whose comparison chose the mean action (``--inference-candidates … mean``)
    is re-scored with the mean-action sampler: at the suite's own n it reproduces the
    comparison's numbers, which differ from tau = 1's."""
    suite_large_n = load_script("suite_large_n")

    def mean(kind, s):
        return _as_compared(run_dir, kind, s, mean_action=kind == "learned")

    assert mean("learned", 0) != _as_compared(run_dir, "learned", 0)
    suite = _large_n_suite(run_dir, tmp_path, mean)
    path = suite / "gmm2d-0" / "results.json"
    results = json.loads(path.read_text())
    for p in results["rows"][2]["per_seed"]:
        p["temperature"] = "mean"
    path.write_text(json.dumps(results))
    out = tmp_path / "n64.json"
    argv = ["--suite", str(suite), "--run", "ppo_js_seed0", "--n", "64", "--out", str(out)]
    assert suite_large_n.main(argv) == 0  # it reproduces the mean action's numbers, or stops
    (task,) = json.loads(out.read_text())["tasks"]
    assert task["inference"] == ["mean", "mean"]
    assert task["per_seed"]["learned"][1] == pytest.approx(mean("learned", 100), rel=1e-9)


def test_suite_large_n(run_dir, tmp_path, load_script):
    """suite_large_n.py at a larger n: every sampler scored on both seeds, the paired intervals
    and counts; a held-out suite is refused unless asked for."""
    suite_large_n = load_script("suite_large_n")
    suite = _large_n_suite(run_dir, tmp_path, lambda kind, s: {"sw2": 9.0, "mode_tv": 9.0})
    out = tmp_path / "large_n.json"
    argv = ["--suite", str(suite), "--run", "ppo_js_seed0", "--n", "96", "--out", str(out)]
    assert suite_large_n.main(argv) == 0
    data = json.loads(out.read_text())
    (task,) = data["tasks"]
    assert task["task"] == "gmm2d-0" and task["seeds"] == [0, 100] and task["n"] == 96
    assert set(task["per_seed"]) == {"default", "grid", "learned", "greedy", "real"}
    for rows in task["per_seed"].values():
        assert len(rows) == 2 and all(math.isfinite(r["mode_tv"]) for r in rows)
    tv = task["paired"]["learned-default:mode_tv"]
    assert tv["lo"] <= tv["mean"] <= tv["hi"] and tv["resolved"] in {"below", "above", "tie"}
    summary = data["summary"]
    assert summary["tasks"] == 1 and summary["learned"]["mode_tv_le_default"] == (tv["mean"] <= 0)
    assert set(summary["default"]) == {"reached_best_grid", "mode_tv_resolved_above_real",
                                       "nfe_per_sample"}
    # NFE per sample over tasks: plain Heun's 35 for the default sampler
    assert summary["default"]["nfe_per_sample"] == {"median": 35.0, "min": 35.0, "max": 35.0}
    assert summary["greedy"]["nfe_per_sample"]["median"] == task["mean"]["greedy"][
        "nfe_per_sample"]
    # --resummarise recomputes the same summary from the file, without sampling.
    data["summary"] = {}
    out.write_text(json.dumps(data))
    assert suite_large_n.main(argv + ["--resummarise"]) == 0
    assert json.loads(out.read_text())["summary"] == summary
    # A held-out suite needs --allow-heldout.
    (suite / "suite.json").write_text(json.dumps({"split": "heldout", "task": "gmm2d",
                                                  "task_seeds": [0]}))
    with pytest.raises(SystemExit):
        suite_large_n.main(argv)


def test_suite_large_n_mean_action_row(run_dir, tmp_path, load_script):
    """--mean-action adds a 'mean' row: the run's mean-action inference at tau = 1, scored as
    compare scores a policy, paired against the default and the grid and counted."""
    suite_large_n = load_script("suite_large_n")
    suite = _large_n_suite(run_dir, tmp_path, lambda kind, s: {"sw2": 9.0, "mode_tv": 9.0})
    out = tmp_path / "mean.json"
    assert suite_large_n.main(["--suite", str(suite), "--run", "ppo_js_seed0", "--n", "96",
                               "--mean-action", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    (task,) = data["tasks"]
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_policy
    from diffgym.benchmarks.evaluate import evaluate_sampler

    policy, mtask, _ = load_policy(run_dir)
    mean = PolicySampler(policy, mtask, mean_action=True)
    for s, got in zip((0, 100), task["per_seed"]["mean"]):
        ev = evaluate_sampler(mtask, mean.actions(None), n=96, seed=s, guided=True,
                              renoise_budget=mean.renoise_budget, base_grid=True)
        assert got["sw2"] == pytest.approx(ev.metrics["sw2"], rel=1e-9)
    assert task["per_seed"]["mean"] != task["per_seed"]["greedy"]
    assert {"mean-default:mode_tv", "mean-default:sw2", "mean-grid:sw2"} <= set(task["paired"])
    assert {"mode_tv_le_default", "reached_best_grid"} <= set(data["summary"]["mean"])
    assert data["summary"]["mean"]["nfe_per_sample"]["median"] == statistics.fmean(
        r["nfe_per_sample"] for r in task["per_seed"]["mean"])


def test_suite_large_n_summary_counts_reach_within_one_std(load_script):
    """Reached iff the paired SW2 gap to the grid is at most +1 std of the pairing."""
    script = load_script("suite_large_n")

    def task(gap_seeds):
        d = {"default": [{"sw2": 1.0, "mode_tv": 0.1}] * 3,
             "grid": [{"sw2": 0.5, "mode_tv": 0.1}] * 3,
             "learned": [{"sw2": 0.5 + g, "mode_tv": 0.1} for g in gap_seeds],
             "greedy": [{"sw2": 1.0, "mode_tv": 0.1}] * 3,
             "real": [{"sw2": 0.2, "mode_tv": 0.05}] * 3}
        return {"paired": script.paired(d), "mean": {k: {"mode_tv": v[0]["mode_tv"]}
                                                     for k, v in d.items()}}

    within = task([0.0, 0.2, 0.1])  # mean 0.1, std 0.1: reached
    beyond = task([0.29, 0.3, 0.31])  # mean 0.3, std 0.01: not
    summary = script.summarise([within, beyond])
    assert summary["learned"]["reached_best_grid"] == 1
    assert summary["default"]["reached_best_grid"] == 0
    assert summary["learned"]["mode_tv_le_default"] == 2  # equal mode TV counts as kept


def test_suite_large_n_interval(load_script):
    interval = load_script("suite_large_n").interval
    below = interval([-0.02, -0.03, -0.025])
    assert below["resolved"] == "below" and below["hi"] < 0
    # The 95 % t-interval: 4.303 std / sqrt(3) either side with three pairs.
    assert below["hi"] - below["mean"] == pytest.approx(4.3027 * 0.005 / math.sqrt(3), rel=1e-4)
    assert interval([0.01, -0.01, 0.0])["resolved"] == "tie"
    assert interval([0.02, 0.03, 0.025])["resolved"] == "above"
    one = interval([0.5])
    assert one == {"mean": 0.5, "std": 0.0, "lo": 0.5, "hi": 0.5, "resolved": "tie"}


def _oracle_suite(run_dir, root, split="dev", wrong=False):
    """A one-task suite folder around the tiny run, its comparison having chosen round 1 at
    tau = 1 among 2 checkpoints (search-seed values made up, so that the final model's own
    choice is round 2 greedy); the chosen candidate's per-seed metrics computed as compare does."""
    import shutil

    from diffgym.agents.train import load_run_config
    from diffgym.benchmarks.evaluate import task_fingerprint
    from diffgym.benchmarks.runs import EvalCache, evaluate_policy, train_or_load
    from diffgym.envs.tasks import make_task

    suite = root / "suite"
    task_dir = suite / "gmm2d-0"
    shutil.copytree(run_dir, task_dir / "runs" / "ppo_js_seed0")
    config = load_run_config(run_dir)
    run = train_or_load(config, run_dir, device="cpu", progress=False).at_milestones(2)[0]
    task = make_task("gmm2d")
    per_seed = []
    for s in (0, 100):
        _, rec, _ = evaluate_policy(run=run, config=config, method="m", task=task,
                                    task_fp=task_fingerprint(task), n=64, device="cpu",
                                    cache=EvalCache(None), tau=1.0, seed=s)
        metrics = {m: 9.0 if wrong else rec["metrics"][m] for m in ("sw2", "mode_tv")}
        per_seed.append({"eval_seed": s, "run": "ppo_js_seed0", "metrics": metrics,
                         "temperature": 1.0, "checkpoint_round": 1, "total_rounds": 2,
                         "checkpoint_selection": {"1": {"greedy": 0.5, "τ=1": 0.3},
                                                  "2": {"greedy": 0.4, "τ=1": 0.6}}})
    results = {"task": "gmm2d", "metric": "sw2", "direction": "min",
               "settings": {"n_eval": 64, "select_checkpoints": 2},
               "rows": [{"method": "ppo+gail/js", "kind": "learned", "per_seed": per_seed}]}
    (task_dir / "results.json").write_text(json.dumps(results))
    (suite / "suite.json").write_text(json.dumps({"split": split, "task": "gmm2d",
                                                  "task_seeds": [0]}))
    return suite, per_seed


def test_checkpoint_oracle(run_dir, tmp_path, load_script):
    """checkpoint_oracle.py scores all four candidates on the evaluation seeds, reproduces the
    chosen candidate's suite numbers at the suite's n, names the chosen, final-choice and
    hindsight-best candidates, and refuses held-out suites and numbers it cannot reproduce."""
    oracle = load_script("checkpoint_oracle")
    suite, per_seed = _oracle_suite(run_dir, tmp_path)
    out = tmp_path / "oracle.json"
    argv = ["--suite", str(suite), "--run", "ppo_js_seed0", "--n", "64", "--out", str(out)]
    assert oracle.main(argv) == 0
    data = json.loads(out.read_text())
    (task,) = data["tasks"]
    assert [(c["round"], c["inference"]) for c in task["candidates"]] == [
        (1, "greedy"), (1, "τ=1"), (2, "greedy"), (2, "τ=1")]
    assert task["chosen"] == [1, "τ=1"] and task["final_choice"] == [2, "greedy"]
    chosen = task["candidates"][1]
    assert chosen["per_seed"] == [p["metrics"] for p in per_seed]  # the suite's own numbers
    best = min(task["candidates"], key=lambda c: c["mean"]["sw2"])
    assert task["oracle"] == [best["round"], best["inference"]]
    d = chosen["mean"]["sw2"] - task["candidates"][2]["mean"]["sw2"]
    assert data["summary"]["chosen_minus_final_mean"] == pytest.approx(d)
    assert data["summary"]["chosen_better"] == (d < 0)
    assert data["summary"]["chosen_same"] == 0
    assert data["summary"]["oracle_minus_final_mean"] == pytest.approx(
        best["mean"]["sw2"] - task["candidates"][2]["mean"]["sw2"])
    rho = task["spearman_by_inference"]["τ=1"]  # two points: +1 or -1
    assert abs(rho) == pytest.approx(1.0)
    tau1_gap = chosen["mean"]["sw2"] - task["candidates"][3]["mean"]["sw2"]
    assert (rho > 0) == ((0.3 - 0.6) * tau1_gap > 0)
    assert oracle.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert oracle.spearman([1, 1, 2], [5, 5, 9]) == pytest.approx(1.0)  # ties
    bad, _ = _oracle_suite(run_dir, tmp_path / "bad", wrong=True)
    with pytest.raises(SystemExit, match="the chosen candidate's sw2 on seed 0 is"):
        oracle.main(["--suite", str(bad), "--n", "64", "--run", "ppo_js_seed0",
                     "--out", str(out)])
    held, _ = _oracle_suite(run_dir, tmp_path / "held", split="heldout")
    with pytest.raises(SystemExit):
        oracle.main(["--suite", str(held), "--n", "64", "--out", str(out)])


def test_suite_pairs(tmp_path, load_script):
    """suite_pairs.py: per-task means of (A - B) over the seeds, pooled over file pairs, with the
    project's paired interval; tau = 1 - greedy at the last round of oracle files; mismatched
    tasks and unpaired file lists are refused."""
    from diffgym.benchmarks.report import paired_interval

    suite_pairs = load_script("suite_pairs")

    def large_n(path, values):  # values: task -> per-seed learned sw2 (mode_tv = sw2 / 10)
        tasks = [{"task": t, "seeds": [0, 100], "per_seed": {"learned": [
            {"sw2": v, "mode_tv": v / 10} for v in vs]}} for t, vs in values.items()]
        path.write_text(json.dumps({"tasks": tasks}))
        return str(path)

    a1 = large_n(tmp_path / "a1.json", {"t0": [0.25, 0.75], "t1": [0.20, 0.20]})
    b1 = large_n(tmp_path / "b1.json", {"t0": [0.50, 0.50], "t1": [0.20, 0.20]})
    a2 = large_n(tmp_path / "a2.json", {"t2": [0.125, 0.375]})
    b2 = large_n(tmp_path / "b2.json", {"t2": [0.375, 0.375]})
    out = tmp_path / "pairs.json"
    assert suite_pairs.main(["--a", a1, a2, "--b", b1, b2, "--out", str(out)]) == 0
    sw2 = json.loads(out.read_text())["sw2"]
    assert sw2["per_task"] == pytest.approx({"t0": 0.0, "t1": 0.0, "t2": -0.125})
    mean, _, half = paired_interval([0.0, 0.0, -0.125])
    assert (sw2["mean"], sw2["lo"], sw2["hi"]) == pytest.approx((mean, mean - half, mean + half))
    assert (sw2["lower"], sw2["higher"], sw2["same"]) == (1, 0, 2)
    with pytest.raises(SystemExit, match="pair them"):
        suite_pairs.main(["--a", a1, a2, "--b", b1])
    with pytest.raises(SystemExit, match="differ: t0"):
        suite_pairs.main(["--a", a1, "--b", large_n(tmp_path / "c.json",
                                                     {"t9": [0.1, 0.1], "t1": [0.2, 0.2]})])
    # --b-row: two rows of the same file (a 'mean' row against the 'learned' one).
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"tasks": [{"task": "t0", "seeds": [0, 100], "per_seed": {
        "learned": [{"sw2": 0.5, "mode_tv": 0.05}] * 2,
        "mean": [{"sw2": 0.25, "mode_tv": 0.25}, {"sw2": 0.5, "mode_tv": 0.25}]}}]}))
    assert suite_pairs.main(["--a", str(rows), "--b", str(rows), "--row", "mean", "--b-row",
                             "learned", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["sw2"]["per_task"] == pytest.approx({"t0": -0.125})
    assert got["mode_tv"]["per_task"] == pytest.approx({"t0": 0.2})
    with pytest.raises(SystemExit, match="has no 'mean' row"):
        suite_pairs.main(["--a", a1, "--b", b1, "--row", "mean"])
    oracle = tmp_path / "oracle.json"
    oracle.write_text(json.dumps({"tasks": [{"task": "t0", "candidates": [
        {"round": r, "inference": i, "mean": {"sw2": v, "mode_tv": 0.0}}
        for r, i, v in ((1, "greedy", 0.1), (1, "τ=1", 0.9), (2, "greedy", 0.5),
                        (2, "τ=1", 0.2))]}]}))
    assert suite_pairs.main(["--oracle", str(oracle), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["sw2"]["per_task"] == pytest.approx({"t0": -0.3})


def test_rule_frontier(tmp_path, load_script, monkeypatch):
    """rule_frontier.py: per task and sampler the two rules from the stored paired intervals
    (reached within +1 std, masses kept at a mean <= 0; the grid reaches itself, the default keeps
    its own masses), the counts, the hindsight bound over the policy samplers and the default,
    and the tasks a rule meeting both targets needs; mismatched rules and clashing labels are
    refused."""
    frontier = load_script("rule_frontier")

    def iv(mean, std=0.0):
        return {"mean": mean, "std": std}

    def task(name, learned_sw2, learned_tv, extra=None):
        paired = {"learned-grid:sw2": learned_sw2, "learned-default:mode_tv": learned_tv,
                  **(extra or {})}
        return {"task": name, "seeds": [0, 100], "paired": paired}

    ref = {  # greedy keeps the masses without reaching; mean reaches and keeps them on t0 only
        "t0": {"greedy-grid:sw2": iv(0.05, 0.01), "greedy-default:mode_tv": iv(-0.001),
               "mean-grid:sw2": iv(0.0, 0.01), "mean-default:mode_tv": iv(0.0),
               "default-grid:sw2": iv(0.1, 0.01), "grid-default:mode_tv": iv(-0.002)},
        "t1": {"greedy-grid:sw2": iv(0.05, 0.01), "greedy-default:mode_tv": iv(-0.001),
               "mean-grid:sw2": iv(-0.01, 0.01), "mean-default:mode_tv": iv(0.004),
               "default-grid:sw2": iv(0.1, 0.01), "grid-default:mode_tv": iv(0.01)},
    }
    a = tmp_path / "a.json"  # reaches (0.01 <= 1 std), moves the masses
    a.write_text(json.dumps({"tasks": [task(t, iv(0.01, 0.02), iv(0.001), ref[t])
                                       for t in ("t0", "t1")]}))
    b = tmp_path / "b.json"  # keeps the masses, misses the grid point
    b.write_text(json.dumps({"tasks": [task(t, iv(0.05, 0.01), iv(-0.002))
                                       for t in ("t0", "t1")]}))
    out = tmp_path / "frontier.json"
    assert frontier.main(["--rule", "sharp", str(a), "--rule", "guard", str(b),
                          "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["policy_rows"] == ["sharp", "guard", "greedy", "mean"]
    assert got["counts"]["sharp"] == {"reached": 2, "masses_kept": 0, "both": 0}
    assert got["counts"]["guard"] == {"reached": 0, "masses_kept": 2, "both": 0}
    assert got["counts"]["mean"] == {"reached": 2, "masses_kept": 1, "both": 1}
    assert got["counts"]["grid"] == {"reached": 2, "masses_kept": 1, "both": 1}
    assert got["counts"]["default"] == {"reached": 0, "masses_kept": 2, "both": 0}
    assert [t["any_policy_both"] for t in got["per_task"]] == [True, False]
    assert got["hindsight_both"] == 1 and got["both_needed"] == 2  # 2 + 2 - 2 of 2 tasks
    other = tmp_path / "c.json"
    other.write_text(json.dumps({"tasks": [task("t9", iv(0.0), iv(0.0))]}))
    with pytest.raises(SystemExit, match="give the same tasks in the same order"):
        frontier.main(["--rule", "sharp", str(a), "--rule", "x", str(other)])
    with pytest.raises(SystemExit, match="must be distinct"):
        frontier.main(["--rule", "r", str(a), "--rule", "r", str(b)])
    with pytest.raises(SystemExit, match=r"rule labels \['grid'\] name rows of the files"):
        frontier.main(["--rule", "grid", str(a)])
    ten = tmp_path / "ten.json"
    ten.write_text(json.dumps({"tasks": [task(f"t{i}", iv(0.0), iv(0.0), ref["t0"])
                                         for i in range(10)]}))
    assert frontier.frontier([("r", [ten])])["both_needed"] == 7  # 8 + 9 - 10
    # a task met again in a later file of a rule replaces the earlier one, in its place
    redo = tmp_path / "redo.json"  # t0 re-scored: reaches and keeps the masses
    redo.write_text(json.dumps({"tasks": [task("t0", iv(0.0, 0.01), iv(-0.001), ref["t0"])]}))
    got = frontier.frontier([("sharp", [a]), ("guard", [b, redo])])
    assert got["counts"]["guard"] == {"reached": 1, "masses_kept": 2, "both": 1}
    assert [t["task"] for t in got["per_task"]] == ["t0", "t1"]
    assert got["per_task"][0]["rows"]["guard"]["both"] is True
    # The output is written before the table is printed: a closed pipe does not lose it.
    closed = tmp_path / "closed.json"

    def broken(*_a, **_k):
        raise BrokenPipeError

    monkeypatch.setattr("builtins.print", broken)
    with pytest.raises(BrokenPipeError):
        frontier.main(["--rule", "sharp", str(a), "--out", str(closed)])
    assert json.loads(closed.read_text())["counts"]["sharp"]["reached"] == 2
