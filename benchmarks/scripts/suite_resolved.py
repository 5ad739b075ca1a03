"""Which rows of a finished suite are *resolved* against the default sampler?

The suite's rules (``reached``: within one pairing std of the best grid point) are lenient when the
pairing is noisy. This script reads every ``<suite>/<task>-<seed>/results.json`` and, for every
row, takes the paired differences row - default of the headline metric (or ``--metric``, e.g.
``mode_tv``) on the evaluation seeds
(common random numbers; one per run, the mean over its seeds, when several runs were each
evaluated on several seeds), their mean, sample std and Student-t 95 % interval (``mean ± t_{0.975,
n-1} std / sqrt(n)``) and ``z`` = improvement over the default / std. A row is ``better`` /
``worse`` than the default when the interval excludes 0 on that side, ``tie`` otherwise. The grid's
own pick (``best_grid_row``, chosen on the search seed) is marked. Counts per row kind are summed
over the tasks.

Run (from the repository root; reads files only, no sampling)::

    python benchmarks/scripts/suite_resolved.py --suite runs/suite/heldout-main \
        --out benchmarks/results/suite/heldout-main/resolved.json
    python benchmarks/scripts/suite_resolved.py --suite runs/suite/heldout-r3 --metric mode_tv \
        --out benchmarks/results/suite/heldout-r3/resolved_mode_tv.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS
from diffgym.benchmarks.report import paired_deltas, paired_interval
from diffgym.envs.io import atomic_write_json

VERDICTS = ("better", "tie", "worse")


def paired_vs_default(rows: list[dict], metric: str, direction: str) -> dict[str, dict]:
    """Per non-default row: the paired differences row - default on ``metric``, their mean, std,
    95 % half-width and verdict (``better`` means better in ``direction``); ``tie`` with fewer
    than two shared seeds."""
    by_method = {r["method"]: r for r in rows}
    if "default" not in by_method:
        raise ValueError(f"no 'default' row among {sorted(by_method)}")
    base = by_method["default"]["per_seed"]
    sign = 1.0 if direction == "min" else -1.0  # sign * delta < 0 is better
    out = {}
    for method, row in by_method.items():
        if method == "default":
            continue
        deltas = paired_deltas(row["per_seed"], base, metric)  # ComparisonResult's pairing
        mean, std, half = paired_interval(deltas)
        verdict = "tie"
        if len(deltas) >= 2 and abs(mean) > half:
            verdict = "better" if sign * mean < 0 else "worse"
        z = -sign * mean / std if std > 0 else math.nan  # improvement over the default / std
        out[method] = {"kind": row["kind"], "deltas": deltas, "mean": mean, "std": std,
                       "half_width_95": half, "z": z, "verdict": verdict}
    return out


def analyse(suite: Path, metric: str | None = None) -> dict[str, Any]:
    """Every task folder of ``suite`` (the ones holding ``results.json``), and the counts, on
    ``metric`` (default: each comparison's headline metric)."""
    if metric is not None and metric not in METRIC_DIRECTIONS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRIC_DIRECTIONS)}")
    files = sorted(suite.glob("*/results.json"))
    if not files:
        raise ValueError(f"no */results.json under {suite}: not a suite folder")
    tasks, counts = {}, {}
    for f in files:
        res = json.loads(f.read_text())
        m = res["metric"] if metric is None else metric
        direction = res["direction"] if metric is None else METRIC_DIRECTIONS[metric]
        rows = paired_vs_default(res["rows"], m, direction)
        pick = res.get("best_grid_row")
        pick = pick.get("method") if isinstance(pick, dict) else pick
        for method, r in rows.items():
            r["grid_pick"] = method == pick
            key = "grid pick" if r["grid_pick"] else method
            for k in ([key, method] if r["grid_pick"] else [key]):
                c = counts.setdefault(k, dict.fromkeys(VERDICTS, 0))
                c[r["verdict"]] += 1
        tasks[f.parent.name] = {"metric": m, "grid_pick": pick, "rows": rows}
    return {"suite": str(suite), "definition": __doc__.split("\n\n")[1].replace("\n", " "),
            "tasks": tasks, "counts_vs_default": counts}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", type=Path, required=True, help="a diffgym suite --out folder")
    p.add_argument("--metric", default=None,
                   help="metric to pair on (default: each comparison's headline metric)")
    p.add_argument("--out", type=Path, default=None, help="JSON report (default: print only)")
    args = p.parse_args(argv)
    report = analyse(args.suite, args.metric)
    for name, t in report["tasks"].items():
        cells = [f"{m}{' (pick)' if r['grid_pick'] else ''} {r['mean']:+.3g} ± "
                 f"{r['half_width_95']:.2g} {r['verdict']}" for m, r in t["rows"].items()]
        print(f"{name}: " + "; ".join(cells))
    for method, c in report["counts_vs_default"].items():
        print(f"{method}: better {c['better']}, tie {c['tie']}, worse {c['worse']}")
    if args.out is not None:
        atomic_write_json(args.out, report)
    return report


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:
        sys.exit(f"error: {err}")
