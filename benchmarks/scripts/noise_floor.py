"""The metrics' noise floor: a task's metrics of *real* data against real data.

A sampler whose samples were the real data would still score these values: the samples are a
finite draw, and on most tasks the evaluation also draws a fresh reference set for each seed.
``digits`` is scored against a fixed reference (its whole data set, ``Task.reference``), so its
floor is the sample draw's alone. Differences between samplers smaller than this spread cannot be
read from unpaired means (RESULTS §1 uses it for SW2 on ``gmm2d``; §19 for FD-digits under the
fixed reference).

For each seed ``s`` the "samples" are ``n`` real points drawn with seed ``s + 7`` and the
reference set is the one the comparison scores its evaluation seed ``eval_seed(s)`` against
(``reference_seed(eval_seed(s))`` = ``10⁶ · (s + 1) + 1``).

Usage::

    python benchmarks/scripts/noise_floor.py --task digits --n 2048 --seeds 0 1 2 3 4 \\
        --out benchmarks/results/noise_floor_digits_n2048.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import torch

from diffgym.benchmarks.evaluate import NOISE_FLOOR_SAMPLE_OFFSET, eval_seed, noise_floor
from diffgym.envs import list_tasks, make_task
from diffgym.envs.io import atomic_write_json


def real_vs_real(task_name: str, n: int, seeds: list[int]) -> dict[str, Any]:
    """The library's :func:`~diffgym.benchmarks.evaluate.noise_floor` on the comparison's
    evaluation seeds: real data of seed ``k`` drawn with ``k + 7``, scored against the reference
    set of ``eval_seed(k)``.

    Raises:
        ValueError: an unknown task, ``n < 2`` or fewer than two distinct seeds >= 0.
    """
    if task_name not in list_tasks():
        raise ValueError(f"unknown task {task_name!r}; allowed: {', '.join(list_tasks())}")
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"give at least two distinct seeds >= 0 (no repeats), got {seeds}")
    return noise_floor(
        make_task(task_name), n, [eval_seed(k) for k in seeds],
        sample_seeds=[k + NOISE_FLOOR_SAMPLE_OFFSET for k in seeds],
    )


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
