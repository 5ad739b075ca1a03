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
* with ``--grid-top K``: the grid's own candidates too, i.e. the K points of the suite's grid with
  the lowest search-seed SW2 (the best one included; its ``grid.json``), each scored the same way,
  with the same search-seed rule among them (``grid_pick``: does the grid hold a point as sharp
  as its best that keeps the masses, findable without the evaluation seeds?) and among them and
  the ``sigma_min`` values together (``all_pick``);
* the hindsight bound: the tasks where some ``sigma_min`` value (with ``--grid-top``, or some of
  the K grid points; with ``--policy``, or one of the policy's samplers) meets both rules,
  against the ``ceil(0.8 n) + ceil(0.9 n) - n`` tasks a rule meeting both suite targets needs;
  with ``--frontier`` (``rule_frontier.py`` outputs on the same tasks), also the tasks where one
  of those or some learned sampler of those files meets both (``union_both``).

With ``--policy RUN`` (a trained run in each task's ``runs/`` folder), the learned policy
joins, at the inference the comparison chose for it (greedy, a temperature, or the mean action;
its per-sample action noise as the comparison draws it; ``--policy-inference`` sets another rule:
greedy, the mean action or a temperature), as ``policy``, and so does every
reshaping of its guidance by :class:`~diffgym.agents.policy_sampling.PolicySampler`'s
``guidance_factor`` (``--guidance-factors``: ``w -> 1 + alpha (w - 1)``) and
``guidance_max_sigma`` (``--guidance-max-sigmas``: no guidance at ``sigma_i > c``), each alone
and each pair (``policy:f=0.5``, ``policy:cut=1``, ``policy:f=0.5,cut=1``). ``policy_pick`` is
the same search-seed rule among these (the unreshaped policy included), and the hindsight bound
over them is ``policy_hindsight_both``: could a search-seed choice of how much of the policy's
guidance to keep, and where, meet both rules where the policy alone does not?
``--policy-sigma-mins S …`` adds each of these on the task's schedule ending at a larger
``sigma_min`` (``policy:f=2,cut=1|sigma_min=0.3``: the end of schedule's mass-neutral
sharpening, above, with the policy's guidance).

``--pick-among NAME …`` (repeatable) adds the comparison's own choice among a named subset of
the samplers to the summary (``pick: A + B``; ``runs.choose_inference`` under the mode-TV guard,
which also keeps the default sampler when its SW2 is lower), from the stored rows alone: with
``--reuse`` of a probe that scored them, a candidate set of an inference rule is screened with
0 evaluations.

Results are written after every task (atomically); rerunning with the same ``--out``,
``--sigma-min``, ``--n``, ``--grid-top`` and policy settings (or naming earlier outputs with
``--reuse``) reuses the finished tasks of the same comparisons, and with other settings their
sampler rows at the same ``--n`` (the policy's only for the same run and inference rule).
Development suites only.

    python benchmarks/scripts/sigma_min_probe.py \\
        --suite benchmarks/results/suite/dev-s18-rf-base \\
        --sigma-min 0.1 0.2 0.3 0.45 0.6 --n 16384 --threads 1 \\
        --out benchmarks/results/sigma_min_probe/dev-0-7.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET
from diffgym.agents.train import load_policy
from diffgym.benchmarks.evaluate import evaluate_sampler, task_fingerprint
from diffgym.benchmarks.grid import DEFAULT_FAMILY, PointResult
from diffgym.benchmarks.grid_families import point_task
from diffgym.benchmarks.report import MEAN_ACTION, paired_interval
from diffgym.benchmarks.runs import (
    check_inference_candidates,
    choose_inference,
    inference_sampler,
    rule_task,
)
from diffgym.benchmarks.suite import finished_suite_tasks
from diffgym.benchmarks.suite_outcomes import TARGETS, reached
from diffgym.envs.io import atomic_write_json
from diffgym.envs.sampler import PerSampleNoise, schedule_actions
from diffgym.envs.tasks import make_task

METRICS = ("sw2", "mode_tv")


def _score(task, actions, *, n: int, seed: int, guided: bool = False, renoise_budget: int = 0,
           base_grid: bool = False) -> dict[str, float]:
    with torch.inference_mode():
        ev = evaluate_sampler(task, actions, n=n, seed=seed, guided=guided,
                              renoise_budget=renoise_budget, base_grid=base_grid)
    return {**{m: float(ev.metrics[m]) for m in METRICS}, "nfe_per_sample": ev.nfe_per_sample}


def _policy_variants(factors: list[float], cuts: list[float],
                     sigma_mins: list[float] = ()) -> list[tuple[str, str, float | None]]:
    """The policy's samplers as ``(name, reshaping, sigma_min)``: as chosen (``""``), each
    guidance factor, each cut, each pair (the reshaping in the text of an inference rule after
    its ``:``), on the task's schedule (``None``); then each of these again on the schedule
    ending at each of ``sigma_mins`` (``"policy:f=2,cut=1|sigma_min=0.3"``)."""
    out = [("policy", "", None)]
    for f in [None, *factors]:
        for c in [None, *cuts]:
            if f is not None or c is not None:
                parts = ([f"f={f:g}"] if f is not None else []) + (
                    [f"cut={c:g}"] if c is not None else [])
                exact = ([f"f={f!r}"] if f is not None else []) + (
                    [f"cut={c!r}"] if c is not None else [])
                out.append(("policy:" + ",".join(parts), ",".join(exact), None))
    return out + [(f"{name}|{_name(s)}", reshape, s) for s in sigma_mins
                  for name, reshape, _ in out]


def policy_names(factors: list[float], cuts: list[float],
                 sigma_mins: list[float] = ()) -> list[str]:
    """The policy's samplers: as chosen, each guidance factor, each cut, each pair (each also
    on the schedules ending at ``sigma_mins``)."""
    return [name for name, _, _ in _policy_variants(factors, cuts, sigma_mins)]


def policy_samplers(task_dir: Path, run: str, task, n: int, factors: list[float],
                    cuts: list[float], inference: Any = "chosen",
                    sigma_mins: list[float] = ()) -> dict[str, Any]:
    """The learned run ``run`` at the inference its comparison chose (or at ``inference``:
    ``"greedy"``, ``"mean"`` or a temperature), and its guidance reshapings (each also on the
    task's schedule ending at each of ``sigma_mins``: ``Task.replace(sigma_min=...)``, the same
    ``num_steps``; the policy sees that schedule's noise levels), as ``name -> score(seed)``;
    ``SystemExit`` when the run was not evaluated, was evaluated under several rules, or the
    guard kept the default sampler."""
    results = json.loads((task_dir / "results.json").read_text())
    evals = [p for r in results["rows"] if r["kind"] == "learned" for p in r["per_seed"]
             if p.get("run") == run]
    if not evals:
        raise SystemExit(f"{task_dir}: no learned row was evaluated with run {run!r}")
    rules = {(p.get("inference"), p.get("temperature"), p.get("checkpoint_round"))
             for p in evals}
    if len(rules) != 1:
        raise SystemExit(f"{task_dir}: run {run!r} was evaluated under {len(rules)} inference "
                         "rules; allowed: exactly one (one training seed, no checkpoint choice)")
    ((choice, tau, at),) = rules
    if (choice == "default" and inference == "chosen") or (
            at is not None and at != evals[0].get("total_rounds")):
        raise SystemExit(f"{task_dir}: run {run!r} chose {choice or at!r}; allowed: the final "
                         "policy at greedy, a temperature or the mean action")
    policy, _, _ = load_policy(task_dir / "runs" / run)
    if inference != "chosen":
        tau = None if inference == "greedy" else inference
    elif isinstance(tau, str) and ":" in tau:
        raise SystemExit(f"{task_dir}: run {run!r} chose the reshaped rule {tau!r}; give "
                         "--policy-inference (greedy, mean or a temperature) to reshape a plain "
                         "rule")
    head = "greedy" if tau is None else MEAN_ACTION if tau == MEAN_ACTION else repr(float(tau))
    out: dict[str, Any] = {}
    for name, reshape, sigma_min in _policy_variants(factors, cuts, sigma_mins):
        # the comparison's own rule, reshaped (a larger sigma_min as its smin key): built and
        # sampled as the comparison builds and samples its candidates
        spec = ",".join(part for part in (reshape, sigma_min is not None
                                          and f"smin={sigma_min!r}") if part)
        rule = tau if not spec else check_inference_candidates([f"{head}:{spec}"])[0]
        on = rule_task(task, rule)
        sampler = inference_sampler(policy, on, rule)

        def score(seed: int, sampler=sampler, on=on) -> dict[str, float]:
            noise = None if sampler.greedy or sampler.mean_action else PerSampleNoise(
                [ACTION_SEED_OFFSET + seed + b for b in range(n)])
            return _score(on, sampler.actions(noise), n=n, seed=seed,
                          guided="guidance" in sampler.knob_names,
                          renoise_budget=sampler.renoise_budget, base_grid=True)

        out[name] = score
    return out


def _fixed(task, actions=None, guided: bool = False, *, n: int):
    """A fixed sampler as ``score(seed)``."""
    return lambda seed: _score(task, actions, n=n, seed=seed, guided=guided)


def _schedule_sampler(task, family: str, params, schedule, *, n: int):
    """A grid point as ``score(seed)``: its task, its per-step tables, guided where any step
    guides."""
    return _fixed(point_task(task, family, params),
                  schedule_actions(**schedule) if schedule else None,
                  any(w != 1.0 for w in schedule.get("guidance", ())), n=n)


def _name(value: float) -> str:
    return f"sigma_min={value:g}"


def _pick(out: dict[str, Any], names: list[str]) -> str:
    """The search-seed rule: the lowest SW2 among ``names`` whose mode TV is at or below the
    default's, all on the search seed; the default sampler if none is."""
    search = out["search"]
    kept = [k for k in names if search[k]["mode_tv"] <= search["default"]["mode_tv"]]
    return min(kept, key=lambda k: search[k]["sw2"], default="default")


def grid_candidates(grid_file: Path, results: dict[str, Any], top: int,
                    task, n: int) -> dict[str, Any]:
    """The ``top`` grid points with the lowest search-seed SW2 of the suite's grid (its
    ``grid.json``), other than the best one (the ``grid`` row), as samplers by label;
    ``SystemExit`` unless the grid is the comparison's (same task, same best point)."""
    if not grid_file.is_file():
        raise SystemExit(f"no grid file {grid_file} (allowed: TASK/grid/grid.json in the suite "
                         "folder, or --grids DIR holding TASK.json)")
    grid = json.loads(grid_file.read_text())
    if grid.get("task") != results["fingerprint"]:
        raise SystemExit(f"{grid_file} is the grid of another task than the comparison's")
    points = sorted((PointResult.from_dict(p) for p in grid["points"]
                     if p["family"] != DEFAULT_FAMILY), key=lambda p: p.metrics["sw2"])
    best = next(r for r in results["rows"] if r["method"] == results["best_grid_row"])
    if not points or points[0].label != best["detail"]:
        raise SystemExit(f"{grid_file}: its best point is not the comparison's "
                         f"{best['detail']!r}")
    return {f"grid:{p.label}": _schedule_sampler(task, p.family, p.params, p.schedule, n=n)
            for p in points[1:top]}


def study_task(task_dir: Path, task_name: str, sigma_mins: list[float], n: int,
               grid_top: int = 0, grid_file: Path | None = None,
               known: list[dict[str, Any]] = (), policy: dict[str, Any] | None = None,
               ) -> dict[str, Any]:
    """One task: every sampler on the search seed and the evaluation seeds, the paired rules
    and the search-seed picks (among the ``sigma_min`` values; with ``grid_top``, also among
    the ``grid_top`` sharpest grid points, and among both; with ``policy`` (``run``,
    ``factors``, ``cuts``), among the policy's samplers). A sampler's rows are taken from
    ``known`` (earlier records of the same comparison at the same ``n``) where they are there."""
    results = json.loads((task_dir / "results.json").read_text())
    if results.get("metric") != "sw2":
        raise SystemExit(f"{task_dir}: headline metric {results.get('metric')!r}; allowed: 'sw2'")
    default = next(r for r in results["rows"] if r["kind"] == "default")
    grid = next(r for r in results["rows"] if r["method"] == results["best_grid_row"])
    seeds = [int(p["eval_seed"]) for p in default["per_seed"]]
    search = int(results["search_seed"])
    task = make_task(task_name, **results["settings"]["task_overrides"])  # the seed included
    info = grid["info"]
    samplers: dict[str, Any] = {
        "default": _fixed(task, n=n),
        "grid": _schedule_sampler(task, info["family"], info["params"], info["schedule"], n=n),
    }
    for value in sigma_mins:
        samplers[_name(value)] = _fixed(task.replace(sigma_min=value), n=n)
    top = {} if grid_top < 1 else grid_candidates(
        grid_file or task_dir / "grid" / "grid.json", results, grid_top, task, n)
    samplers.update(top)
    if policy is not None:
        samplers.update(policy_samplers(task_dir, policy["run"], task, n, policy["factors"],
                                        policy["cuts"], policy.get("inference", "chosen"),
                                        policy.get("sigma_mins", ())))
    # The procedural task's content hash can differ in its last bits between machines (RESULTS
    # §42): recorded, so a reader knows whether the grid point was picked on this very task.
    same = task_fingerprint(task) == results["fingerprint"]
    out: dict[str, Any] = {"task": task_dir.name, "seeds": seeds, "search_seed": search, "n": n,
                           "best_grid": grid["detail"], "fingerprint_matches": same,
                           "per_seed": {}, "search": {}}
    if policy is not None:
        out["policy_run"] = policy["run"]
        out["policy_inference"] = policy.get("inference", "chosen")
    for name, score in samplers.items():
        earlier = next((k for k in known if name in k["per_seed"] and k["n"] == n and (
            not name.startswith("policy") or (k.get("policy_run"), k.get("policy_inference"))
            == (policy["run"], out["policy_inference"]))), None)
        if earlier is not None:
            out["search"][name] = earlier["search"][name]
            out["per_seed"][name] = earlier["per_seed"][name]
            continue
        out["search"][name] = score(search)
        out["per_seed"][name] = [score(s) for s in seeds]
    out["search_pick"] = _pick(out, [_name(v) for v in sigma_mins])
    if grid_top >= 1:
        out["grid_top"] = ["grid", *top]
        out["grid_pick"] = _pick(out, out["grid_top"])
        out["all_pick"] = _pick(out, [_name(v) for v in sigma_mins] + out["grid_top"])
    if policy is not None:
        out["policy_candidates"] = policy_names(policy["factors"], policy["cuts"],
                                                policy.get("sigma_mins", ()))
        out["policy_pick"] = _pick(out, out["policy_candidates"])
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


def comparison_pick(out: dict[str, Any], names: list[str]) -> str:
    """The comparison's own choice (:func:`~diffgym.benchmarks.runs.choose_inference` with the
    mode-TV guard) among ``names``, on the search seed: the lowest SW2 among those whose mode
    TV is at or below the default's, unless the default sampler's SW2 is lower (then, and when
    none qualifies, the default)."""
    search = out["search"]
    best, use_default = choose_inference({k: {"metrics": search[k]} for k in names}, "sw2",
                                         "min", "mode_tv", search["default"])
    return "default" if use_default else best


def pick_label(names: list[str]) -> str:
    """The summary's name of the search-seed pick among ``names`` (``--pick-among``)."""
    return "pick: " + " + ".join(names)


def summarise(tasks: list[dict[str, Any]], sigma_mins: list[float],
              learned_both: set[str] | None = None,
              subsets: list[list[str]] = ()) -> dict[str, Any]:
    """Per sampler (and the search-seed pick) the tasks reached, with the masses kept and with
    both; the hindsight bound over the ``sigma_min`` values and the default (and the grid's
    and the policy's candidates where the tasks have them); with ``learned_both`` (the tasks
    where a learned sampler meets both), the bound over the union."""
    n = len(tasks)
    names = ["default", "grid", *(_name(v) for v in sigma_mins)]

    def counts(verdict_of) -> dict[str, int]:
        v = [verdict_of(t) for t in tasks]
        return {"reached": sum(r for r, _ in v), "masses_kept": sum(k for _, k in v),
                "both": sum(r and k for r, k in v)}

    with_policy = bool(tasks) and all("policy_candidates" in t for t in tasks)
    if with_policy:
        names += [k for k in tasks[0]["policy_candidates"]
                  if all(k in t["verdicts"] for t in tasks)]
    per = {name: counts(lambda t, name=name: (t["verdicts"][name]["reached"],
                                              t["verdicts"][name]["masses_kept"]))
           for name in names}
    for name in names:  # the NFE per sample each sampler spent (mean over a task's seeds)
        nfe = [statistics.fmean(r["nfe_per_sample"] for r in t["per_seed"][name])
               for t in tasks if "per_seed" in t]
        if nfe:
            per[name]["nfe_per_sample"] = {"median": statistics.median(nfe), "min": min(nfe),
                                           "max": max(nfe)}
    with_grid = bool(tasks) and all("grid_top" in t for t in tasks)
    picks = ("search_pick", "grid_pick", "all_pick") if with_grid else ("search_pick",)
    picks += ("policy_pick",) if with_policy else ()
    for pick in picks:
        per[pick] = counts(lambda t, pick=pick: (t["verdicts"][t[pick]]["reached"],
                                                 t["verdicts"][t[pick]]["masses_kept"]))
    chosen = {t["task"]: {p: t[p] for p in picks} for t in tasks}
    for names_ in subsets:  # the same search-seed rule among a named subset (0 evaluations)
        for t in tasks:
            missing = [k for k in names_ if k not in t["search"]]
            if missing:
                raise SystemExit(f"--pick-among {' '.join(names_)}: {t['task']} has no rows "
                                 f"{missing}; allowed: {sorted(t['search'])}")
            chosen[t["task"]][pick_label(names_)] = comparison_pick(t, names_)
        per[pick_label(names_)] = counts(lambda t, names_=names_: (
            t["verdicts"][chosen[t["task"]][pick_label(names_)]]["reached"],
            t["verdicts"][chosen[t["task"]][pick_label(names_)]]["masses_kept"]))

    def both_somewhere(candidates_of) -> list[str]:
        return [t["task"] for t in tasks
                if any(t["verdicts"][c]["reached"] and t["verdicts"][c]["masses_kept"]
                       for c in ["default", *candidates_of(t)])]

    hindsight = both_somewhere(lambda t: [_name(v) for v in sigma_mins])
    needed = (math.ceil(TARGETS["reached"] * n) + math.ceil(TARGETS["mode_tv"] * n)
              - n)
    out = {"tasks": n, "per_sampler": per,
           "search_picks": chosen,
           "hindsight_both": len(hindsight), "hindsight_tasks": hindsight,
           "both_needed": max(needed, 0)}
    if with_grid:
        grid_both = both_somewhere(lambda t: t["grid_top"])
        all_both = both_somewhere(lambda t: [_name(v) for v in sigma_mins] + t["grid_top"])
        out.update(grid_hindsight_both=len(grid_both), grid_hindsight_tasks=grid_both,
                   all_hindsight_both=len(all_both), all_hindsight_tasks=all_both)
        hindsight = all_both
    if with_policy:
        policy_both = both_somewhere(lambda t: t["policy_candidates"])
        out.update(policy_hindsight_both=len(policy_both), policy_hindsight_tasks=policy_both)
        hindsight = [t["task"] for t in tasks if t["task"] in hindsight or t["task"] in policy_both]
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
    p.add_argument("--sigma-min", type=float, nargs="*", default=[],
                   help="sigma_min values of plain Heun to try (each > 0; default none)")
    p.add_argument("--policy", default=None, metavar="RUN",
                   help="also the learned run RUN of each task (e.g. reinforce_js_seed0) at the "
                   "inference its comparison chose, and its guidance reshapings")
    p.add_argument("--policy-inference", default="chosen", metavar="RULE",
                   help="with --policy: 'chosen' (the comparison's choice, the default), "
                   "'greedy', 'mean' or a temperature > 0")
    p.add_argument("--guidance-factors", type=float, nargs="*", default=[], metavar="ALPHA",
                   help="with --policy: guidance factors (each >= 0, not 1): w -> 1 + ALPHA (w-1)")
    p.add_argument("--guidance-max-sigmas", type=float, nargs="*", default=[], metavar="C",
                   help="with --policy: no guidance on steps starting at sigma > C (each > 0)")
    p.add_argument("--policy-sigma-mins", type=float, nargs="*", default=[], metavar="S",
                   help="with --policy: each of the policy's samplers also on the task's "
                   "schedule ending at sigma_min = S (each > 0; default none)")
    p.add_argument("--pick-among", nargs="+", action="append", default=[], metavar="NAME",
                   help="repeatable: also the search-seed pick among these samplers (names as "
                   "in the summary, e.g. 'policy:f=2' 'policy:f=2,cut=1'), from the rows "
                   "alone (0 evaluations)")
    p.add_argument("--n", type=int, default=16384, help="samples per evaluation (>= 2)")
    p.add_argument("--frontier", type=Path, nargs="+", default=None,
                   help="rule_frontier.py outputs on the same tasks: also report the hindsight "
                   "bound over their learned samplers and the sigma_min values together")
    p.add_argument("--grid-top", type=int, default=0, metavar="K",
                   help="also the K grid points with the lowest search-seed SW2 of each task's "
                   "grid (the best one included), and the search-seed picks among them and among "
                   "them and the sigma_min values together (default 0: none)")
    p.add_argument("--grids", type=Path, default=None, metavar="DIR",
                   help="a folder of the suites' grids as TASK.json (default: each task folder's "
                   "grid/grid.json)")
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
    if args.policy is None and (args.guidance_factors or args.guidance_max_sigmas
                                or args.policy_sigma_mins):
        p.error("--guidance-factors / --guidance-max-sigmas / --policy-sigma-mins need "
                "--policy RUN")
    if any(not (v > 0 and math.isfinite(v)) for v in args.policy_sigma_mins):
        p.error(f"--policy-sigma-mins values must be finite and > 0, got "
                f"{args.policy_sigma_mins}")
    if any(not (math.isfinite(v) and v >= 0 and v != 1) for v in args.guidance_factors):
        p.error(f"--guidance-factors must be finite, >= 0 and not 1 (the policy itself), got "
                f"{args.guidance_factors}")
    if any(not (math.isfinite(v) and v > 0) for v in args.guidance_max_sigmas):
        p.error(f"--guidance-max-sigmas must be finite and > 0, got {args.guidance_max_sigmas}")
    inference = args.policy_inference
    if inference not in ("chosen", "greedy", MEAN_ACTION):
        try:
            inference = float(inference)
        except ValueError:
            inference = math.nan
        if not (math.isfinite(inference) and inference > 0):
            p.error(f"--policy-inference must be chosen, greedy, {MEAN_ACTION} or a temperature "
                    f"> 0, got {args.policy_inference!r}")
    if not (args.sigma_min or args.grid_top or args.policy):
        p.error("nothing to probe: give --sigma-min values, --grid-top K or --policy RUN")
    if args.grid_top < 0:
        p.error(f"--grid-top must be >= 0, got {args.grid_top}")
    torch.set_num_threads(args.threads)
    settings = {"suites": [str(s) for s in args.suite], "sigma_min": args.sigma_min, "n": args.n,
                "grid_top": args.grid_top}
    if args.pick_among:  # summary only: never a reason to evaluate again
        settings["pick_among"] = args.pick_among
    policy = None
    if args.policy is not None:
        policy = {"run": args.policy, "factors": args.guidance_factors,
                  "cuts": args.guidance_max_sigmas}
        if inference != "chosen":  # settings of earlier outputs stay as they were
            policy["inference"] = inference
        if args.policy_sigma_mins:
            policy["sigma_mins"] = args.policy_sigma_mins
        settings["policy"] = policy
    same = ("sigma_min", "n", "grid_top", "policy")
    # Finished tasks by name, from --out and --reuse: reused whole with the same settings, their
    # sampler rows with others.
    done: dict[str, list[dict[str, Any]]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for path in [args.out, *(args.reuse or [])]:
        if path.exists():
            old = json.loads(path.read_text())
            unset = {"grid_top": 0, "policy": None}  # written before these settings existed
            whole = {k: old.get("settings", {}).get(k, unset.get(k)) for k in same} == {
                k: settings.get(k) for k in same}
            for t in old["tasks"]:
                (done if whole else rows).setdefault(t["task"], []).append(t)
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
                grid_file = None if args.grids is None else args.grids / f"{task_dir.name}.json"
                known = [t for t in rows.get(task_dir.name, []) + done.get(task_dir.name, [])
                         if _same_comparison(t, results)]
                tasks.append(study_task(task_dir, suite["task"], args.sigma_min, args.n,
                                        args.grid_top, grid_file, known, policy))
            atomic_write_json(args.out, {"settings": settings, "complete": False,
                                         "summary": summarise(tasks, args.sigma_min),
                                         "tasks": tasks})
    learned = None if args.frontier is None else learned_frontier(
        args.frontier, [t["task"] for t in tasks])
    summary = summarise(tasks, args.sigma_min, learned, args.pick_among)
    atomic_write_json(args.out, {"settings": settings, "complete": True, "summary": summary,
                                 "tasks": tasks})
    for name, c in summary["per_sampler"].items():
        nfe = f", NFE {c['nfe_per_sample']['median']:.1f}" if "nfe_per_sample" in c else ""
        print(f"{name:>16}: reached {c['reached']}/{summary['tasks']}, masses kept "
              f"{c['masses_kept']}, both {c['both']}{nfe}")
    if args.sigma_min:
        print(f"hindsight: some sigma_min (or the default) meets both on "
              f"{summary['hindsight_both']}/{summary['tasks']} tasks")
    print(f"a rule meeting both targets needs {summary['both_needed']}/{summary['tasks']}")
    if "grid_hindsight_both" in summary:
        print(f"hindsight: some of the {args.grid_top} sharpest grid points (or the default) on "
              f"{summary['grid_hindsight_both']}/{summary['tasks']}; with the sigma_min values "
              f"too on {summary['all_hindsight_both']}/{summary['tasks']}")
    if "policy_hindsight_both" in summary:
        print(f"hindsight: some of the policy's guidance reshapings (or the default) on "
              f"{summary['policy_hindsight_both']}/{summary['tasks']}")
    if learned is not None:
        print(f"all of these with the learned samplers of {len(args.frontier)} rule_frontier "
              f"file(s): "
              f"{summary['union_both']}/{summary['tasks']}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
