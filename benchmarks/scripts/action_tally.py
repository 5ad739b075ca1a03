"""Tally a trained policy's greedy choices per base-grid level, and the levels where it renoised.
Not part of the package.

    python benchmarks/scripts/action_tally.py --runs RUN_DIR... --n 1024 --seed 5

For each run: the policy (greedy) drives a ``DISABLED``-autoreset env of ``--n`` sub-envs from
one reset until every episode ends; prints ``{knob: {step index: {menu value: count}}}`` and the
step indices where samples were renoised.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch

from diffgym.agents.train import load_policy
from diffgym.envs.env import DiffusionSamplingEnv


def tally(run: Path, n: int, seed: int) -> dict:
    policy, task, _ = load_policy(run)
    env = DiffusionSamplingEnv(task, n, autoreset_mode="Disabled")
    obs, _ = env.reset(seed=seed)
    counts = {k: collections.defaultdict(collections.Counter) for k in env.knob_names}
    renoised: collections.Counter = collections.Counter()
    done = torch.zeros(n, dtype=torch.bool)
    while not bool(done.all()):
        with torch.no_grad():
            a, _ = policy.predict(obs.cpu().numpy(), deterministic=True)
        a = torch.as_tensor(a).reshape(n, -1)
        level = env.step_index.clone()
        for j, knob in enumerate(env.knob_names):
            for i, v in zip(level[~done].tolist(), a[~done, j].tolist()):
                counts[knob][i][env.menus[knob][v]] += 1
        obs, _, terminated, _, info = env.step(a)
        renoised.update(level[info["renoised"].cpu() & ~done].tolist())
        done |= terminated.cpu()
    return {
        "actions": {k: {i: dict(c[i]) for i in sorted(c)} for k, c in counts.items()},
        "renoised_at": dict(sorted(renoised.items())),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="finished run folders")
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {str(run): tally(run, args.n, args.seed) for run in args.runs}
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
