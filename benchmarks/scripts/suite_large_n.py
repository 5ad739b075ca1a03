"""Re-score a finished suite's mode masses at a larger sample size, where the pairing resolves them.

At the suite's ``n = 2048`` the mode-mass TV of a sampler is mostly its sampling noise: a
mixture of K modes drawn 2048 times misses its weights by about ``sum_k sqrt(w_k (1 - w_k) /
(2 pi n))`` in TV even for real data, and most learned-vs-default differences sit inside it
(RESULTS §28-§29). This script takes each task of a finished suite and evaluates, on ``--n``
samples of the suite's own evaluation seeds (the comparison's common random numbers: sample
``b`` of seed ``s`` uses noise seed ``s + b``, so the first ``n_eval`` samples are the suite's),

* the default sampler, the comparison's best grid point (its schedule from ``results.json``),
* the learned run ``--run`` at the inference temperature (and, with ``--select-checkpoints``,
  the checkpoint) the comparison chose on each seed (per-sample action noise as the comparison
  draws it), and the greedy policy of that checkpoint (with ``--mean-action``, also its
  mean-action inference at τ = 1, :class:`~diffgym.agents.policy_sampling.PolicySampler`'s
  ``mean_action``: scored as a ``mean`` row, paired like the others),
* real data (the task's own noise floor, :func:`~diffgym.benchmarks.evaluate.noise_floor`),

and reports per task the paired differences to the default (mode TV and SW2) with a 95 %
t-interval over the seeds, and per suite how many tasks have mode TV at or below the default's
and how many are resolved either way. At ``--n`` equal to the suite's own ``n_eval`` the learned
and default numbers are the suite's (checked: the script stops if they differ).

    python benchmarks/scripts/suite_large_n.py --suite runs/study/rf-base --n 16384 \\
        --threads 1 --out benchmarks/results/suite_large_n/dev-rf-base.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET, PolicySampler
from diffgym.agents.train import load_policy
from diffgym.benchmarks.evaluate import evaluate_sampler, noise_floor
from diffgym.benchmarks.grid_families import point_task
from diffgym.benchmarks.report import MEAN_ACTION, paired_interval, tau_name
from diffgym.benchmarks.runs import inference_sampler, rule_task
from diffgym.benchmarks.suite import finished_suite_tasks
from diffgym.benchmarks.suite_outcomes import reached
from diffgym.envs.io import atomic_write_json
from diffgym.envs.sampler import PerSampleNoise, schedule_actions

METRICS = ("sw2", "mode_tv")
NFE = ("nfe_per_sample",)  # recorded per seed since session 18 (not for real data)


def interval(deltas: list[float]) -> dict[str, Any]:
    """Mean, std and 95 % t-interval of paired differences; ``resolved`` is ``"below"`` /
    ``"above"`` when the interval excludes 0, else ``"tie"``."""
    mean, std, half = paired_interval(deltas)
    if len(deltas) < 2:
        return {"mean": mean, "std": 0.0, "lo": mean, "hi": mean, "resolved": "tie"}
    lo, hi = mean - half, mean + half
    resolved = "below" if hi < 0 else "above" if lo > 0 else "tie"
    return {"mean": mean, "std": std, "lo": lo, "hi": hi, "resolved": resolved}


def _score(task, actions, *, n: int, seed: int, guided: bool = False, renoise_budget: int = 0,
           base_grid: bool = False) -> dict[str, float]:
    """SW2, mode TV and the NFE per sample the sampler spent (``nfe_per_sample``: rows evaluated,
    RESULTS §9) of ``n`` samples on the protocol's seed ``seed``, sampled with the same
    arguments the comparison evaluated the row with."""
    with torch.inference_mode():
        ev = evaluate_sampler(task, actions, n=n, seed=seed, guided=guided,
                              renoise_budget=renoise_budget, base_grid=base_grid)
    return {**{m: float(ev.metrics[m]) for m in METRICS},
            "nfe_per_sample": ev.nfe_per_sample}


def study_task(task_dir: Path, run: str, n: int, mean_action: bool = False) -> dict[str, Any]:
    """One task of a suite at ``n`` samples: default, best grid point, learned run (as chosen,
    greedy and, with ``mean_action``, its mean action at τ = 1), real data; each sampled as
    :mod:`~diffgym.benchmarks.compare` samples it."""
    results = json.loads((task_dir / "results.json").read_text())
    if results.get("metric") != "sw2":
        raise SystemExit(f"{task_dir}: headline metric {results.get('metric')!r}; reach is "
                         "scored on sw2 only (allowed: mixture tasks with headline 'sw2')")
    rows = {r["method"]: r for r in results["rows"]}
    default = next(r for r in results["rows"] if r["kind"] == "default")
    grid = rows[results["best_grid_row"]]
    evals = [p for r in results["rows"] if r["kind"] == "learned" for p in r["per_seed"]
             if p.get("run") == run]
    if not evals:
        raise SystemExit(f"{task_dir}: no learned row was evaluated with run {run!r}")
    seeds = [int(p["eval_seed"]) for p in evals]
    rounds = {p.get("checkpoint_round") for p in evals if p.get("inference") != "default"}
    if len(rounds) > 1:
        raise SystemExit(f"{task_dir}: run {run!r} was evaluated at several checkpoints {rounds}")
    at = next(iter(rounds), None)  # the checkpoint the comparison chose (None: final model)
    if at is not None and at == evals[0].get("total_rounds"):
        at = None  # the last round: the comparison evaluated the final model itself
    policy, task, _ = load_policy(task_dir / "runs" / run, round=at)
    out: dict[str, Any] = {"task": task_dir.name, "seeds": seeds, "n": n, "checkpoint_round": at,
                           "best_grid": grid["detail"], "inference": [], "per_seed": {}}
    out["per_seed"]["default"] = [_score(task, None, n=n, seed=s) for s in seeds]
    info = grid["info"]
    schedule = info["schedule"]  # {} for a family that changes the task (e.g. its schedule)
    grid_task = point_task(task, info["family"], info["params"])
    grid_actions = schedule_actions(**schedule) if schedule else None
    grid_guided = any(w != 1.0 for w in schedule.get("guidance", ()))
    out["per_seed"]["grid"] = [_score(grid_task, grid_actions, n=n, seed=s, guided=grid_guided)
                               for s in seeds]

    def policy_score(sampler: PolicySampler, s: int, noise: PerSampleNoise | None,
                     tau: float | str | None = None):
        # on the rule's task: a rule with a schedule key samples another schedule
        return _score(rule_task(task, tau), sampler.actions(noise), n=n, seed=s,
                      guided="guidance" in sampler.knob_names,
                      renoise_budget=sampler.renoise_budget, base_grid=True)

    learned = []
    for p in evals:
        s, choice, tau = int(p["eval_seed"]), p.get("inference"), p.get("temperature")
        out["inference"].append(choice or tau_name(tau))
        if choice == "default":  # the inference guard kept the default sampler
            learned.append(_score(task, None, n=n, seed=s))
            continue
        sampler = inference_sampler(policy, task, tau)
        learned.append(policy_score(
            sampler, s, PerSampleNoise([ACTION_SEED_OFFSET + s + b for b in range(n)]), tau))
    out["per_seed"]["learned"] = learned
    greedy = inference_sampler(policy, task, None)
    out["per_seed"]["greedy"] = [policy_score(greedy, s, None) for s in seeds]
    if mean_action:
        mean = inference_sampler(policy, task, MEAN_ACTION)
        out["per_seed"]["mean"] = [policy_score(mean, s, None) for s in seeds]
    if n == results["settings"]["n_eval"]:  # the suite's own numbers must come back
        for name, row_seeds in (("learned", evals), ("default", default["per_seed"]),
                                ("grid", grid["per_seed"])):
            want = {int(q["eval_seed"]): {**q["metrics"], **{
                k: q[k] for k in NFE if k in q}} for q in row_seeds}
            for s, got in zip(seeds, out["per_seed"][name]):
                for m in METRICS + tuple(k for k in NFE if k in want[s]):
                    if abs(got[m] - want[s][m]) > 1e-6 * max(1.0, abs(want[s][m])):
                        raise SystemExit(f"{task_dir}: {name} {m} on seed {s} is {got[m]}, the "
                                         f"suite's {want[s][m]}")
    real = noise_floor(task, n, seeds)["per_seed"]
    out["per_seed"]["real"] = [{m: float(r[m]) for m in METRICS} for r in real]
    out["paired"] = paired(out["per_seed"])
    out["mean"] = {name: {m: statistics.fmean(r[m] for r in rows) for m in METRICS + NFE
                          if all(m in r for r in rows)}
                   for name, rows in out["per_seed"].items()}
    return out


def paired(d: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Paired intervals of one task's per-seed scores: every sampler against the default (mode
    TV, SW2), and against the best grid point (SW2)."""
    out = {f"{name}-default:{m}": interval([a[m] - b[m] for a, b in zip(d[name], d["default"])])
           for name in ("learned", "greedy", "mean", "grid") if name in d for m in METRICS}
    for name in ("learned", "greedy", "mean", "default"):
        if name in d:
            out[f"{name}-grid:sw2"] = interval(
                [a["sw2"] - b["sw2"] for a, b in zip(d[name], d["grid"])])
    if "real" in d:  # the default's mass bias over real data's own sampling noise
        out["default-real:mode_tv"] = interval(
            [a["mode_tv"] - b["mode_tv"] for a, b in zip(d["default"], d["real"])])
    return out


def summarise(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over tasks: mode TV at or below the default's (mean of the paired differences),
    resolved below / above, and reach (SW2 minus the best grid point's <= +1 std of the
    pairing) of the learned, greedy, mean-action (when scored) and default samplers; and, when
    every task records it, each sampler's NFE per sample over tasks (median, min, max)."""
    out: dict[str, Any] = {"tasks": len(tasks)}
    for name in ("learned", "greedy", "mean", "grid"):
        if any(f"{name}-default:mode_tv" not in t["paired"] for t in tasks):
            continue  # written before the script scored greedy policies, or without --mean-action
        tv = [t["paired"][f"{name}-default:mode_tv"] for t in tasks]
        out[name] = {
            "mode_tv_le_default": sum(i["mean"] <= 0 for i in tv),
            "mode_tv_resolved_below": sum(i["resolved"] == "below" for i in tv),
            "mode_tv_resolved_above": sum(i["resolved"] == "above" for i in tv),
            "mean_delta_mode_tv": statistics.fmean(i["mean"] for i in tv),
            "mean_delta_sw2": statistics.fmean(
                t["paired"][f"{name}-default:sw2"]["mean"] for t in tasks),
        }
    for name in ("learned", "greedy", "mean", "default"):
        if any(f"{name}-grid:sw2" not in t["paired"] for t in tasks):
            continue
        reach = [t["paired"][f"{name}-grid:sw2"] for t in tasks]
        out.setdefault(name, {})["reached_best_grid"] = sum(
            bool(reached(i["mean"], i["std"])) for i in reach)
    for name in ("default", "grid", "learned", "greedy", "mean"):  # files written since the NFE
        nfe = [t["mean"].get(name, {}).get("nfe_per_sample") for t in tasks]  # is recorded
        if nfe and None not in nfe:
            out.setdefault(name, {})["nfe_per_sample"] = {
                "median": statistics.median(nfe), "min": min(nfe), "max": max(nfe)}
    excess = [t["mean"]["default"]["mode_tv"] - t["mean"]["real"]["mode_tv"] for t in tasks]
    out["default_excess_over_real"] = excess
    out["default"]["mode_tv_resolved_above_real"] = sum(
        t["paired"]["default-real:mode_tv"]["resolved"] == "above" for t in tasks)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", type=Path, required=True, help="a finished suite folder")
    p.add_argument("--run", default="reinforce_js_seed0", help="the run folder in each task")
    p.add_argument("--n", type=int, default=16384, help="samples per evaluation seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: leave)")
    p.add_argument("--out", type=Path, required=True, help="JSON output (atomic)")
    p.add_argument("--mean-action", action="store_true",
                   help="also score the run's mean-action inference at tau = 1 (a 'mean' row)")
    p.add_argument("--allow-heldout", action="store_true",
                   help="also score a held-out suite (only for a pre-registered judgement)")
    p.add_argument("--resummarise", action="store_true",
                   help="read --out as written before and only recompute its intervals and "
                   "summary (no sampling)")
    args = p.parse_args(argv)
    if args.resummarise:
        data = json.loads(args.out.read_text())
        for t in data["tasks"]:
            t["paired"] = paired(t["per_seed"])
        data["summary"] = summarise(data["tasks"])
        atomic_write_json(args.out, data)
        print(json.dumps({k: v for k, v in data["summary"].items()
                          if k != "default_excess_over_real"}))
        return 0
    if args.n < 2:
        p.error(f"--n must be >= 2, got {args.n}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        suite, dirs = finished_suite_tasks(
            args.suite, allow_heldout=args.allow_heldout,
            why="; pass --allow-heldout only for a pre-registered held-out judgement")
    except ValueError as err:
        p.error(f"--suite: {err}")
    tasks = []
    for d in dirs:
        t = study_task(d, args.run, args.n, mean_action=args.mean_action)
        tv = t["paired"]["learned-default:mode_tv"]
        print(f"{t['task']:22s} mode TV default {t['mean']['default']['mode_tv']:.4f} real "
              f"{t['mean']['real']['mode_tv']:.4f} learned-default {tv['mean']:+.4f} "
              f"[{tv['lo']:+.4f}, {tv['hi']:+.4f}] {tv['resolved']}", flush=True)
        tasks.append(t)
    summary = summarise(tasks)
    print(json.dumps({k: v for k, v in summary.items() if k != "default_excess_over_real"}))
    atomic_write_json(args.out, {"suite": str(args.suite), "split": suite.get("split"),
                                 "run": args.run, "n": args.n, "summary": summary,
                                 "tasks": tasks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
