"""Learned step-knob policies against the default sampler and the schedule grid, per sample NFE
Not part of the package.

    python benchmarks/scripts/step_knob_eval.py --runs RUN_DIR... --n 4096 --seeds 1000 1001 \\
        --out benchmarks/results/step_knob/gmm2d

Every sampler is evaluated with the common-random-numbers protocol of
:func:`diffgym.benchmarks.grid.evaluate_sampler` on the same seeds (sample ``b`` of seed ``s``
draws its noise from ``s + b``; policies' action noise from ``ACTION_SEED_OFFSET + s + b``): the
task's default sampler, the schedule grid ``num_steps x rho`` (:class:`ScheduleFamily`'s default
preset) and each run's policy, greedy and at temperature 1. Writes ``step_knob.json`` (per-seed
metrics and NFE per sample, paired differences to the default) and ``nfe_frontier.png/json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET, PolicySampler
from diffgym.agents.train import load_policy
from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS
from diffgym.benchmarks.frontier import FrontierPoint, write_frontier
from diffgym.benchmarks.grid import ScheduleFamily, default_metric, evaluate_sampler
from diffgym.envs.io import atomic_write_json
from diffgym.envs.sampler import PerSampleNoise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="finished run folders")
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--seeds", nargs="+", type=int, default=[1000, 1001])
    p.add_argument("--metric", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    policies = {}
    for run in args.runs:
        policy, task, cfg = load_policy(run)
        policies[run.name] = (policy, task, cfg)
    task = next(iter(policies.values()))[1]
    plain = task.replace(schedule_factor=1, step_advances=(1,))
    metric = args.metric or default_metric(plain)
    direction = METRIC_DIRECTIONS[metric]
    rows: dict[str, dict] = {}

    def record(name: str, kind: str, s: int, ev) -> None:
        row = rows.setdefault(name, {"kind": kind, "per_seed": []})
        row["per_seed"].append({"seed": s, "metrics": ev.metrics,
                                "nfe_per_sample": ev.nfe_per_sample})

    for s in args.seeds:
        record("default", "default", s, evaluate_sampler(plain, n=args.n, seed=s))
        family = ScheduleFamily.preset(plain)
        for point in family.points():
            changed = plain.replace(**ScheduleFamily.task_changes(point))
            kind = "default_n" if point["rho"] == plain.rho else "schedule"
            name = f"schedule(N={int(point['num_steps'])}, rho={point['rho']:g})"
            record(name, kind, s, evaluate_sampler(changed, n=args.n, seed=s))
        for run, (policy, ptask, cfg) in policies.items():
            for tau in (None, 1.0):
                sampler = PolicySampler(policy, ptask, greedy=tau is None,
                                        temperature=tau or 1.0)
                noise = PerSampleNoise([ACTION_SEED_OFFSET + s + b for b in range(args.n)])
                ev = evaluate_sampler(
                    ptask, sampler.actions(None if tau is None else noise), n=args.n, seed=s,
                    guided="guidance" in sampler.knob_names,
                    renoise_budget=sampler.renoise_budget, base_grid=True,
                )
                mode = "greedy" if tau is None else f"tau={tau:g}"
                record(f"{run} ({mode}, nfe_penalty={cfg.nfe_penalty:g})", "learned", s, ev)

    base = rows["default"]
    for row in rows.values():
        values = [r["metrics"][metric] for r in row["per_seed"]]
        row["mean"] = statistics.fmean(values)
        row["nfe_per_sample"] = statistics.fmean(r["nfe_per_sample"] for r in row["per_seed"])
        row["nfe_ratio_vs_default"] = row["nfe_per_sample"] / base["nfe_per_sample"]
        deltas = [v - b["metrics"][metric] for v, b in zip(values, base["per_seed"])]
        row["paired_delta_vs_default"] = deltas
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "step_knob.json", {
        "task": plain.name, "metric": metric, "direction": direction, "n": args.n,
        "seeds": args.seeds, "runs": [str(r) for r in args.runs], "rows": rows,
        "command": "python benchmarks/scripts/step_knob_eval.py " + " ".join(sys.argv[1:]),
    })
    points = [
        FrontierPoint(name, row["kind"], row["nfe_per_sample"], row["mean"],
                      statistics.stdev([r["metrics"][metric] for r in row["per_seed"]])
                      if len(row["per_seed"]) > 1 else float("nan"),
                      tuple(args.seeds), "eval")
        for name, row in rows.items()
    ]
    write_frontier(points, args.out / "nfe_frontier.png", args.out / "nfe_frontier.json",
                   metric=metric, direction=direction,
                   title=f"{plain.name}: quality against NFE per sample (n={args.n}, "
                         f"seeds {args.seeds})")
    for name, row in rows.items():
        if row["kind"] in ("default", "learned") or row["kind"] == "default_n":
            print(f"{name:55s} {metric}={row['mean']:.4f} NFE/sample={row['nfe_per_sample']:.2f}"
                  f" ratio={row['nfe_ratio_vs_default']:.3f} "
                  f"paired={[round(d, 4) for d in row['paired_delta_vs_default']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
