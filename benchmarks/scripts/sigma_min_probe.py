"""Does a sharper end of the schedule keep the mode masses where guidance moves them? Plain Heun
with a larger ``sigma_min``, against a finished development suite's best grid point and default
sampler, at a sample size that resolves the masses.

On ``gmm2d-random`` the model is the exact denoiser of the target blurred by ``b``: its samples
are too wide. The grid's sharpest points use guidance, which also moves mass between modes of
different spreads (RESULTS §38-§44). A schedule ending at a larger ``sigma_min`` ends with one
Euler step into ``sigma = 0`` from there, i.e. it returns the denoiser's posterior mean at
``sigma_min``: it shrinks every sample towards its own mode, which sharpens without moving
samples between modes (until ``sigma_min`` is so large that modes blend). This script measures
how far that gets, per task of the suite, with the suite's rules:

* for each ``--sigma-min`` value: plain Heun on the task's schedule with that ``sigma_min``
  (``Task.replace(sigma_min=...)``, the same ``num_steps``; NFE ``2 N - 1`` as the default), the
  default sampler and the suite's best grid point (its schedule from ``results.json``), each
  evaluated on ``--n`` samples of the suite's evaluation seeds (the comparison's common random
  numbers) and of its search seed;
* *reached*: SW2 minus the best grid point's, paired on the evaluation seeds, at most +1 std of
  the pairing (:func:`~diffgym.benchmarks.suite_outcomes.reached`); *masses kept*: mode TV
  minus the default's, paired, with a mean at or below 0 (the suite's two rules);
* a rule a grid search could run, picking on the search seed only: the ``sigma_min`` with the
  lowest SW2 among those whose mode TV there is at or below the default's (the default itself
  if none is), scored on the evaluation seeds (``search_pick``);
* the hindsight bound: the tasks where some ``sigma_min`` value meets both rules, against the
  ``ceil(0.8 n) + ceil(0.9 n) - n`` tasks a rule meeting both suite targets needs; with
  ``--frontier`` (``rule_frontier.py`` outputs on the same tasks), also the tasks where some
  ``sigma_min`` value or some learned sampler of those files meets both (``union_both``).

Results are written after every task (atomically); rerunning with the same ``--out``,
``--sigma-min`` and ``--n`` (or naming earlier outputs with ``--reuse``) reuses the finished tasks
of the same comparisons. Development suites only.

    python benchmarks/scripts/sigma_min_probe.py \\
        --suite benchmarks/results/suite/dev-s18-rf-base \\
        --sigma-min 0.1 0.2 0.3 0.45 0.6 --n 16384 --threads 1 \\
        --out benchmarks/results/sigma_min_probe/dev-0-7.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from diffgym.benchmarks.evaluate import evaluate_sampler, task_fingerprint
from diffgym.benchmarks.grid_families import point_task
from diffgym.benchmarks.report import paired_interval
from diffgym.benchmarks.suite import finished_suite_tasks
from diffgym.benchmarks.suite_outcomes import TARGETS, reached
from diffgym.envs.io import atomic_write_json
from diffgym.envs.sampler import schedule_actions
from diffgym.envs.tasks import make_task

METRICS = ("sw2", "mode_tv")


def _score(task, actions, *, n: int, seed: int, guided: bool = False) -> dict[str, float]:
    with torch.inference_mode():
        ev = evaluate_sampler(task, actions, n=n, seed=seed, guided=guided)
    return {**{m: float(ev.metrics[m]) for m in METRICS}, "nfe_per_sample": ev.nfe_per_sample}


def _name(value: float) -> str:
    return f"sigma_min={value:g}"


def study_task(task_dir: Path, task_name: str, sigma_mins: list[float], n: int) -> dict[str, Any]:
    """One task: every sampler on the search seed and the evaluation seeds, the paired rules
    and the search-seed pick."""
    results = json.loads((task_dir / "results.json").read_text())
    if results.get("metric") != "sw2":
        raise SystemExit(f"{task_dir}: headline metric {results.get('metric')!r}; allowed: 'sw2'")
    default = next(r for r in results["rows"] if r["kind"] == "default")
    grid = next(r for r in results["rows"] if r["method"] == results["best_grid_row"])
    seeds = [int(p["eval_seed"]) for p in default["per_seed"]]
    search = int(results["search_seed"])
    task = make_task(task_name, **results["settings"]["task_overrides"])  # the seed included
    info = grid["info"]
    schedule = info["schedule"]
    samplers: dict[str, tuple[Any, Any, bool]] = {
        "default": (task, None, False),
        "grid": (point_task(task, info["family"], info["params"]),
                 schedule_actions(**schedule) if schedule else None,
                 any(w != 1.0 for w in schedule.get("guidance", ()))),
    }
    for value in sigma_mins:
        samplers[_name(value)] = (task.replace(sigma_min=value), None, False)
    # The procedural task's content hash can differ in its last bits between machines (RESULTS
    # §42): recorded, so a reader knows whether the grid point was picked on this very task.
    same = task_fingerprint(task) == results["fingerprint"]
    out: dict[str, Any] = {"task": task_dir.name, "seeds": seeds, "search_seed": search, "n": n,
                           "best_grid": grid["detail"], "fingerprint_matches": same,
                           "per_seed": {}, "search": {}}
    for name, (t, actions, guided) in samplers.items():
        out["search"][name] = _score(t, actions, n=n, seed=search, guided=guided)
        out["per_seed"][name] = [_score(t, actions, n=n, seed=s, guided=guided) for s in seeds]
    kept_on_search = [_name(v) for v in sigma_mins
                      if out["search"][_name(v)]["mode_tv"] <= out["search"]["default"]["mode_tv"]]
    out["search_pick"] = min(kept_on_search, key=lambda k: out["search"][k]["sw2"],
                             default="default")
    out["paired"], out["verdicts"] = {}, {}
    for name in out["per_seed"]:
        rows = out["per_seed"][name]
        for ref, metric in (("grid", "sw2"), ("default", "mode_tv")):
            deltas = [a[metric] - b[metric] for a, b in zip(rows, out["per_seed"][ref])]
            mean, std, half = paired_interval(deltas)
            out["paired"][f"{name}-{ref}:{metric}"] = {"mean": mean, "std": std, "half": half}
        sw2 = out["paired"][f"{name}-grid:sw2"]
        out["verdicts"][name] = {
            "reached": name == "grid" or bool(reached(sw2["mean"], sw2["std"])),
            "masses_kept": name == "default"
            or out["paired"][f"{name}-default:mode_tv"]["mean"] <= 0.0,
        }
    return out


def _same_comparison(task: dict[str, Any], results: dict[str, Any]) -> bool:
    """Whether a finished task record was computed from this comparison (the same evaluation
    and search seeds and the same best grid point)."""
    default = next(r for r in results["rows"] if r["kind"] == "default")
    grid = next(r for r in results["rows"] if r["method"] == results["best_grid_row"])
    return (task.get("seeds") == [int(p["eval_seed"]) for p in default["per_seed"]]
            and task.get("search_seed") == int(results["search_seed"])
            and task.get("best_grid") == grid["detail"])


def summarise(tasks: list[dict[str, Any]], sigma_mins: list[float],
              learned_both: set[str] | None = None) -> dict[str, Any]:
    """Per sampler (and the search-seed pick) the tasks reached, with the masses kept and with
    both; the hindsight bound over the ``sigma_min`` values and the default; with
    ``learned_both`` (the tasks where a learned sampler meets both), the bound over the union."""
    n = len(tasks)
    names = ["default", "grid", *(_name(v) for v in sigma_mins)]

    def counts(verdict_of) -> dict[str, int]:
        v = [verdict_of(t) for t in tasks]
        return {"reached": sum(r for r, _ in v), "masses_kept": sum(k for _, k in v),
                "both": sum(r and k for r, k in v)}

    per = {name: counts(lambda t, name=name: (t["verdicts"][name]["reached"],
                                              t["verdicts"][name]["masses_kept"]))
           for name in names}
    per["search_pick"] = counts(lambda t: (t["verdicts"][t["search_pick"]]["reached"],
                                           t["verdicts"][t["search_pick"]]["masses_kept"]))
    candidates = ["default", *(_name(v) for v in sigma_mins)]
    hindsight = [t["task"] for t in tasks
                 if any(t["verdicts"][c]["reached"] and t["verdicts"][c]["masses_kept"]
                        for c in candidates)]
    needed = (math.ceil(TARGETS["reached"] * n) + math.ceil(TARGETS["mode_tv"] * n)
              - n)
    out = {"tasks": n, "per_sampler": per,
           "search_picks": {t["task"]: t["search_pick"] for t in tasks},
           "hindsight_both": len(hindsight), "hindsight_tasks": hindsight,
           "both_needed": max(needed, 0)}
    if learned_both is not None:
        union = [t["task"] for t in tasks if t["task"] in hindsight or t["task"] in learned_both]
        out.update(learned_both=sorted(learned_both & {t["task"] for t in tasks}),
                   union_both=len(union), union_tasks=union)
    return out


def learned_frontier(files: list[Path], tasks: list[str]) -> set[str]:
    """The tasks where some learned sampler of ``rule_frontier.py`` outputs meets both rules;
    ``SystemExit`` unless the files cover exactly ``tasks``."""
    both: set[str] = set()
    for f in files:
        per_task = json.loads(f.read_text())["per_task"]
        names = [t["task"] for t in per_task]
        if sorted(names) != sorted(tasks):
            raise SystemExit(f"{f} covers tasks {names}; this probe's tasks are {tasks}")
        both |= {t["task"] for t in per_task if t["any_policy_both"]}
    return both


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", type=Path, nargs="+", required=True,
                   help="finished development suite folders (their tasks are pooled)")
    p.add_argument("--sigma-min", type=float, nargs="+", required=True,
                   help="sigma_min values of plain Heun to try (each > 0)")
    p.add_argument("--n", type=int, default=16384, help="samples per evaluation (>= 2)")
    p.add_argument("--frontier", type=Path, nargs="+", default=None,
                   help="rule_frontier.py outputs on the same tasks: also report the hindsight "
                   "bound over their learned samplers and the sigma_min values together")
    p.add_argument("--reuse", type=Path, nargs="+", default=None,
                   help="earlier outputs of this script with the same --sigma-min and --n: their "
                   "tasks of the same comparisons are reused instead of evaluated again")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.n < 2:
        p.error(f"--n must be >= 2, got {args.n}")
    if any(not (v > 0 and math.isfinite(v)) for v in args.sigma_min):
        p.error(f"--sigma-min values must be finite and > 0, got {args.sigma_min}")
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    settings = {"suites": [str(s) for s in args.suite], "sigma_min": args.sigma_min, "n": args.n}
    done: dict[str, list[dict[str, Any]]] = {}  # finished tasks by name, from --out and --reuse
    for path in [args.out, *(args.reuse or [])]:
        if path.exists():
            old = json.loads(path.read_text())
            if {k: old.get("settings", {}).get(k) for k in ("sigma_min", "n")} == {
                    "sigma_min": args.sigma_min, "n": args.n}:
                for t in old["tasks"]:
                    done.setdefault(t["task"], []).append(t)
        elif path != args.out:
            p.error(f"--reuse {path}: no such file")
    tasks = []
    for suite_dir in args.suite:
        try:
            suite, dirs = finished_suite_tasks(suite_dir)
        except (ValueError, FileNotFoundError) as err:
            p.error(str(err))
        for task_dir in dirs:
            results = json.loads((task_dir / "results.json").read_text())
            same = [t for t in done.get(task_dir.name, []) if _same_comparison(t, results)]
            if same:
                tasks.append(same[0])
            else:
                print(f"{task_dir.name} ...", flush=True)
                tasks.append(study_task(task_dir, suite["task"], args.sigma_min, args.n))
            atomic_write_json(args.out, {"settings": settings, "complete": False,
                                         "summary": summarise(tasks, args.sigma_min),
                                         "tasks": tasks})
    learned = None if args.frontier is None else learned_frontier(
        args.frontier, [t["task"] for t in tasks])
    summary = summarise(tasks, args.sigma_min, learned)
    atomic_write_json(args.out, {"settings": settings, "complete": True, "summary": summary,
                                 "tasks": tasks})
    for name, c in summary["per_sampler"].items():
        print(f"{name:>16}: reached {c['reached']}/{summary['tasks']}, masses kept "
              f"{c['masses_kept']}, both {c['both']}")
    print(f"hindsight: some sigma_min (or the default) meets both on {summary['hindsight_both']}/"
          f"{summary['tasks']} tasks; a rule meeting both targets needs {summary['both_needed']}")
    if learned is not None:
        print(f"with the learned samplers of {len(args.frontier)} rule_frontier file(s): "
              f"{summary['union_both']}/{summary['tasks']}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
