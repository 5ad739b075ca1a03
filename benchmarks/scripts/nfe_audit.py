"""NFE audit: rows the denoiser and guide actually evaluate against the NFE the sampler counts.

Wraps a task's denoiser and guide in modules that count the rows passed to ``forward`` and runs
the paths whose cost the comparison reports: the env with all-neutral actions (guidance menu on),
a guidance-interval schedule through ``sample``, an untrained policy through the policy sampler,
and one grid point. Prints ``rows evaluated / NFE counted`` per case (1.00 = honest counting).

Uses only API that older diffgym versions share, so the same command measures before and after a
change (run it with that version's Python)::

    python benchmarks/scripts/nfe_audit.py --tasks gmm2d digits --n 256 --threads 1 \\
        --out benchmarks/results/nfe_audit.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from diffgym.envs import BatchNoise, DiffusionSamplingEnv, Task, make_task, sample
from diffgym.envs import schedule_actions as _schedule_actions
from diffgym.envs.denoisers import CountingDenoiser


def counted(task: Task) -> Task:
    return task.replace(
        denoiser=CountingDenoiser(task.denoiser),
        guide=CountingDenoiser(task.guide) if task.guide is not None else None,
    )


def rows(task: Task) -> int:
    return task.denoiser.rows + (task.guide.rows if task.guide is not None else 0)


def case_env_neutral(task: Task, n: int) -> tuple[int, int]:
    env = DiffusionSamplingEnv(task, n)
    env.reset(seed=0)
    shape = env.action_space.shape
    start, nfe = rows(task), 0
    for _ in range(task.num_steps):
        nfe += int(env.step(torch.zeros(shape, dtype=torch.long))[4]["nfe"].sum())
    return rows(task) - start, nfe


def interval_tables(task: Task) -> dict[str, list[float]]:
    from diffgym.benchmarks.grid import IntervalFamily

    family = IntervalFamily.preset(task, "small")
    return family.tables(family.points()[0], task.sigmas(dtype=torch.float64))


def case_interval_schedule(task: Task, n: int) -> tuple[int, int]:
    start = rows(task)
    res = sample(
        task.denoiser, task.sigmas(), noise=BatchNoise(n, seed=0), data_shape=task.data_shape,
        labels=task.sample_labels(n, torch.Generator().manual_seed(0)), guide=task.guide,
        actions=_schedule_actions(**interval_tables(task)),
    )
    return rows(task) - start, int(res.nfe.sum())


def case_policy(task: Task, n: int) -> tuple[int, int]:
    from diffgym.agents import PolicySampler, make_agent

    env = DiffusionSamplingEnv(task, 4)
    policy = make_agent("ppo", env, seed=0).policy
    start = rows(task)
    res = PolicySampler(policy, task, temperature=1.0).sample(n, seed=0)
    return rows(task) - start, int(res.nfe.sum())


def case_grid_point(task: Task, n: int) -> tuple[int, int]:
    from diffgym.benchmarks.grid import IntervalFamily, evaluate_point

    family = IntervalFamily.preset(task, "small")
    start = rows(task)
    point = evaluate_point(task, family, family.points()[0], n=n, seed=0)
    return rows(task) - start, int(point.cost.nfe)


CASES = {
    "env, neutral actions, guidance menu": case_env_neutral,
    "guidance-interval schedule (sample)": case_interval_schedule,
    "untrained policy (PolicySampler, tau=1)": case_policy,
    "grid point (interval family)": case_grid_point,
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["gmm2d", "digits"])
    p.add_argument("--n", type=int, default=256, help="samples (envs) per case")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import diffgym

    out: dict[str, Any] = {
        "benchmark": "nfe_audit", "diffgym": diffgym.__file__,
        "command": "python " + " ".join(sys.argv), "n": args.n, "rows": [],
    }
    print("| task | case | rows evaluated | NFE counted | rows / NFE |")
    print("|---|---|---|---|---|")
    for name in args.tasks:
        for case, fn in CASES.items():
            task = counted(make_task(name))
            evaluated, nfe = fn(task, args.n)
            ratio = evaluated / nfe
            out["rows"].append({"task": name, "case": case, "rows_evaluated": evaluated,
                                "nfe_counted": nfe, "ratio": ratio})
            print(f"| {name} | {case} | {evaluated} | {nfe} | {ratio:.2f} |", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
