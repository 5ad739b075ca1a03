"""How well the search seed chooses a checkpoint: every candidate of a suite run with
``--select-checkpoints``, scored on the suite's own evaluation seeds.

A comparison with ``select_checkpoints = K`` chooses, on one search seed, among K milestone
checkpoints of a training run and its inference candidates (by default greedy and tau = 1).
This script takes each task of such a finished *development* suite and evaluates every
candidate on the learned row's evaluation seeds at ``--n`` samples, exactly as the comparison
evaluates a learned row (:func:`~diffgym.benchmarks.runs.evaluate_policy`: the same per-sample
action noise and sample seeds). Per task it reports

* every candidate's search-seed headline metric (from ``results.json``) and its evaluation-seed
  metrics (SW2 and mode TV, per seed and the mean),
* the rank correlation (Spearman) of the search-seed and the evaluation-seed SW2 over the
  candidates: how far the search seed orders the candidates as more data would,
* the evaluation-seed SW2 of the candidate the comparison chose, of the final model's own choice
  (the better temperature at the last round on the search seed: what a comparison without
  checkpoint selection picks), and of the best candidate in hindsight (an oracle, not a method:
  it looks at the evaluation seeds).

At ``--n`` equal to the suite's ``n_eval`` the chosen candidate's numbers must be the suite's
(checked: the script stops if they differ). Held-out suites are refused: looking at every
candidate on the evaluation seeds is tuning.

    python benchmarks/scripts/checkpoint_oracle.py --suite runs/study/rf-ck4 --n 8192 \\
        --threads 1 --out benchmarks/results/checkpoint_oracle/dev-rf-ck4-n8192.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffgym.agents.train import load_run_config
from diffgym.benchmarks.compare import INFERENCE_TEMPERATURES
from diffgym.benchmarks.evaluate import task_fingerprint
from diffgym.benchmarks.report import tau_name
from diffgym.benchmarks.runs import (
    EvalCache,
    check_inference_candidates,
    evaluate_policy,
    train_or_load,
)
from diffgym.benchmarks.suite import finished_suite_tasks
from diffgym.envs.io import atomic_write_json
from diffgym.envs.tasks import make_task

METRICS = ("sw2", "mode_tv")


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists (ties get their mean rank)."""
    def ranks(x: list[float]) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=np.float64)
        for v in np.unique(x):  # ties: the mean of their ranks
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def study_task(task_dir: Path, run: str, n: int) -> dict[str, Any]:
    """Every checkpoint candidate of one task's learned run, on its evaluation seeds."""
    results = json.loads((task_dir / "results.json").read_text())
    k = int(results["settings"].get("select_checkpoints", 1))
    if k < 2:
        raise SystemExit(f"{task_dir}: the comparison chose among {k} checkpoint; run the suite "
                         "with --select-checkpoints K (K >= 2)")
    metric = results["metric"]
    evals = [p for r in results["rows"] if r["kind"] == "learned" for p in r["per_seed"]
             if p.get("run") == run]
    if not evals:
        raise SystemExit(f"{task_dir}: no learned row was evaluated with run {run!r}")
    first = evals[0]
    search = {(int(r), t): v for r, by_tau in first["checkpoint_selection"].items()
              for t, v in by_tau.items()}
    seeds = [int(p["eval_seed"]) for p in evals]
    run_dir = task_dir / "runs" / run
    config = load_run_config(run_dir)
    trained = train_or_load(config, run_dir, device="cpu", progress=False)
    task = make_task(config.task, **config.task_overrides)
    common = dict(config=config, method="candidate", task=task, task_fp=task_fingerprint(task),
                  n=n, device="cpu")
    candidates = []
    rules = check_inference_candidates(
        results["settings"].get("inference_candidates", INFERENCE_TEMPERATURES))
    for c in trained.at_milestones(k):
        for tau in rules:
            per_seed = []
            for s in seeds:
                _, record, _ = evaluate_policy(run=c, **common, cache=EvalCache(None), tau=tau,
                                               seed=s)
                per_seed.append({m: float(record["metrics"][m]) for m in METRICS})
            candidates.append({
                "round": c.round, "inference": tau_name(tau),
                "search": search[(c.round, tau_name(tau))], "per_seed": per_seed,
                "mean": {m: statistics.fmean(r[m] for r in per_seed) for m in METRICS},
            })
    by_key = {(c["round"], c["inference"]): c for c in candidates}
    chosen = by_key[(int(first["checkpoint_round"]), tau_name(first["temperature"]))] \
        if first.get("inference") != "default" else None
    if chosen is not None and n == results["settings"]["n_eval"]:
        for p, got in zip(evals, chosen["per_seed"]):
            for m in METRICS:
                want = float(p["metrics"][m])
                if abs(got[m] - want) > 1e-6 * max(1.0, abs(want)):
                    raise SystemExit(f"{task_dir}: the chosen candidate's {m} on seed "
                                     f"{p['eval_seed']} is {got[m]}, the suite's {want}")
    sign = 1.0 if results["direction"] == "min" else -1.0
    total = int(first["total_rounds"])
    final = min((c for c in candidates if c["round"] == total), key=lambda c: sign * c["search"])
    oracle = min(candidates, key=lambda c: sign * c["mean"][metric])
    return {
        "task": task_dir.name, "seeds": seeds, "n": n, "metric": metric,
        "direction": results["direction"],
        "candidates": candidates,
        "spearman_search_vs_eval": spearman([c["search"] for c in candidates],
                                            [c["mean"][metric] for c in candidates]),
        "spearman_by_inference": {  # among one temperature's K checkpoints
            name: spearman([c["search"] for c in candidates if c["inference"] == name],
                           [c["mean"][metric] for c in candidates if c["inference"] == name])
            for name in dict.fromkeys(c["inference"] for c in candidates)},
        "chosen": None if chosen is None else [chosen["round"], chosen["inference"]],
        "final_choice": [final["round"], final["inference"]],
        "oracle": [oracle["round"], oracle["inference"]],
        "eval": {name: None if c is None else c["mean"]
                 for name, c in (("chosen", chosen), ("final_choice", final),
                                 ("oracle", oracle))},
    }


def _finite_mean(values: Iterable[float]) -> float | None:
    """The mean of the finite values (a rank correlation is NaN when one side is constant);
    ``None`` when there is none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else None


def summarise(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over tasks of the evaluation-seed headline differences (chosen - final choice,
    oracle - final choice; signed so that negative is better), how often the chosen candidate
    beats the final choice, and the mean rank correlation."""
    ok = [t for t in tasks if t["chosen"] is not None]
    metric = tasks[0]["metric"] if tasks else "sw2"
    sign = -1.0 if tasks and tasks[0].get("direction") == "max" else 1.0  # negative: better
    d = lambda t, name: sign * (  # noqa: E731
        t["eval"][name][metric] - t["eval"]["final_choice"][metric])
    return {
        "tasks": len(tasks),
        "metric": metric,
        "chosen_minus_final_mean": statistics.fmean(d(t, "chosen") for t in ok) if ok else None,
        "chosen_better": sum(d(t, "chosen") < 0 for t in ok),
        "chosen_worse": sum(d(t, "chosen") > 0 for t in ok),
        "chosen_same": sum(t["chosen"] == t["final_choice"] for t in ok),
        "oracle_minus_final_mean": statistics.fmean(d(t, "oracle") for t in tasks)
        if tasks else None,
        "spearman_mean": _finite_mean(t["spearman_search_vs_eval"] for t in tasks),
        "spearman_by_inference_mean": {
            name: _finite_mean(t["spearman_by_inference"][name] for t in tasks)
            for name in (tasks[0]["spearman_by_inference"] if tasks else {})},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", type=Path, required=True, help="a finished development suite")
    p.add_argument("--run", default="reinforce_js_seed0", help="the run folder in each task")
    p.add_argument("--n", type=int, default=8192, help="samples per evaluation seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: leave)")
    p.add_argument("--out", type=Path, required=True, help="JSON output (atomic)")
    args = p.parse_args(argv)
    if args.n < 2:
        p.error(f"--n must be >= 2, got {args.n}")
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        _, dirs = finished_suite_tasks(
            args.suite, why=": looking at every candidate on the evaluation seeds is tuning")
    except ValueError as err:
        p.error(f"--suite: {err}")
    tasks = []
    for d in dirs:
        t = study_task(d, args.run, args.n)
        e = t["eval"]
        chosen = "default" if e["chosen"] is None else f"{e['chosen'][t['metric']]:.4f}"
        print(f"{t['task']:20s} rho {t['spearman_search_vs_eval']:+.2f}  chosen {t['chosen']} "
              f"{chosen}  final {t['final_choice']} {e['final_choice'][t['metric']]:.4f}  "
              f"oracle {t['oracle']} {e['oracle'][t['metric']]:.4f}", flush=True)
        tasks.append(t)
    summary = summarise(tasks)
    print(json.dumps(summary))
    atomic_write_json(args.out, {"suite": str(args.suite), "run": args.run, "n": args.n,
                                 "summary": summary, "tasks": tasks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
