"""Do the two per-sample noise generators give the same results in distribution?

Version 2 of :class:`~diffgym.envs.noise.PerSampleNoise` draws other numbers from the same seeds
than version 1 (RESULTS §35), so every common-random-numbers result changes sample by sample. It
must not change in distribution: a sampler's metrics over several evaluation seeds should agree
between the versions to within their seed-to-seed scatter.

For each task this evaluates the default sampler and a churn schedule (a noise draw at every step,
so the generator is used throughout the trajectory, not only for the starting noise) on the
comparison's evaluation seeds ``eval_seed(k)``, once per version, and reports per metric the mean
and standard deviation over the seeds of each version and the difference of the means in units of
its standard error (``z``; unpaired: the versions share no numbers). ``|z|`` above about 3 on a
metric that is not a count would say the versions differ.

Usage::

    python benchmarks/scripts/noise_version_check.py --tasks gmm2d gmm2d-bias digits --n 2048 \\
        --seeds 0 1 2 3 4 5 --out benchmarks/results/noise_version_check.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from diffgym.benchmarks.evaluate import check_seeds, eval_seed, evaluate_sampler
from diffgym.envs import list_tasks, make_task, schedule_actions
from diffgym.envs.io import atomic_write_json
from diffgym.envs.noise import NOISE_VERSION_ENV, NOISE_VERSIONS, set_default_noise_version

CHURN = 0.1  # the churn schedule: gamma at every step (no churn at the last step, by the sampler)


def check_task(task_name: str, n: int, seeds: list[int]) -> dict[str, Any]:
    """The default sampler and the churn schedule of ``task_name`` under both versions.

    Raises:
        ValueError: an unknown task or fewer than two distinct seeds >= 0.
    """
    seeds = check_seeds(seeds)
    task = make_task(task_name)
    samplers = {"default": None, "churn": schedule_actions(churn=[CHURN] * task.num_steps)}
    out: dict[str, Any] = {}
    previous = os.environ.get(NOISE_VERSION_ENV)
    try:
        for name, actions in samplers.items():
            per_version: dict[int, list[dict[str, float]]] = {}
            for version in NOISE_VERSIONS:
                set_default_noise_version(version)
                per_version[version] = [
                    evaluate_sampler(task, actions, n=n, seed=eval_seed(k)).metrics
                    for k in seeds
                ]
            out[name] = {"per_seed": {str(v): m for v, m in per_version.items()},
                         "summary": _summary(per_version)}
    finally:  # the process default as it was
        if previous is None:
            os.environ.pop(NOISE_VERSION_ENV, None)
        else:
            os.environ[NOISE_VERSION_ENV] = previous
    return out


def _summary(per_version: dict[int, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per metric: mean and std over the seeds of each version, and the difference of the means
    (version 2 - version 1) over its standard error."""
    first, second = (per_version[v] for v in NOISE_VERSIONS)
    out = {}
    for metric in first[0]:
        a = [m[metric] for m in first if math.isfinite(m[metric])]
        b = [m[metric] for m in second if math.isfinite(m[metric])]
        if len(a) < 2 or len(b) < 2:
            continue
        se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
        diff = statistics.fmean(b) - statistics.fmean(a)
        out[metric] = {
            "v1_mean": statistics.fmean(a), "v1_std": statistics.stdev(a),
            "v2_mean": statistics.fmean(b), "v2_std": statistics.stdev(b),
            "diff": diff, "z": diff / se if se > 0 else (0.0 if diff == 0 else math.inf),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["gmm2d", "gmm2d-bias"],
                   help=f"any of {', '.join(list_tasks())}")
    p.add_argument("--n", type=int, default=2048, help="samples per evaluation")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="JSON output (atomic)")
    args = p.parse_args(argv)
    if args.n < 2:
        p.error(f"--n must be >= 2, got {args.n}")
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/scripts/noise_version_check.py", *sys.argv[1:]])
        if argv is None else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "n": args.n, "seeds": args.seeds, "churn": CHURN, "tasks": {},
    }
    for task_name in args.tasks:
        report["tasks"][task_name] = check_task(task_name, args.n, args.seeds)
        if args.out is not None:  # after every task: a stopped run keeps what it finished
            atomic_write_json(args.out, report)
    for task_name, res in report["tasks"].items():
        for sampler, r in res.items():
            for metric, s in r["summary"].items():
                print(f"{task_name:12s} {sampler:8s} {metric:24s} v1 {s['v1_mean']:.4g} ± "
                      f"{s['v1_std']:.2g}  v2 {s['v2_mean']:.4g} ± {s['v2_std']:.2g}  "
                      f"z {s['z']:+.2f}")
    return report


if __name__ == "__main__":
    main()
