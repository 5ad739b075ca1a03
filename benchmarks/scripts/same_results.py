"""Are two runs' results the same number for number? (The check that a restructure changed no
result.)

Compares two ``grid.json`` files (point by point: metrics and NFE) or two comparison
``results.json`` files (row by row: metrics, their std, per-seed metrics, NFE per sample and the
NFE cost) and prints what differs.

Usage::

    python benchmarks/scripts/same_results.py BEFORE/grid.json AFTER/grid.json
    python benchmarks/scripts/same_results.py BEFORE/results.json AFTER/results.json \\
        --out benchmarks/results/restructure_check/quick.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diffgym.envs.io import atomic_write_json


def compare_grids(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per point key: equal metrics and NFE?"""
    pa = {p["key"]: p for p in a["points"]}
    pb = {p["key"]: p for p in b["points"]}
    common = [k for k in pa if k in pb]
    different = [
        k for k in common
        if pa[k]["metrics"] != pb[k]["metrics"] or pa[k]["cost"]["nfe"] != pb[k]["cost"]["nfe"]
    ]
    return {"kind": "grid", "points": [len(pa), len(pb)], "common": len(common),
            "identical": len(common) - len(different), "different": different}


def compare_comparisons(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per row: equal metrics, std, per-seed metrics, NFE per sample and NFE cost?"""
    rows, different = [], []
    for ra, rb in zip(a["rows"], b["rows"]):
        same = (
            ra["method"] == rb["method"]
            and ra["metrics"] == rb["metrics"]
            and ra["metrics_std"] == rb["metrics_std"]
            and [s["metrics"] for s in ra["per_seed"]] == [s["metrics"] for s in rb["per_seed"]]
            and ra["nfe_per_sample"] == rb["nfe_per_sample"]
            and ra["cost"]["nfe"] == rb["cost"]["nfe"]
        )
        rows.append(ra["method"])
        if not same:
            different.append(ra["method"])
    if len(a["rows"]) != len(b["rows"]):
        different.append(f"row count {len(a['rows'])} vs {len(b['rows'])}")
    return {"kind": "comparison", "rows": rows, "identical": len(rows) - len(different),
            "different": different}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--out", type=Path, default=None, help="JSON report (atomic)")
    args = p.parse_args(argv)
    a, b = (json.loads(path.read_text()) for path in (args.before, args.after))
    report = compare_grids(a, b) if "points" in a else compare_comparisons(a, b)
    report.update(before=str(args.before), after=str(args.after))
    print(json.dumps({k: v for k, v in report.items() if k not in ("before", "after")}))
    if args.out is not None:
        atomic_write_json(args.out, report)
    return 0 if not report["different"] else 1


if __name__ == "__main__":
    sys.exit(main())
