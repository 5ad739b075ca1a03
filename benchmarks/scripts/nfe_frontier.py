"""Quality against NFE per sample from a comparison folder and/or a grid folder.

    python benchmarks/scripts/nfe_frontier.py --comparison runs/compare/gmm2d \\
        --grid runs/grid/gmm2d-schedule --out runs/frontier/gmm2d

Reads ``results.json`` (``diffgym compare``) and/or ``grid.json`` (``diffgym grid --families
schedule``) and writes ``nfe_frontier.png`` and ``nfe_frontier.json`` (every point, the Pareto
front, and for each learned policy its NFE and quality against the default sampler's) to
``--out`` (default: the comparison folder, else the grid folder). Not part of the package: a
thin script over :mod:`diffgym.benchmarks.frontier`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS
from diffgym.benchmarks.frontier import frontier_points, write_frontier
from diffgym.envs.tasks import list_tasks, make_task


def _read(folder: Path | None, name: str) -> dict | None:
    if folder is None:
        return None
    path = folder / name if folder.is_dir() else folder
    if not path.is_file():
        raise SystemExit(f"nfe_frontier: no {name} in {folder}")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comparison", type=Path, default=None, help="a diffgym compare folder")
    p.add_argument("--grid", type=Path, default=None, help="a diffgym grid folder")
    p.add_argument("--metric", default=None, help="default: the comparison's or the task's")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    args = p.parse_args(argv)
    if args.comparison is None and args.grid is None:
        p.error("give --comparison and/or --grid")
    comparison = _read(args.comparison, "results.json")
    grid = _read(args.grid, "grid.json")
    task = (comparison or {}).get("task") or (grid or {}).get("task", {}).get("name")
    headline = make_task(task).headline_metric if task in list_tasks() and task != "user" else None
    metric = args.metric or (comparison or {}).get("metric") or headline or "sw2"
    if metric not in METRIC_DIRECTIONS:
        p.error(f"unknown metric {metric!r}; allowed: {', '.join(sorted(METRIC_DIRECTIONS))}")
    direction = METRIC_DIRECTIONS[metric]
    points = frontier_points(metric=metric, comparison=comparison, grid=grid)
    out = args.out or args.comparison or args.grid
    out.mkdir(parents=True, exist_ok=True)
    data = write_frontier(
        points, out / "nfe_frontier.png", out / "nfe_frontier.json", metric=metric,
        direction=direction, title=f"{task}: quality against NFE per sample",
        context={"task": task, "comparison": str(args.comparison) if args.comparison else None,
                 "grid": str(args.grid) if args.grid else None},
    )
    for label, entry in data["learned_vs_default"].items():
        print(f"{label}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in entry.items()))
    print(f"wrote {out / 'nfe_frontier.png'} and {out / 'nfe_frontier.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
