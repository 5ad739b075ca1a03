"""Headroom of a task: does the best grid point beat the default sampler by >= 3 paired standard
deviations on the headline metric?

The protocol of :mod:`diffgym.benchmarks.compare`: the grid is searched on seed 0 (the default
preset of every family the task supports), the best point of each family picked there by the
headline metric (:func:`~diffgym.benchmarks.grid.default_metric` unless ``--metric``), and then
the default sampler and those best points are evaluated on held-out evaluation seeds (common
random numbers: on each seed both see the same noise, labels and reference draw). Per family the
paired differences ``d_s = improvement of the best point over the default on seed s`` give
``mean``, sample ``std`` and ``z = mean / std``; the task has headroom when some family has
``z >= 3``.

Run (single-threaded, from the repository root)::

    python benchmarks/scripts/headroom.py --task gmm2d-net --n 2048
    python benchmarks/scripts/headroom.py --task cmix --n 2048

Writes ``benchmarks/results/headroom_<task>.json``; the search grid is kept (resumable) under
``runs/headroom/<task>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS
from diffgym.benchmarks.grid import default_metric, evaluate_point, make_families, run_grid
from diffgym.benchmarks.report import paired_interval
from diffgym.envs.io import atomic_write_json
from diffgym.envs.tasks import make_task

SEARCH_SEED = 0
EVAL_SEEDS = (1_000_000, 2_000_000, 3_000_000)
Z_THRESHOLD = 3.0


def family_rows(
    metric: str,
    default_per_seed: dict[int, dict[str, float]],
    best_per_seed: dict[str, tuple[dict, float | None, dict[int, dict[str, float]]]],
) -> dict[str, dict]:
    """Per family: the paired improvements of its best point over the default on each
    evaluation seed, their mean, sample std, ``z = mean / std`` and 95 % t-interval.

    ``best_per_seed[family] = (params, metric on the search seed or None, {seed: metrics})``.
    """
    sign = 1.0 if METRIC_DIRECTIONS[metric] == "min" else -1.0  # improvement = sign (def - pt)
    rows = {}
    for name, (params, search_value, per_seed) in best_per_seed.items():
        missing = sorted(set(per_seed) - set(default_per_seed))
        if missing:
            raise ValueError(f"the default sampler has no evaluation on seeds {missing}")
        values = [(default_per_seed[s][metric], per_seed[s][metric]) for s in per_seed]
        bad = [s for s, (d, v) in zip(per_seed, values) if d is None or v is None
               or not math.isfinite(d) or not math.isfinite(v)]
        if bad:
            raise ValueError(f"{metric} of {name} or the default is not finite on seeds {bad}")
        diffs = [sign * (d - v) for d, v in values]
        mean, std, half = paired_interval(diffs)
        rows[name] = {
            "params": params,
            "search_seed_metric": search_value,
            "per_seed": {str(s): m for s, m in per_seed.items()},
            "improvement_per_seed": diffs,
            "improvement_mean": mean,
            "improvement_std": std,
            "z": _z(mean, std, len(diffs)),
            "improvement_ci95": [mean - half, mean + half],
        }
    return rows


def _z(mean: float, std: float, n: int) -> float:
    """Paired z of an improvement: NaN for one seed (no spread to compare with, so no headroom
    is claimed), +-inf for a constant nonzero improvement, 0 for none."""
    if n < 2:
        return math.nan
    if std > 0:
        return mean / std
    return math.copysign(math.inf, mean) if mean else 0.0


def _winner(rows: dict[str, dict]) -> str | None:
    """The family with the largest finite-or-infinite z (NaN z never wins)."""
    ranked = [k for k in rows if not math.isnan(rows[k]["z"])]
    return max(ranked, key=lambda k: rows[k]["z"]) if ranked else None


def from_compare(path: Path) -> dict:
    """The headroom of a finished ``diffgym compare`` (its ``results.json``): the default row and
    each family's best point on the comparison's evaluation seeds; nothing is re-evaluated."""
    data = json.loads(path.read_text())
    metric = data["metric"]

    def by_seed(row: dict) -> dict[int, dict[str, float]]:
        return {int(r["eval_seed"]): r["metrics"] for r in row["per_seed"]}

    default = next((r for r in data["rows"] if r["kind"] == "default"), None)
    if default is None:
        raise ValueError(f"{path} has no default row")
    best = {
        r["info"]["family"]: (r["info"]["params"], None, by_seed(r))
        for r in data["rows"] if r["kind"] == "grid"
    }
    rows = family_rows(metric, by_seed(default), best)
    winner = _winner(rows)
    return {
        "task": data["task"],
        "metric": metric,
        "direction": METRIC_DIRECTIONS[metric],
        "n": data["settings"]["n_eval"],
        "search_seed": data["search_seed"],
        "eval_seeds": data["settings"]["eval_seeds"],
        "grid_points": data["grid_points"],
        "families": sorted(best),
        "default": {"per_seed": {str(s): m for s, m in by_seed(default).items()}},
        "best_per_family": rows,
        "best_family": winner,
        "headroom": bool(winner is not None and rows[winner]["z"] >= Z_THRESHOLD),
        "z_threshold": Z_THRESHOLD,
        "source": str(path),
        "fingerprint": data.get("fingerprint"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default=None, help="task to search and evaluate")
    p.add_argument(
        "--from-compare", type=Path, default=None, metavar="RESULTS_JSON",
        help="instead: the headroom of a finished comparison (its results.json; no sampling)",
    )
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--metric", default=None, help="headline metric (default: the task's)")
    p.add_argument("--eval-seeds", type=int, nargs="+", default=list(EVAL_SEEDS))
    p.add_argument("--points", default="default", help="grid preset: small or default")
    p.add_argument("--families", nargs="+", default=None, help="grid families (default: all)")
    for axis in ("s_churn", "s_min", "s_max", "s_noise", "w", "sigma_lo", "sigma_hi"):
        p.add_argument(
            f"--{axis.replace('_', '-')}", dest=axis, nargs="+", type=float, default=None,
            help=f"explicit {axis} values replacing the preset (as in `diffgym grid`)",
        )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--runs", type=Path, default=Path("runs/headroom"))
    args = p.parse_args(argv)
    if (args.task is None) == (args.from_compare is None):
        p.error("give exactly one of --task and --from-compare")
    if args.from_compare is not None:
        out = from_compare(args.from_compare)
        out["command"] = "python " + " ".join(sys.argv)
        path = args.out or (
            Path("benchmarks/results") / f"headroom_{out['task']}_from_compare.json"
        )
        atomic_write_json(path, out)
        _print(out, path)
        return 0
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    task = make_task(args.task)
    metric = args.metric or default_metric(task)
    axes = {
        a: getattr(args, a)
        for a in ("s_churn", "s_min", "s_max", "s_noise", "w", "sigma_lo", "sigma_hi")
    }
    families = {f.name: f for f in make_families(task, args.families, points=args.points, **axes)}
    grid = run_grid(
        task,
        list(families.values()),
        n=args.n,
        seed=SEARCH_SEED,
        out_dir=args.runs / args.task,
        progress=False,
    )
    best = grid.best(metric)
    assert grid.default is not None
    default_per_seed = {
        seed: evaluate_point(task, None, n=args.n, seed=seed).metrics for seed in args.eval_seeds
    }
    best_per_seed = {
        name: (point.params, point.metrics[metric], {
            seed: evaluate_point(task, families[name], point.params, n=args.n, seed=seed).metrics
            for seed in args.eval_seeds
        })
        for name, point in best.items()
    }
    rows = family_rows(metric, default_per_seed, best_per_seed)
    winner = _winner(rows)
    out = {
        "task": args.task,
        "metric": metric,
        "direction": METRIC_DIRECTIONS[metric],
        "n": args.n,
        "search_seed": SEARCH_SEED,
        "eval_seeds": list(args.eval_seeds),
        "grid_points": len(grid.points),
        "grid_preset": args.points,
        "grid": {name: f.config() for name, f in families.items()},
        "families": sorted(families),
        "default": {
            "search_seed_metric": grid.default.metrics[metric],
            "per_seed": {str(s): m for s, m in default_per_seed.items()},
        },
        "best_per_family": rows,
        "best_family": winner,
        "headroom": bool(winner is not None and rows[winner]["z"] >= Z_THRESHOLD),
        "z_threshold": Z_THRESHOLD,
        "definition": "improvement_s = (default - best point) on eval seed s for a 'min' metric "
        "(best - default for 'max'); z = mean / sample std over the eval seeds; improvement_ci95: "
        "mean ± t_{0.975, k-1} std / sqrt(k) over the k eval seeds",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip()
        + f", torch {torch.__version__}, 1 thread",
        "command": "python " + " ".join(sys.argv),
        "wall_clock_s": time.perf_counter() - t0,
    }
    path = args.out or Path("benchmarks/results") / f"headroom_{args.task}.json"
    atomic_write_json(path, out)
    _print(out, path)
    return 0


def _print(out: dict, path: Path) -> None:
    for name, row in out["best_per_family"].items():
        print(
            f"{out['task']} {name:9s} {row['params']}: {out['metric']} improvement "
            f"{row['improvement_mean']:+.4g} ± {row['improvement_std']:.3g} (z = {row['z']:.2f}; "
            f"95 % interval [{row['improvement_ci95'][0]:+.4g}, {row['improvement_ci95'][1]:+.4g}])"
        )
    print(f"headroom: {out['headroom']} -> {path}")


if __name__ == "__main__":
    sys.exit(main())
