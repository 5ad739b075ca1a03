"""Paired-by-task differences between two inference rules on the same training runs, from the
files of ``suite_large_n.py`` and ``checkpoint_oracle.py`` (no sampling).

Two modes:

* ``--a A.json [...] --b B.json [...]``: ``suite_large_n.py`` outputs of two rules on the same
  tasks and evaluation seeds (the i-th A file beside the i-th B file; several pairs pool their
  tasks). Per task, the mean over its seeds of (A - B) for the ``--row`` sampler
  (default ``learned``; ``--b-row`` names B's when it differs, e.g. ``--row mean --b-row
  learned`` with the same file as A and B: mean-action against the rule the comparison chose,
  on the same runs); then the mean over tasks with a 95 % t-interval
  (:func:`~diffgym.benchmarks.report.paired_interval`) and how many tasks A is lower, higher or
  the same.
* ``--oracle F.json [...]``: ``checkpoint_oracle.py`` outputs; per task, tau = 1 minus greedy
  at the final checkpoint (each candidate's mean over the evaluation seeds), pooled the same way.

    python benchmarks/scripts/suite_pairs.py \\
        --a benchmarks/results/suite_large_n/dev-rf-ck4-n16384.json \\
            benchmarks/results/suite_large_n/dev-rf-ck4-8-15-n16384.json \\
        --b benchmarks/results/suite_large_n/dev-rf-base-n16384.json \\
            benchmarks/results/suite_large_n/dev-rf-base-8-15-n16384.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from diffgym.benchmarks.report import paired_interval
from diffgym.envs.io import atomic_write_json

METRICS = ("sw2", "mode_tv")


def summary(tasks: list[str], deltas: list[float]) -> dict[str, Any]:
    """Mean, 95 % t-interval and the signs of per-task differences (``per_task``: task ->
    difference)."""
    mean, std, half = paired_interval(deltas)
    return {"tasks": len(deltas), "mean": mean, "lo": mean - half, "hi": mean + half,
            "std": std, "lower": sum(d < 0 for d in deltas),
            "higher": sum(d > 0 for d in deltas), "same": sum(d == 0 for d in deltas),
            "per_task": dict(zip(tasks, deltas, strict=True))}


def rule_deltas(a_files: list[Path], b_files: list[Path], row: str,
                b_row: str | None = None) -> dict[str, Any]:
    """Per metric, the per-task (A's ``row`` - B's ``b_row``, default ``row``) over the pooled
    file pairs.

    Raises:
        SystemExit: unequal file lists, a pair whose tasks or seeds differ, or a file without
            the row.
    """
    b_row = row if b_row is None else b_row
    if len(a_files) != len(b_files):
        raise SystemExit(f"--a has {len(a_files)} files, --b {len(b_files)}: pair them")
    deltas: dict[str, list[float]] = {m: [] for m in METRICS}
    tasks: list[str] = []
    for fa, fb in zip(a_files, b_files):
        ta, tb = (json.loads(f.read_text())["tasks"] for f in (fa, fb))
        for x, y in zip(ta, tb, strict=True):
            if (x["task"], x["seeds"]) != (y["task"], y["seeds"]):
                raise SystemExit(f"{fa} and {fb} differ: {x['task']} {x['seeds']} against "
                                 f"{y['task']} {y['seeds']}")
            tasks.append(x["task"])
            for f, t, r in ((fa, x, row), (fb, y, b_row)):
                if r not in t["per_seed"]:
                    raise SystemExit(f"{f}: task {t['task']} has no {r!r} row (it has "
                                     f"{', '.join(t['per_seed'])})")
            for m in METRICS:
                deltas[m].append(statistics.fmean(
                    p[m] - q[m] for p, q in zip(x["per_seed"][row], y["per_seed"][b_row])))
    return {m: summary(tasks, d) for m, d in deltas.items()}


def tau1_minus_greedy(files: list[Path]) -> dict[str, Any]:
    """Per metric, tau = 1 minus greedy at each task's final checkpoint, pooled over files."""
    deltas: dict[str, list[float]] = {m: [] for m in METRICS}
    tasks: list[str] = []
    for f in files:
        for t in json.loads(f.read_text())["tasks"]:
            tasks.append(t["task"])
            final = max(c["round"] for c in t["candidates"])
            at = {c["inference"]: c["mean"] for c in t["candidates"] if c["round"] == final}
            for m in METRICS:
                deltas[m].append(at["τ=1"][m] - at["greedy"][m])
    return {m: summary(tasks, d) for m, d in deltas.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", type=Path, nargs="+", help="suite_large_n files of rule A")
    p.add_argument("--b", type=Path, nargs="+", help="suite_large_n files of rule B, paired")
    p.add_argument("--row", default="learned", help="the sampler compared (default learned)")
    p.add_argument("--b-row", default=None, help="B's sampler, when not --row's")
    p.add_argument("--oracle", type=Path, nargs="+",
                   help="checkpoint_oracle files: tau = 1 - greedy at the final checkpoint")
    p.add_argument("--out", type=Path, default=None, help="JSON output (atomic; optional)")
    args = p.parse_args(argv)
    if (args.a is None) != (args.b is None) or (args.a is None) == (args.oracle is None):
        p.error("give either --a and --b, or --oracle")
    out = (tau1_minus_greedy(args.oracle) if args.oracle
           else rule_deltas(args.a, args.b, args.row, args.b_row))
    for m, s in out.items():
        print(f"{m}: {s['mean']:+.4f} [{s['lo']:+.4f}, {s['hi']:+.4f}] over {s['tasks']} tasks "
              f"(lower {s['lower']}, higher {s['higher']}, same {s['same']})")
    if args.out is not None:
        atomic_write_json(args.out, {"argv": argv if argv is not None else sys.argv[1:],
                                     **out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
