"""Re-evaluate a mixture-task comparison at a larger sample size, where SW2's noise floor is lower.

On ``gmm2d`` the sliced Wasserstein distance between two independent sets of 2048 *real* samples
is already about 0.19 ± 0.04 (well-separated modes: a few samples more or less in one mode move
mass a long way), as large as the differences between samplers. This script measures that floor
and re-scores, on ``--n`` samples and several disjoint sample seeds (common random numbers: every
sampler sees the same per-sample noise and reference set per seed):

* the default sampler and each grid family's best point, read from a comparison's
  ``results.json`` (their per-step schedules);
* the policies of finished training runs (``--runs``), greedy and at temperature 1.

It reports ``sw2``, ``logp`` and ``mode_tv`` (the exact metrics of
:func:`diffgym.benchmarks.metrics.mixture_metrics`, without the quadratic-cost MMD) and, per
group of runs (agent + settings), the paired SW2 difference to the default sampler and to the
best grid point: mean over sample seeds per run, then mean ± std over runs.

    python benchmarks/scripts/large_n_check.py \\
        --results benchmarks/results/compare/gmm2d/results.json --runs RUN_DIR ... \\
        --n 8192 --threads 1 --out benchmarks/results/large_n_check.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET, PolicySampler
from diffgym.agents.train import load_policy
from diffgym.benchmarks.evaluate import crn_sample, noise_floor, reference_seed, task_metrics
from diffgym.envs.io import atomic_write_json
from diffgym.envs.sampler import PerSampleNoise, schedule_actions
from diffgym.envs.tasks import Task, make_task

METRICS = ("sw2", "logp", "mode_tv")
DEFAULT_SEEDS = (10**7, 2 * 10**7, 3 * 10**7)


def score(task: Task, x: torch.Tensor, seed: int) -> dict[str, float]:
    """``sw2``, ``logp``, ``mode_tv`` of the protocol's task metrics against reference seed
    ``seed``."""
    metrics = task_metrics(task, x, seed=seed)
    return {m: metrics[m] for m in METRICS}


def run_sampler(task: Task, actions, *, n: int, seed: int) -> torch.Tensor:
    """``n`` samples on the comparison's CRN protocol (sample ``b`` uses noise seed ``seed+b``)."""
    with torch.inference_mode():
        return crn_sample(
            task, actions, n=n, seed=seed, guided=task.guide is not None,
            renoise_budget=task.renoise_budget,
        ).x


def _group(cfg) -> str:
    extra = ",".join(f"{k}={v}" for k, v in sorted(cfg.agent_overrides.items()))
    return f"{cfg.agent}+{cfg.irl}/{cfg.divergence}" + (f" [{extra}]" if extra else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, required=True, help="a comparison's results.json")
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="finished run directories")
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                   help="sample seeds, at least --n apart")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="JSON output (atomic)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seeds = sorted(args.seeds)
    if len(seeds) < 2 or any(b - a < args.n for a, b in zip(seeds, seeds[1:])):
        p.error(f"--seeds {args.seeds}: give at least two, at least --n = {args.n} apart")
    comparison = json.loads(args.results.read_text())
    task = make_task(comparison["task"])
    if task.target is None:
        p.error(f"task {task.name!r} is not a mixture task")

    rows: dict[str, list[dict[str, float]]] = {}
    for row in comparison["rows"]:
        if row["kind"] in ("default", "grid"):
            schedule = row["info"]["schedule"]
            actions = schedule_actions(**schedule) if schedule else None
            rows[row["method"]] = [
                score(task, run_sampler(task, actions, n=args.n, seed=s), reference_seed(s))
                for s in seeds
            ]
            sw2 = statistics.fmean(r["sw2"] for r in rows[row["method"]])
            print(f"{row['method']:28s} sw2 {sw2:.4f}", flush=True)
    grid_rows = [m for m in rows if m.startswith("grid/")]
    best_grid = min(grid_rows, key=lambda m: statistics.fmean(r["sw2"] for r in rows[m]))

    runs: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for run_dir in args.runs:
        policy, run_task, cfg = load_policy(run_dir)
        for mode in ("greedy", "tau=1"):
            sampler = PolicySampler(policy, run_task, greedy=mode == "greedy")
            per_seed = []
            for s in seeds:
                noise = None
                if mode != "greedy":
                    base = ACTION_SEED_OFFSET + s
                    noise = PerSampleNoise([base + b for b in range(args.n)])
                x = run_sampler(run_task, sampler.actions(noise), n=args.n, seed=s)
                per_seed.append(score(run_task, x, reference_seed(s)))
            runs[f"{_group(cfg)} ({mode})"][str(run_dir)] = per_seed
            print(f"{run_dir} {mode}: sw2 {statistics.fmean(r['sw2'] for r in per_seed):.4f}",
                  flush=True)

    def paired(per_seed, ref):
        return statistics.fmean(a["sw2"] - b["sw2"] for a, b in zip(per_seed, rows[ref]))

    summary = {}
    for name, per_seed in rows.items():
        summary[name] = {m: (statistics.fmean(r[m] for r in per_seed),
                             statistics.stdev(r[m] for r in per_seed)) for m in METRICS}
    for group, by_run in runs.items():
        run_means = {m: [statistics.fmean(r[m] for r in ps) for ps in by_run.values()]
                     for m in METRICS}
        d_default = [paired(ps, "default") for ps in by_run.values()]
        d_best = [paired(ps, best_grid) for ps in by_run.values()]
        std = statistics.stdev if len(by_run) > 1 else (lambda v: 0.0)
        summary[group] = {
            **{m: (statistics.fmean(v), std(v)) for m, v in run_means.items()},
            "runs": len(by_run),
            "sw2_per_run": run_means["sw2"],
            "paired_sw2_vs_default": (statistics.fmean(d_default), std(d_default)),
            "runs_better_than_default": sum(d < 0 for d in d_default),
            f"paired_sw2_vs_{best_grid}": (statistics.fmean(d_best), std(d_best)),
        }
    real = noise_floor(task, args.n, seeds)
    sw2_floor = [r["sw2"] for r in real["per_seed"]]
    floor = {"mean": statistics.fmean(sw2_floor), "std": statistics.stdev(sw2_floor),
             "per_seed": sw2_floor}
    print(f"\nSW2 of real vs real data at n = {args.n}: {floor['mean']:.4f} ± {floor['std']:.4f}")
    print(f"{'method':48s} {'sw2':>16s} {'logp':>14s} {'mode_tv':>15s}  paired SW2 vs default")
    for name, s in summary.items():
        cols = " ".join(f"{s[m][0]:8.4f} ± {s[m][1]:.3f}" for m in METRICS)
        extra = ""
        if "paired_sw2_vs_default" in s:
            d, e = s["paired_sw2_vs_default"]
            extra = f"  {d:+.4f} ± {e:.4f} ({s['runs_better_than_default']}/{s['runs']} better)"
        print(f"{name:48s} {cols}{extra}")
    if args.out is not None:
        atomic_write_json(args.out, {
            "task": task.name, "n": args.n, "seeds": seeds, "results": str(args.results),
            "best_grid": best_grid, "noise_floor_sw2": floor, "summary": summary,
            "per_seed": {"fixed": rows, "runs": runs},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
