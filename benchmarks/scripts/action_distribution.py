"""A trained policy's action distribution per step: mean menu probabilities along greedy rollouts.

    python benchmarks/scripts/action_distribution.py --runs RUN_DIR [RUN_DIR ...] --n 2048 \\
        --threads 1 --out benchmarks/results/action_distribution.json

For each run, the greedy policy samples ``n`` trajectories (per-sample seeds ``0 .. n-1``); at
every step the softmax of each knob's logits is averaged over the samples. Shows where a policy
still sits at its neutral-biased start and where it has moved (or drifted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffgym.agents.policy_sampling import PolicySampler
from diffgym.agents.train import load_policy
from diffgym.envs.io import atomic_write_json
from diffgym.envs.sampler import PerSampleNoise, sample


def action_distribution(run_dir: Path, n: int) -> dict:
    """``{"menus", "sigmas", "probs": {knob: [[p per menu entry] per step]}}`` of one run."""
    policy, task, cfg = load_policy(run_dir)
    sampler = PolicySampler(policy, task, greedy=True)
    act = sampler.actions()
    rows: list[list[torch.Tensor]] = []
    sigmas: list[float] = []

    def recording(x, step_index, budget, labels):
        logits = sampler.logits(sampler.observe(x, step_index, budget, labels))
        rows.append([torch.softmax(logits[:, sl], dim=1).mean(0) for sl in sampler._slices])
        sigmas.append(float(sampler.sigmas[step_index].float().mean()))
        return act(x, step_index, budget, labels)

    with torch.inference_mode():
        sample(task.denoiser, task.sigmas(), noise=PerSampleNoise(range(n)),
               data_shape=task.data_shape, guide=task.guide, actions=recording,
               labels=task.sample_labels(n, torch.Generator().manual_seed(0)))
    probs = {name: [[round(float(p), 4) for p in row[k]] for row in rows]
             for k, name in enumerate(sampler.knob_names)}
    return {"agent": cfg.agent, "seed": cfg.seed, "agent_overrides": cfg.agent_overrides,
            "menus": {k: list(v) for k, v in sampler.menus.items()}, "sigmas": sigmas,
            "probs": probs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, nargs="+", required=True)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = {}
    for run_dir in args.runs:
        r = report[str(run_dir)] = action_distribution(run_dir, args.n)
        print(f"\n{run_dir} ({r['agent']}, seed {r['seed']}, {r['agent_overrides'] or 'YAML'})")
        for knob, per_step in r["probs"].items():
            print(f"  {knob} {r['menus'][knob]}: step 0 {per_step[0]}, last {per_step[-1]}")
    if args.out is not None:
        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
