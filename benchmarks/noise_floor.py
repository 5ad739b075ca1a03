"""The metrics' noise floor: a task's metrics of *real* data against real data.

A sampler whose samples were the real data would still score these values, because the
evaluation draws a fresh reference set for each seed. Differences between samplers smaller than
this spread cannot be read from unpaired means (RESULTS §1 uses it for SW2 on ``gmm2d`` and for
FD-digits on ``digits``).

For each seed ``s`` the "samples" are ``n`` real points drawn with seed ``s + 7`` and the
reference set is the one the comparison scores its evaluation seed ``eval_seed(s)`` against
(``reference_seed(eval_seed(s))`` = ``10⁶ · (s + 1) + 1``).

Usage::

    python benchmarks/noise_floor.py --task digits --n 2048 --seeds 0 1 2 3 4 \\
        --out benchmarks/results/noise_floor_digits_n2048.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from diffgym.benchmarks.compare import eval_seed
from diffgym.benchmarks.evaluate import task_metrics
from diffgym.benchmarks.grid import reference_seed
from diffgym.envs import list_tasks, make_task
from diffgym.envs.io import atomic_write_json

SAMPLE_SEED_OFFSET = 7
"""Real "samples" of seed ``s`` are drawn with ``s + SAMPLE_SEED_OFFSET``."""


def real_vs_real(task_name: str, n: int, seeds: list[int]) -> dict[str, Any]:
    """Per-seed metrics of ``n`` real samples against the reference set, and their mean ± std.

    Raises:
        ValueError: an unknown task, ``n < 2`` or fewer than two distinct seeds >= 0.
    """
    if task_name not in list_tasks():
        raise ValueError(f"unknown task {task_name!r}; allowed: {', '.join(list_tasks())}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"give at least two distinct seeds >= 0 (no repeats), got {seeds}")
    task = make_task(task_name)
    per_seed = []
    for s in seeds:
        x, labels = task.sample_data(n, torch.Generator().manual_seed(s + SAMPLE_SEED_OFFSET))
        if task.num_classes == 0:
            labels = None
        per_seed.append(task_metrics(task, x, labels, seed=reference_seed(eval_seed(s))))
    summary = {
        k: {"mean": statistics.fmean(r[k] for r in per_seed),
            "std": statistics.stdev(r[k] for r in per_seed)}
        for k in per_seed[0]
    }
    return {"per_seed": per_seed, "summary": summary}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="digits", help=f"one of {', '.join(list_tasks())}")
    p.add_argument("--n", type=int, default=2048, help="samples per set")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="JSON output (atomic)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        result = real_vs_real(args.task, args.n, args.seeds)
    except ValueError as err:
        p.error(str(err))
    report = {
        "benchmark": "noise_floor",
        "command": " ".join(["noise_floor.py", *(argv if argv is not None else sys.argv[1:])]),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": args.task, "n": args.n, "seeds": args.seeds, **result,
    }
    for k, v in result["summary"].items():
        print(f"{k:>16}: {v['mean']:.4f} ± {v['std']:.4f}")
    if args.out is not None:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
