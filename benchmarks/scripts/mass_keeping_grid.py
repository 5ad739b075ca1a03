"""Does a task's grid hold a time-only sampler that is both as sharp as the grid's best and no
worse than the default sampler on mode masses? (#13's two suite targets, asked of the grid.)

For each ``grid.json`` (``diffgym grid`` output: every point's metrics on the search seed), it
reports the default point, the best point by the quality metric (SW2 by default), and the best
point among those whose mode-mass TV is at or below the default's ("mass-keeping best"). The gap
between the last two says what keeping the masses costs a time-only schedule on that task. All
numbers come from the grid's one seed (``n`` samples): the best point's own value is optimistic
(it was picked on that seed), so a small gap reads as "within noise", not "equal".

Usage::

    python benchmarks/scripts/mass_keeping_grid.py runs/oracle/g*/grid.json \\
        --tolerance 0.02 --out benchmarks/results/mass_keeping_grid/dev-0-7.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from diffgym.envs.io import atomic_write_json


def task_label(grid: dict[str, Any]) -> str:
    """``name`` or ``name:seed`` (a procedural task) of a grid's task description."""
    task = grid["task"]
    if not isinstance(task, dict):
        return str(task)
    seed = (task.get("extra") or {}).get("seed")
    return task["name"] if seed is None else f"{task['name']}:{seed}"


def analyse(grid: dict[str, Any], metric: str, mass: str, tolerance: float) -> dict[str, Any]:
    """The default, best and mass-keeping best points of one grid (lower is better for both
    metrics)."""
    points = [p for p in grid["points"] if metric in p["metrics"] and mass in p["metrics"]]
    defaults = [p for p in points if p["family"] == "default"]
    if not defaults:
        raise ValueError(f"grid of {task_label(grid)} has no default point with {metric}, {mass}")
    default = defaults[0]

    def row(p: dict[str, Any]) -> dict[str, Any]:
        return {"key": p["key"], "family": p["family"], "params": p["params"],
                metric: p["metrics"][metric], mass: p["metrics"][mass]}

    best = min(points, key=lambda p: p["metrics"][metric])
    keeping = [p for p in points if p["metrics"][mass] <= default["metrics"][mass]]
    keep_best = min(keeping, key=lambda p: p["metrics"][metric])  # the default keeps them
    gap = keep_best["metrics"][metric] - best["metrics"][metric]
    near = [p for p in points if p["metrics"][metric] <= best["metrics"][metric] + tolerance]
    return {
        "task": task_label(grid), "n": grid["n"], "seed": grid["seed"], "points": len(points),
        "default": row(default), "best": row(best), "mass_keeping_best": row(keep_best),
        "gap": gap, "within_tolerance": gap <= tolerance,
        "near_best": len(near),
        "near_best_keeping": sum(p["metrics"][mass] <= default["metrics"][mass] for p in near),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grids", nargs="+", type=Path, help="grid.json files of `diffgym grid`")
    p.add_argument("--metric", default="sw2", help="quality metric, lower is better")
    p.add_argument("--mass", default="mode_tv", help="mode-mass metric, lower is better")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="gap in --metric still counted as reaching the best point")
    p.add_argument("--out", type=Path, default=None, help="JSON output (optional)")
    args = p.parse_args(argv)
    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        p.error(f"--tolerance must be a finite number >= 0, got {args.tolerance}")
    missing = [str(g) for g in args.grids if not g.is_file()]
    if missing:
        p.error(f"no such grid.json: {', '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    rows = []
    for path in args.grids:
        grid = json.loads(path.read_text())
        if not grid.get("complete", False):
            print(f"warning: {path} is an incomplete grid", file=sys.stderr)
        rows.append(analyse(grid, args.metric, args.mass, args.tolerance) | {"file": str(path)})
    m, t = args.metric, args.mass
    print(f"| task | default {m} / {t} | best {m} / {t} | mass-keeping best {m} / {t} | gap | "
          f"points within {args.tolerance:g} of the best: all, keeping |")
    print("|---|---|---|---|---:|---|")
    for r in rows:
        d, b, k = r["default"], r["best"], r["mass_keeping_best"]
        print(f"| {r['task']} | {d[m]:.3f} / {d[t]:.4f} | {b[m]:.3f} / {b[t]:.4f} "
              f"({b['family']}) | {k[m]:.3f} / {k[t]:.4f} ({k['family']}) | {r['gap']:+.3f} | "
              f"{r['near_best']}, {r['near_best_keeping']} |")
    within = sum(r["within_tolerance"] for r in rows)
    print(f"\nmass-keeping best within {args.tolerance:g} of the best {m}: {within} of {len(rows)}")
    payload = {"metric": m, "mass": t, "tolerance": args.tolerance, "tasks": rows,
               "within_tolerance": within,
               "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]])}
    if args.out is not None:
        atomic_write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
