"""Which noise levels of a trained policy's guidance move the mode masses (an intervention study).

    python benchmarks/scripts/guidance_band.py --suite runs/study/rf-base \\
        --run reinforce_js_seed0 --cuts 0.5 1 2 4 --threads 1 \\
        --out benchmarks/results/guidance_band/rf-base.json

For every task of a finished suite, the learned policy of ``--run`` is evaluated on the suite's
evaluation seeds (the comparison's common random numbers, per-sample action noise, and the
inference temperature the comparison chose for that run; ``--greedy``: greedy), as it is (which
must reproduce the comparison's own numbers: checked unless greedy), and with its guidance
forced to the neutral ``w = 1`` on the steps whose ``sigma_i`` is above a cut (``above:c``) or at
or below it (``below:c``); churn and the other knobs are left as the policy chose them. Each
variant is paired with the default sampler's row of the same comparison (same seeds): the change
in SW2 and in mode TV says which band of the policy's guidance buys the SW2 gain and which moves
the masses. Development seeds only (the suite's split is checked).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

from diffgym.agents.policy_sampling import PolicySampler
from diffgym.agents.train import load_policy
from diffgym.benchmarks.evaluate import ACTION_SEED_OFFSET, evaluate_sampler
from diffgym.benchmarks.runs import inference_sampler
from diffgym.envs.io import atomic_write_json
from diffgym.envs.noise import PerSampleNoise


def variants(cuts: list[float]) -> list[tuple[str, float | None, str | None]]:
    """``(name, cut, side)``: the policy as is, then guidance off above / at-or-below each cut."""
    out: list[tuple[str, float | None, str | None]] = [("policy", None, None)]
    for c in cuts:
        out += [(f"above:{c:g}", c, "above"), (f"below:{c:g}", c, "below")]
    return out


def masked_actions(sampler: PolicySampler, cut: float | None, side: str | None, action_noise):
    """The policy's ``actions`` callable, guidance set to 1 on one side of ``cut``."""
    act = sampler.actions(action_noise)
    if cut is None:
        return act
    sig = sampler.sigmas

    def masked(x, step_index, budget, labels):
        knobs = act(x, step_index, budget, labels)
        if knobs.guidance is None:
            return knobs
        level = sig[step_index.clamp(max=sig.shape[0] - 1)].to(knobs.guidance.dtype)
        off = level > cut if side == "above" else level <= cut
        guidance = torch.where(off, torch.ones_like(knobs.guidance), knobs.guidance)
        return dataclasses.replace(knobs, guidance=guidance)

    masked.validated = True
    return masked


def study_task(task_dir: Path, run: str, cuts: list[float], greedy: bool = False) -> dict:
    """One task: SW2 and mode TV of every variant, paired against the default row per seed."""
    results = json.loads((task_dir / "results.json").read_text())
    default = next(r for r in results["rows"] if r["kind"] == "default")
    evals = [p for r in results["rows"] if r["kind"] == "learned" for p in r["per_seed"]
             if p.get("run") == run]  # this run's evaluations (one per evaluation seed)
    if not evals:
        raise SystemExit(f"{task_dir}: no learned row was evaluated with run {run!r}")
    if not greedy and any(p.get("inference") == "default" for p in evals):
        raise SystemExit(f"{task_dir}: run {run!r} was evaluated as the default sampler (its "
                         "comparison's inference guard kept it): no policy to replay")
    seeds = [p["eval_seed"] for p in evals]
    by_seed = {p["eval_seed"]: p for p in default["per_seed"]}
    n = results["settings"]["n_eval"]
    policy, task, _ = load_policy(task_dir / "runs" / run)
    out = {"task": results["task"], "seeds": seeds,
           "temperatures": [p.get("temperature") for p in evals],
           "default": {m: [by_seed[s]["metrics"][m] for s in seeds] for m in ("sw2", "mode_tv")}}
    taus = dict(zip(seeds, out["temperatures"]))
    if greedy:
        out["temperatures"] = [None] * len(seeds)
    for name, cut, side in variants(cuts):
        per_seed = []
        for s in seeds:
            tau = None if greedy else taus[s]
            sampler = inference_sampler(policy, task, tau)  # greedy, mean action or tau
            noise = PerSampleNoise([ACTION_SEED_OFFSET + s + b for b in range(n)])
            ev = evaluate_sampler(task, masked_actions(sampler, cut, side, noise), n=n, seed=s,
                                  guided=True, base_grid=True)
            per_seed.append({m: ev.metrics[m] for m in ("sw2", "mode_tv")} | {
                "nfe_per_sample": float(ev.result.nfe.double().mean())})
        out[name] = per_seed
    want = [p["metrics"]["sw2"] for p in evals]
    got = [v["sw2"] for v in out["policy"]]
    if not greedy and any(abs(a - b) > 1e-6 * max(1.0, abs(b)) for a, b in zip(got, want)):
        raise SystemExit(f"{task_dir}: the policy as is gives SW2 {got}, the comparison {want}")
    return out


def summary(tasks: list[dict], names: list[str]) -> list[dict]:
    """Per variant: mean paired change against the default (SW2, mode TV) and the number of
    tasks whose mean mode TV is at or below the default's."""
    rows = []
    for name in names:
        d_sw2, d_tv, ok = [], [], 0
        for t in tasks:
            sw2 = [v["sw2"] - d for v, d in zip(t[name], t["default"]["sw2"])]
            tv = [v["mode_tv"] - d for v, d in zip(t[name], t["default"]["mode_tv"])]
            d_sw2.append(statistics.fmean(sw2))
            d_tv.append(statistics.fmean(tv))
            ok += d_tv[-1] <= 0
        rows.append({"variant": name, "mean_delta_sw2": statistics.fmean(d_sw2),
                     "mean_delta_mode_tv": statistics.fmean(d_tv), "mode_tv_ok": ok,
                     "tasks": len(tasks), "delta_sw2": d_sw2, "delta_mode_tv": d_tv})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", type=Path, required=True, help="a finished suite folder")
    p.add_argument("--run", default="reinforce_js_seed0", help="the run folder in each task")
    p.add_argument("--cuts", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    p.add_argument("--greedy", action="store_true",
                   help="replay the greedy policies instead of the comparison's temperatures")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: leave)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    suite = json.loads((args.suite / "suite.json").read_text())
    if suite["split"] != "dev":
        raise SystemExit(f"{args.suite} is not a development suite (split {suite['split']!r}): "
                         "development suites of a task with a seed split only")
    tasks = []
    for k in suite["task_seeds"]:
        tasks.append(study_task(args.suite / f"{suite['task']}-{k}", args.run, args.cuts,
                                args.greedy))
        print(f"task {k} done", file=sys.stderr)
    names = [v[0] for v in variants(args.cuts)]
    rows = summary(tasks, names)
    atomic_write_json(args.out, {"suite": str(args.suite), "run": args.run, "cuts": args.cuts,
                                 "greedy": args.greedy, "summary": rows, "tasks": tasks})
    print("| variant | mean Δ SW2 vs default | mean Δ mode TV vs default | mode TV <= default |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['mean_delta_sw2']:+.4f} | {r['mean_delta_mode_tv']:+.4f} "
              f"| {r['mode_tv_ok']}/{r['tasks']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
