"""benchmarks/scripts/sigma_min_probe.py on a one-task development suite: its rows are the
evaluations the comparison would make, its verdicts and search-seed picks follow the suite's
rules on those numbers, a rerun reuses finished tasks and sampler rows, and bad input is
refused."""

from __future__ import annotations

import json
import math

import pytest

from diffgym.benchmarks.evaluate import evaluate_sampler, task_fingerprint
from diffgym.benchmarks.report import paired_interval
from diffgym.benchmarks.suite_outcomes import reached
from diffgym.envs import make_task
from diffgym.envs.sampler import schedule_actions

N, SEEDS, SEARCH = 64, (0, 100), 7


def _suite(root, split="dev"):
    task = make_task("gmm2d-random", seed=0)
    task_dir = root / "gmm2d-random-0"
    task_dir.mkdir(parents=True)
    results = {
        "metric": "sw2", "search_seed": SEARCH, "fingerprint": task_fingerprint(task),
        "settings": {"task_overrides": {"seed": 0}}, "best_grid_row": "grid/guidance",
        "rows": [
            {"method": "default", "kind": "default", "detail": "plain Heun",
             "per_seed": [{"eval_seed": s} for s in SEEDS]},
            {"method": "grid/guidance", "kind": "grid", "detail": "guidance(w=2)",
             "info": {"family": "guidance", "params": {"w": 2.0},
                      "schedule": {"guidance": [2.0] * task.num_steps}}},
        ]}
    (task_dir / "results.json").write_text(json.dumps(results))
    (root / "suite.json").write_text(json.dumps({"split": split, "task": "gmm2d-random",
                                                 "task_seeds": [0]}))
    return root


def _metrics(task, actions=None, *, seed, guided=False):
    ev = evaluate_sampler(task, actions, n=N, seed=seed, guided=guided)
    return {"sw2": ev.metrics["sw2"], "mode_tv": ev.metrics["mode_tv"]}


def test_rows_rules_pick_and_resume(tmp_path, load_script):
    probe = load_script("sigma_min_probe")
    suite = _suite(tmp_path / "suite")
    out = tmp_path / "probe.json"
    argv = ["--suite", str(suite), "--sigma-min", "0.3", "0.6", "--n", str(N), "--out", str(out)]
    assert probe.main(argv) == 0
    got = json.loads(out.read_text())
    assert got["complete"]
    (t,) = got["tasks"]
    assert t["fingerprint_matches"] and t["seeds"] == list(SEEDS)
    task = make_task("gmm2d-random", seed=0)
    want = {
        "default": [_metrics(task, seed=s) for s in SEEDS],
        "grid": [_metrics(task, schedule_actions(guidance=[2.0] * task.num_steps), seed=s,
                          guided=True) for s in SEEDS],
        "sigma_min=0.3": [_metrics(task.replace(sigma_min=0.3), seed=s) for s in SEEDS],
    }
    for name, rows in want.items():
        for row, w in zip(t["per_seed"][name], rows):
            assert {k: row[k] for k in w} == pytest.approx(w, rel=1e-12), name
    assert t["per_seed"]["default"][0]["nfe_per_sample"] == 35.0
    assert got["summary"]["per_sampler"]["default"]["nfe_per_sample"] == {
        "median": 35.0, "min": 35.0, "max": 35.0}
    grid_nfe = sum(r["nfe_per_sample"] for r in t["per_seed"]["grid"]) / len(SEEDS)
    assert got["summary"]["per_sampler"]["grid"]["nfe_per_sample"]["median"] == grid_nfe > 35.0
    for name in ("sigma_min=0.3", "sigma_min=0.6"):
        rows = t["per_seed"][name]
        sw2 = [a["sw2"] - b["sw2"] for a, b in zip(rows, t["per_seed"]["grid"])]
        tv = [a["mode_tv"] - b["mode_tv"] for a, b in zip(rows, t["per_seed"]["default"])]
        mean, std, _ = paired_interval(sw2)
        assert t["verdicts"][name] == {"reached": reached(mean, std),
                                       "masses_kept": paired_interval(tv)[0] <= 0.0}
    assert t["verdicts"]["grid"]["reached"] and t["verdicts"]["default"]["masses_kept"]
    search = t["search"]
    kept = [k for k in ("sigma_min=0.3", "sigma_min=0.6")
            if search[k]["mode_tv"] <= search["default"]["mode_tv"]]
    assert t["search_pick"] == min(kept, key=lambda k: search[k]["sw2"], default="default")
    summary = got["summary"]
    assert summary["both_needed"] == 1 and summary["tasks"] == 1
    both = any(t["verdicts"][k]["reached"] and t["verdicts"][k]["masses_kept"]
               for k in ("default", "sigma_min=0.3", "sigma_min=0.6"))
    assert summary["hindsight_both"] == int(both)
    # A rerun with the same settings reuses the finished task; other settings recompute it.
    t["per_seed"]["default"][0]["sw2"] = -1.0
    out.write_text(json.dumps(got))
    assert probe.main(argv) == 0
    assert json.loads(out.read_text())["tasks"][0]["per_seed"]["default"][0]["sw2"] == -1.0
    other = tmp_path / "pooled.json"  # another output reuses it with --reuse
    assert probe.main(argv[:-1] + [str(other), "--reuse", str(out)]) == 0
    assert json.loads(other.read_text())["tasks"][0]["per_seed"]["default"][0]["sw2"] == -1.0
    # Other sigma_min values: the sampler rows already there are reused, the others evaluated.
    assert probe.main(argv[:3] + ["0.3"] + argv[5:]) == 0
    (t,) = json.loads(out.read_text())["tasks"]
    assert t["per_seed"]["default"][0]["sw2"] == -1.0 and "sigma_min=0.6" not in t["per_seed"]
    # Another n: nothing is reused.
    assert probe.main(argv[:3] + ["0.3", "--n", "32", "--out", str(out)]) == 0
    (t,) = json.loads(out.read_text())["tasks"]
    assert t["n"] == 32 and t["per_seed"]["default"][0]["sw2"] > 0
    # With a rule_frontier output: the bound over the learned samplers and sigma_min together.
    frontier = tmp_path / "frontier.json"
    frontier.write_text(json.dumps({"per_task": [{"task": "gmm2d-random-0",
                                                  "any_policy_both": True}]}))
    argv = argv[:3] + ["0.3", "--n", "32", "--out", str(out)]
    assert probe.main(argv + ["--frontier", str(frontier)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["union_both"] == 1 and summary["learned_both"] == ["gmm2d-random-0"]
    frontier.write_text(json.dumps({"per_task": [{"task": "gmm2d-random-9",
                                                  "any_policy_both": True}]}))
    with pytest.raises(SystemExit, match="covers tasks"):
        probe.main(argv + ["--frontier", str(frontier)])


def _grid(task, path, best_w=2.0):
    """A grid.json of the suite's task: the default, guidance at ``best_w`` (the lowest SW2 on
    the search seed, so the comparison's best point) and two more guidance points."""
    def point(key, w, sw2):
        schedule = {"guidance": [w] * task.num_steps}
        return {"key": key, "family": "guidance", "params": {"w": w}, "metrics": {"sw2": sw2},
                "cost": {"nfe": 1, "samples": 1, "seconds": {}}, "schedule": schedule}

    points = [{"key": "d", "family": "default", "params": {}, "metrics": {"sw2": 0.0},
               "cost": {"nfe": 1, "samples": 1, "seconds": {}}, "schedule": {}},
              point("a", 1.5, 0.2), point("b", best_w, 0.1), point("c", 3.0, 0.3)]
    path.write_text(json.dumps({"task": task_fingerprint(task), "points": points}))


def test_grid_candidates_and_picks(tmp_path, load_script):
    """--grid-top K: the K sharpest grid points (by the grid's search-seed SW2) join as samplers
    named by their label, with the search-seed picks among them and among all; sampler rows of
    an earlier output of the same comparison are reused; a grid of another best point is
    refused."""
    probe = load_script("sigma_min_probe")
    suite = _suite(tmp_path / "suite")
    task = make_task("gmm2d-random", seed=0)
    grids = tmp_path / "grids"
    grids.mkdir()
    _grid(task, grids / "gmm2d-random-0.json")
    first = tmp_path / "first.json"
    base = ["--suite", str(suite), "--sigma-min", "0.3", "--n", str(N)]
    assert probe.main(base + ["--out", str(first)]) == 0
    out = tmp_path / "grid.json"
    argv = base + ["--grid-top", "2", "--grids", str(grids), "--reuse", str(first),
                   "--out", str(out)]
    assert probe.main(argv) == 0
    (t,) = json.loads(out.read_text())["tasks"]
    assert t["grid_top"] == ["grid", "grid:guidance(w=1.5)"]
    want = [_metrics(task, schedule_actions(guidance=[1.5] * task.num_steps), seed=s,
                     guided=True) for s in SEEDS]
    for row, w in zip(t["per_seed"]["grid:guidance(w=1.5)"], want):
        assert {k: row[k] for k in w} == pytest.approx(w, rel=1e-12)
    reused = json.loads(first.read_text())["tasks"][0]
    assert t["per_seed"]["sigma_min=0.3"] == reused["per_seed"]["sigma_min=0.3"]
    search = t["search"]
    for pick, names in (("grid_pick", t["grid_top"]),
                        ("all_pick", ["sigma_min=0.3", *t["grid_top"]])):
        kept = [k for k in names if search[k]["mode_tv"] <= search["default"]["mode_tv"]]
        assert t[pick] == min(kept, key=lambda k: search[k]["sw2"], default="default")
    summary = json.loads(out.read_text())["summary"]
    assert set(summary["per_sampler"]) >= {"grid_pick", "all_pick", "search_pick"}
    assert summary["all_hindsight_both"] >= max(summary["grid_hindsight_both"],
                                                summary["hindsight_both"])
    _grid(task, grids / "gmm2d-random-0.json", best_w=4.0)  # not the comparison's best point
    with pytest.raises(SystemExit, match="not the comparison's"):
        probe.main(base + ["--grid-top", "2", "--grids", str(grids), "--out",
                           str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="no grid file"):
        probe.main(base + ["--grid-top", "2", "--out", str(tmp_path / "x.json")])


def test_summary_counts_and_bound(load_script):
    probe = load_script("sigma_min_probe")

    def task(name, verdicts, pick="default"):
        return {"task": name, "search_pick": pick,
                "verdicts": {"default": {"reached": False, "masses_kept": True},
                             "grid": {"reached": True, "masses_kept": False}, **verdicts}}

    tasks = [task("a", {"sigma_min=0.3": {"reached": True, "masses_kept": True}},
                  pick="sigma_min=0.3"),
             task("b", {"sigma_min=0.3": {"reached": True, "masses_kept": False}})]
    s = probe.summarise(tasks, [0.3])
    assert s["per_sampler"]["sigma_min=0.3"] == {"reached": 2, "masses_kept": 1, "both": 1}
    assert s["per_sampler"]["search_pick"] == {"reached": 1, "masses_kept": 2, "both": 1}
    assert s["hindsight_both"] == 1 and s["hindsight_tasks"] == ["a"]
    assert s["both_needed"] == math.ceil(1.6) + math.ceil(1.8) - 2
    # With the policy's samplers: their counts, pick and bound, and the union with a learned
    # frontier takes them in too.
    for t, ok in zip(tasks, (False, True)):
        t.update(policy_candidates=["policy"], policy_pick="policy")
        t["verdicts"]["policy"] = {"reached": ok, "masses_kept": True}
    s = probe.summarise(tasks, [0.3], learned_both=set())
    assert s["per_sampler"]["policy"] == {"reached": 1, "masses_kept": 2, "both": 1}
    assert s["per_sampler"]["policy_pick"] == s["per_sampler"]["policy"]
    assert s["policy_hindsight_tasks"] == ["b"] and s["hindsight_tasks"] == ["a"]
    assert s["union_tasks"] == ["a", "b"]


def test_bad_input_is_refused(tmp_path, load_script):
    probe = load_script("sigma_min_probe")
    suite = _suite(tmp_path / "suite")
    with pytest.raises(SystemExit):
        probe.main(["--suite", str(suite), "--sigma-min", "0", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        probe.main(["--suite", str(suite), "--sigma-min", "0.3", "--n", "1",
                    "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        probe.main(["--suite", str(suite), "--sigma-min", "0.3", "--out", str(tmp_path / "o"),
                    "--reuse", str(tmp_path / "missing.json")])
    held = _suite(tmp_path / "held", split="heldout")
    with pytest.raises(SystemExit):
        probe.main(["--suite", str(held), "--sigma-min", "0.3", "--out", str(tmp_path / "o")])


def _with_run(suite, tmp_path, inference=None, temperature=1.0):
    """A tiny REINFORCE run trained on the suite's task, and the comparison's learned row of it
    (evaluated at ``temperature`` on the evaluation seeds; ``inference`` as the comparison
    records a guard's choice)."""
    from diffgym.agents.train import TrainConfig, TrainingRun

    task_dir = suite / "gmm2d-random-0"
    run_dir = task_dir / "runs" / "reinforce_js_seed0"
    if not (run_dir / "final_model.zip").is_file():
        cfg = TrainConfig(task="gmm2d-random", task_overrides={"seed": 0}, agent="reinforce",
                          n_envs=8, timesteps=8 * 18 * 2, checkpoint_every=1, eval_every=0,
                          eval_samples=64)
        TrainingRun(cfg, run_dir, progress=False).train()
    results = json.loads((task_dir / "results.json").read_text())
    results["rows"] = [r for r in results["rows"] if r["kind"] != "learned"] + [
        {"method": "reinforce", "kind": "learned", "per_seed": [
            {"eval_seed": s, "run": "reinforce_js_seed0", "temperature": temperature,
             "inference": inference} for s in SEEDS]}]
    (task_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def test_policy_guidance_reshapings(tmp_path, load_script):
    """--policy RUN: the learned run at its chosen temperature (per-sample action noise as the
    comparison draws it) and each guidance reshaping, scored like the other samplers, with the
    search-seed pick among them and their hindsight bound; bad settings are refused."""
    from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET, PolicySampler
    from diffgym.agents.train import load_policy
    from diffgym.envs.sampler import PerSampleNoise

    probe = load_script("sigma_min_probe")
    suite = _suite(tmp_path / "suite")
    run_dir = _with_run(suite, tmp_path)
    out = tmp_path / "policy.json"
    argv = ["--suite", str(suite), "--policy", "reinforce_js_seed0", "--guidance-factors", "0.5",
            "--guidance-max-sigmas", "1", "--n", str(N), "--out", str(out)]
    assert probe.main(argv) == 0
    got = json.loads(out.read_text())
    (t,) = got["tasks"]
    names = ["policy", "policy:cut=1", "policy:f=0.5", "policy:f=0.5,cut=1"]
    assert t["policy_candidates"] == names and t["policy_run"] == "reinforce_js_seed0"
    policy, task, _ = load_policy(run_dir)
    for name, kw in zip(names, ({}, {"guidance_max_sigma": 1.0}, {"guidance_factor": 0.5},
                                {"guidance_factor": 0.5, "guidance_max_sigma": 1.0})):
        sampler = PolicySampler(policy, task, temperature=1.0, **kw)
        for s, row in zip(SEEDS, t["per_seed"][name]):
            noise = PerSampleNoise([ACTION_SEED_OFFSET + s + b for b in range(N)])
            ev = evaluate_sampler(task, sampler.actions(noise), n=N, seed=s, guided=True,
                                  base_grid=True)
            assert row["sw2"] == pytest.approx(ev.metrics["sw2"], rel=1e-12), name
            assert row["nfe_per_sample"] == ev.nfe_per_sample
    search = t["search"]
    kept = [k for k in names if search[k]["mode_tv"] <= search["default"]["mode_tv"]]
    assert t["policy_pick"] == min(kept, key=lambda k: search[k]["sw2"], default="default")
    summary = got["summary"]
    assert set(summary["per_sampler"]) >= {*names, "policy_pick"}
    both = any(t["verdicts"][k]["reached"] and t["verdicts"][k]["masses_kept"]
               for k in ["default", *names])
    assert summary["policy_hindsight_both"] == int(both)
    # Another run's rows are not reused for this run's names.
    t["per_seed"]["policy"][0]["sw2"] = -1.0
    t["policy_run"] = "ppo_js_seed0"
    out.write_text(json.dumps({**got, "settings": {**got["settings"], "n": 1}}))
    assert probe.main(argv) == 0
    assert json.loads(out.read_text())["tasks"][0]["per_seed"]["policy"][0]["sw2"] > 0
    # Another inference rule: the greedy policy, amplified (alpha > 1) below sigma = 1; the
    # earlier rows (at the chosen tau = 1) are not reused for it.
    argv_greedy = argv[:4] + ["--policy-inference", "greedy", "--guidance-factors", "2",
                              "--guidance-max-sigmas", "1", "--n", str(N), "--reuse", str(out),
                              "--out", str(tmp_path / "greedy.json")]
    assert probe.main(argv_greedy) == 0
    (g,) = json.loads((tmp_path / "greedy.json").read_text())["tasks"]
    assert g["policy_inference"] == "greedy" and "policy:f=2,cut=1" in g["per_seed"]
    sampler = PolicySampler(policy, task, greedy=True, guidance_factor=2.0,
                            guidance_max_sigma=1.0)
    ev = evaluate_sampler(task, sampler.actions(None), n=N, seed=SEEDS[0], guided=True,
                          base_grid=True)
    assert g["per_seed"]["policy:f=2,cut=1"][0]["sw2"] == pytest.approx(ev.metrics["sw2"],
                                                                         rel=1e-12)
    plain = PolicySampler(policy, task, greedy=True)
    ev = evaluate_sampler(task, plain.actions(None), n=N, seed=SEEDS[0], guided=True,
                          base_grid=True)
    assert g["per_seed"]["policy"][0]["sw2"] == pytest.approx(ev.metrics["sw2"], rel=1e-12)
    for bad in (["--guidance-factors", "1"], ["--guidance-factors", "-1"],
                ["--guidance-max-sigmas", "0"], ["--policy-inference", "hot"],
                ["--policy-inference", "0"]):
        with pytest.raises(SystemExit):
            probe.main(argv[:4] + bad + ["--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit):  # reshapings without a policy
        probe.main(["--suite", str(suite), "--guidance-factors", "0.5", "--out",
                    str(tmp_path / "o.json")])
    with pytest.raises(SystemExit):  # nothing to probe
        probe.main(["--suite", str(suite), "--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit, match="no learned row"):
        probe.main(argv[:2] + ["--policy", "ppo_js_seed0", "--out", str(tmp_path / "o.json")])
    _with_run(suite, tmp_path, temperature="mean:f=2,cut=1")  # a reshaped rule was chosen
    with pytest.raises(SystemExit, match="chose the reshaped rule 'mean:f=2,cut=1'"):
        probe.main(argv[:4] + ["--out", str(tmp_path / "o.json")])
    _with_run(suite, tmp_path, inference="default")  # the guard kept the default sampler
    with pytest.raises(SystemExit, match="allowed: the final policy"):
        probe.main(argv[:4] + ["--out", str(tmp_path / "o.json")])


def test_policy_on_a_larger_sigma_min_and_subset_picks(tmp_path, load_script):
    """--policy-sigma-mins: each policy sampler also on the schedule ending at a larger
    sigma_min (the policy acting on that schedule); --pick-among: the search-seed rule among a
    named subset, from the stored rows (a rerun with another subset evaluates nothing)."""
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_policy

    probe = load_script("sigma_min_probe")
    suite = _suite(tmp_path / "suite")
    run_dir = _with_run(suite, tmp_path)
    out = tmp_path / "smin.json"
    subset = ["policy:cut=1", "policy:cut=1|sigma_min=0.3"]
    argv = ["--suite", str(suite), "--policy", "reinforce_js_seed0", "--policy-inference",
            "mean", "--guidance-max-sigmas", "1", "--policy-sigma-mins", "0.3", "--n", str(N),
            "--pick-among", *subset, "--out", str(out)]
    assert probe.main(argv) == 0
    got = json.loads(out.read_text())
    (t,) = got["tasks"]
    names = ["policy", "policy:cut=1", "policy|sigma_min=0.3", "policy:cut=1|sigma_min=0.3"]
    assert t["policy_candidates"] == names
    policy, task, _ = load_policy(run_dir)
    on = task.replace(sigma_min=0.3)
    sampler = PolicySampler(policy, on, mean_action=True, guidance_max_sigma=1.0)
    ev = evaluate_sampler(on, sampler.actions(None), n=N, seed=SEEDS[1], guided=True,
                          base_grid=True)
    row = t["per_seed"]["policy:cut=1|sigma_min=0.3"][1]
    assert row["sw2"] == pytest.approx(ev.metrics["sw2"], rel=1e-12)
    assert row["nfe_per_sample"] == ev.nfe_per_sample
    plain = t["per_seed"]["policy:cut=1"][1]
    assert plain["sw2"] != row["sw2"]  # another schedule, other samples
    search = t["search"]
    kept = [k for k in subset if search[k]["mode_tv"] <= search["default"]["mode_tv"]]
    want = min(kept, key=lambda k: search[k]["sw2"], default="default")
    if want != "default" and search[want]["sw2"] > search["default"]["sw2"]:
        want = "default"  # the comparison keeps the default sampler when it is sharper
    label = "pick: policy:cut=1 + policy:cut=1|sigma_min=0.3"
    assert got["summary"]["search_picks"]["gmm2d-random-0"][label] == want
    assert got["summary"]["per_sampler"][label]["reached"] == int(t["verdicts"][want]["reached"])
    assert got["settings"]["pick_among"] == [subset]
    # Another subset from the same rows: the task is reused whole (a doctored row stays).
    t["per_seed"]["policy"][0]["sw2"] = 123.0
    out.write_text(json.dumps(got))
    argv2 = argv[:-5] + ["--pick-among", "policy", "--out", str(out)]
    assert probe.main(argv2) == 0
    again = json.loads(out.read_text())
    assert again["tasks"][0]["per_seed"]["policy"][0]["sw2"] == 123.0
    assert "pick: policy" in again["summary"]["per_sampler"]
    with pytest.raises(SystemExit, match="has no rows"):
        probe.main(argv[:-5] + ["--pick-among", "policy:f=9", "--out", str(out)])
    # The comparison's chooser: the default sampler when its SW2 beats every qualifying one.
    row = {"search": {"default": {"sw2": 0.2, "mode_tv": 0.03},
                      "a": {"sw2": 0.1, "mode_tv": 0.04}, "b": {"sw2": 0.25, "mode_tv": 0.02},
                      "c": {"sw2": 0.15, "mode_tv": 0.03}}}
    assert probe.comparison_pick(row, ["a", "b"]) == "default"
    assert probe.comparison_pick(row, ["a", "b", "c"]) == "c"
    assert probe.comparison_pick(row, ["a"]) == "default"
    for bad in (["--policy-sigma-mins", "0"], ["--policy-sigma-mins", "nan"]):
        with pytest.raises(SystemExit):
            probe.main(argv[:4] + bad + ["--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit):  # a policy sigma_min without a policy
        probe.main(["--suite", str(suite), "--sigma-min", "0.3", "--policy-sigma-mins", "0.3",
                    "--out", str(tmp_path / "o.json")])
