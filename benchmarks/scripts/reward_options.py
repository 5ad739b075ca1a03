"""Which reward option helps on procedural mixtures? (development seeds only)

For each ``gmm2d-random`` development task and each reward option, train PPO + GAIL-js with
that option (everything else the one default configuration: gmm2d's YAML block) and evaluate
the policy, greedy and at temperature 1, with the comparison's common-random-numbers protocol
(:func:`~diffgym.benchmarks.grid.evaluate_sampler`) on ``--n`` samples of one evaluation seed.
Reported per task: SW2, mode-mass TV and mean log density of the default sampler, of the best
constant-guidance point (picked on the search seed 0, scored on the evaluation seed, as the grid
does) and of each option's policy, with the paired SW2 difference to the default sampler (same
noise seeds). One JSON per (task, option) in ``--out``: resumable, finished ones are skipped.

    python benchmarks/scripts/reward_options.py --task-seeds 0 1 2 --timesteps 50000 \
        --n 4096 --threads 1 --out benchmarks/results/reward_options

A thin study script outside the installed package: it only calls the library.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET, PolicySampler
from diffgym.agents.train import TrainConfig, TrainingRun
from diffgym.benchmarks.grid import GuidanceFamily, evaluate_point, evaluate_sampler
from diffgym.envs import PerSampleNoise, make_task
from diffgym.envs.noise import default_noise_version
from diffgym.envs.tasks import DEV_SEEDS

OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "r1": {"disc_grad_penalty": 1.0},
    "spectral_norm": {"disc_spectral_norm": True},
    "terminal_mmd": {"terminal_mmd_weight": 1.0},
    "terminal_mmd_w5": {"terminal_mmd_weight": 5.0},
    "action_cost": {"action_cost": 0.01},
    "mmd+cost": {"terminal_mmd_weight": 1.0, "action_cost": 0.01},
}
"""Option name -> ``irl_kwargs`` of the run."""

SEARCH_SEED = 0
EVAL_SEED = 1_000_000
KEYS = ("sw2", "mode_tv", "logp", "mmd")


def _metrics(m: dict[str, float]) -> dict[str, float]:
    return {k: float(m[k]) for k in KEYS if k in m}


def _policy_eval(agent, task, n: int, seed: int, tau: float | None) -> dict[str, float]:
    sampler = PolicySampler(agent.policy, task, greedy=tau is None, temperature=tau or 1.0)
    noise = PerSampleNoise([ACTION_SEED_OFFSET + seed + b for b in range(n)])
    ev = evaluate_sampler(task, sampler.actions(noise), n=n, seed=seed,
                          guided="guidance" in sampler.knob_names,
                          renoise_budget=sampler.renoise_budget)
    return {**_metrics(ev.metrics), "nfe_per_sample": ev.cost.nfe_per_sample}


def _check_noise_version(p: argparse.ArgumentParser, out: Path) -> None:
    """A study folder holds one per-sample noise version (``noise_version.txt``; a folder of
    results without it predates versions: version 1), so a resumed study never subtracts one
    version's baselines from another's runs."""
    marker, version = out / "noise_version.txt", default_noise_version()
    if marker.is_file():
        had = int(marker.read_text().strip())
    elif any(out.glob("task*.json")):
        had = 1
    else:
        marker.write_text(f"{version}\n")
        return
    if had != version:
        p.error(f"{out} holds results drawn with per-sample noise version {had}; this run draws "
                f"version {version}: rerun with `DIFFGYM_NOISE_VERSION={had}` or use another "
                "--out")


def baselines(task_seed: int, n: int) -> dict[str, Any]:
    """The default sampler and the best constant guidance (picked on the search seed)."""
    task = make_task("gmm2d-random", seed=task_seed)
    default = evaluate_point(task, None, n=n, seed=EVAL_SEED)
    family = GuidanceFamily.preset(task)
    search = {p["w"]: evaluate_point(task, family, p, n=n, seed=SEARCH_SEED).metrics["sw2"]
              for p in family.points()}
    best_w = min(search, key=search.get)
    best = evaluate_point(task, family, {"w": best_w}, n=n, seed=EVAL_SEED)
    return {
        "task_extra": task.extra,
        "default": _metrics(default.metrics),
        "best_guidance": {"w": best_w, **_metrics(best.metrics)},
        "guidance_search_sw2": search,
    }


def run_option(task_seed: int, option: str, *, timesteps: int, n: int, run_dir: Path,
               train_seed: int) -> dict[str, Any]:
    cfg = TrainConfig(task="gmm2d-random", task_overrides={"seed": task_seed}, agent="ppo",
                      irl="gail", divergence="js", timesteps=timesteps, seed=train_seed,
                      eval_every=0, eval_samples=256, checkpoint_every=10_000,
                      irl_kwargs=dict(OPTIONS[option]))
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    run = TrainingRun(cfg, run_dir, progress=False)
    run.train()
    train_s = time.perf_counter() - t0
    task = run.env.task
    out = {"greedy": _policy_eval(run.agent, task, n, EVAL_SEED, None),
           "tau1": _policy_eval(run.agent, task, n, EVAL_SEED, 1.0),
           "train_seconds": train_s, "irl_kwargs": OPTIONS[option]}
    return out


def summarize(out: Path, timesteps: int, train_seed: int) -> str:
    """A markdown table of every finished (task, option) in ``out``: per option, the mean over
    tasks of the paired SW2 difference to the default sampler and to the best constant guidance,
    and of the mode TV minus the default's (greedy and tau = 1), with per-task values."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob(f"task*_s{train_seed}_t{timesteps}.json")):
        res = json.loads(path.read_text())
        base_path = out / f"task{res['task_seed']}_baselines_n{res['n']}.json"
        res["base"] = json.loads(base_path.read_text())
        rows.setdefault(res["option"], []).append(res)
    lines = [
        f"PPO + GAIL-js, {timesteps} steps, training seed {train_seed}; paired on the same "
        "evaluation noise. dSW2 = SW2 - SW2(default sampler); vs w* = SW2 - SW2(best constant "
        "guidance); dTV = mode TV - mode TV(default). Per task in brackets.",
        "",
        "| option | tasks | greedy dSW2 | greedy vs w* | greedy dTV | tau1 dSW2 | tau1 dTV "
        "| greedy NFE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for option in OPTIONS:
        if option not in rows:
            continue
        rs = sorted(rows[option], key=lambda r: r["task_seed"])

        def col(mode: str, f, rs: list[dict[str, Any]] = rs) -> str:
            vals = [f(r[mode], r["base"]) for r in rs]
            return f"{sum(vals) / len(vals):+.4f} ({', '.join(f'{v:+.3f}' for v in vals)})"

        lines.append(
            f"| {option} | {', '.join(str(r['task_seed']) for r in rs)} "
            f"| {col('greedy', lambda m, b: m['sw2'] - b['default']['sw2'])} "
            f"| {col('greedy', lambda m, b: m['sw2'] - b['best_guidance']['sw2'])} "
            f"| {col('greedy', lambda m, b: m['mode_tv'] - b['default']['mode_tv'])} "
            f"| {col('tau1', lambda m, b: m['sw2'] - b['default']['sw2'])} "
            f"| {col('tau1', lambda m, b: m['mode_tv'] - b['default']['mode_tv'])} "
            f"| {sum(r['greedy']['nfe_per_sample'] for r in rs) / len(rs):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task-seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    p.add_argument("--timesteps", type=int, default=50_000)
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/reward_options"))
    p.add_argument("--runs", type=Path, default=Path("runs/reward_options"))
    p.add_argument("--summary", action="store_true",
                   help="only write OUT/summary.md from the finished results")
    args = p.parse_args(argv)
    if args.summary:  # one table per training seed found
        seeds = sorted({int(f.stem.rsplit("_s", 1)[1].split("_")[0])
                        for f in args.out.glob(f"task*_s*_t{args.timesteps}.json")})
        text = "\n".join(summarize(args.out, args.timesteps, s) for s in seeds)
        (args.out / "summary.md").write_text(text)
        print(text)
        return 0
    bad = [s for s in args.task_seeds if s not in DEV_SEEDS]
    if bad:
        p.error(f"task seeds {bad} are not development seeds ({DEV_SEEDS}); held-out seeds are "
                "for the final evaluation only")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    _check_noise_version(p, args.out)
    bases = {}
    for task_seed in args.task_seeds:
        base_path = args.out / f"task{task_seed}_baselines_n{args.n}.json"
        if not base_path.is_file():
            base_path.write_text(json.dumps(baselines(task_seed, args.n), indent=1))
        bases[task_seed] = json.loads(base_path.read_text())
    for option in args.options:  # option-major: an interrupted study has whole options
        for task_seed in args.task_seeds:
            base = bases[task_seed]
            path = args.out / f"task{task_seed}_{option}_s{args.train_seed}_t{args.timesteps}.json"
            if path.is_file():
                continue
            res = run_option(task_seed, option, timesteps=args.timesteps, n=args.n,
                             run_dir=args.runs / f"task{task_seed}_{option}_s{args.train_seed}",
                             train_seed=args.train_seed)
            for mode in ("greedy", "tau1"):
                res[mode]["sw2_minus_default"] = res[mode]["sw2"] - base["default"]["sw2"]
                res[mode]["sw2_minus_best_guidance"] = (
                    res[mode]["sw2"] - base["best_guidance"]["sw2"]
                )
            res.update(task_seed=task_seed, option=option, timesteps=args.timesteps,
                       train_seed=args.train_seed, n=args.n, eval_seed=EVAL_SEED)
            path.write_text(json.dumps(res, indent=1))
            g, t = res["greedy"], res["tau1"]
            d, b = base["default"], base["best_guidance"]
            print(f"task {task_seed} {option:14s} greedy sw2 {g['sw2']:.4f} "
                  f"(default {d['sw2']:.4f}, best w {b['sw2']:.4f})"
                  f" tv {g['mode_tv']:.3f} (default {base['default']['mode_tv']:.3f}) | tau1 sw2 "
                  f"{t['sw2']:.4f} tv {t['mode_tv']:.3f} | {res['train_seconds']:.0f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
