"""Inference overhead of policy-guided sampling over a fixed per-step schedule at equal NFE.

For each task, one policy (the default ``make_agent`` architecture, untrained) is *forced* to pick
the same menu entry at every step: its action head's weights are zeroed and its bias favours menu
index ``--knob-index`` of every knob by a large margin. The baseline is
:func:`diffgym.envs.sampler.sample` driven by :func:`~diffgym.envs.sampler.schedule_actions` with
the same levels at every step. Both runs share the noise seed, labels, guide and step function, so
they produce identical samples at identical NFE (checked); the only difference in work is the
policy path: featurising the state, the policy's forward pass and the argmax per step.

Repeats are interleaved (ABAB.., order alternating per repeat) after warm-up runs; the JSON holds
every timing, the medians and ``overhead_pct = 100 (median_policy / median_schedule - 1)`` of the
wall-clock, the median of the per-repeat paired ratios, and the same overhead in process CPU time
(``cpu_overhead_pct``, less sensitive to other processes on a shared machine).

``digits-untrained`` times the ``digits`` task with a randomly initialised network of the shipped
architecture (for machines without the trained weights; samples are meaningless, timings are not).

Run: ``python benchmarks/scripts/inference_overhead.py --tasks gmm2d digits --n 1024 --repeats 9``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from diffgym.envs.io import atomic_write_json

DEFAULT_OUT = Path("benchmarks/results/inference_overhead.json")
UNTRAINED_SUFFIX = "-untrained"
FORCE_MARGIN = 50.0
"""Logit margin of the forced menu entry (far beyond anything the zeroed weights can add)."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["gmm2d", "digits"],
                   help="task names; 'digits-untrained' = digits' network with random weights")
    p.add_argument("--n", type=int, default=1024, help="samples per run (>= 1024 for results)")
    p.add_argument("--repeats", type=int, default=9, help="timed runs per path (interleaved)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per path first")
    p.add_argument("--knob-index", type=int, default=1,
                   help="menu index forced for every knob at every step (0 = neutral)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: n=64, 2 repeats, 1 warm-up (numbers not meaningful)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.warmup = 64, 2, 1
    if args.n < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--n and --repeats must be >= 1, --warmup >= 0")
    return args


def _untrained_task(name: str):
    """``digits`` with a randomly initialised network of the shipped architecture (the timing of
    a forward pass does not depend on the weights); for machines without the trained weights."""
    from diffgym.envs.digits_tasks import digits_task
    from diffgym.envs.networks import build_digits_denoiser

    if name != "digits":
        raise ValueError(f"no untrained variant of task {name!r}; allowed: digits")
    torch.manual_seed(0)
    return digits_task(build_digits_denoiser({"sigma_data": 0.5}).eval().requires_grad_(False))


def _forced_policy(task, index: int, device: str, seed: int):
    """An untrained default policy whose greedy choice is menu ``index`` of every knob."""
    from diffgym.agents import make_agent
    from diffgym.agents.policies import action_menu_sizes, apply_neutral_bias
    from diffgym.envs import DiffusionSamplingEnv

    env = DiffusionSamplingEnv(task, 1, device=device)
    agent = make_agent("ppo", env, seed=seed, device=device, n_steps=2, batch_size=2)
    policy = agent.policy
    sizes = action_menu_sizes(policy.action_space)
    if any(index >= n for n in sizes):
        raise ValueError(f"--knob-index {index} is outside the menus {env.menus}")
    apply_neutral_bias(policy.action_net, sizes, FORCE_MARGIN)  # zero weights, +margin at 0
    with torch.no_grad():  # move the margin from entry 0 to entry `index` of every knob
        offset = 0
        for n in sizes:
            policy.action_net.bias[offset] = 0.0
            policy.action_net.bias[offset + index] = FORCE_MARGIN
            offset += n
    levels = {name: menu[index] for name, menu in env.menus.items()}
    return policy, levels


def _bench_task(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from diffgym.agents import PolicySampler
    from diffgym.benchmarks.overhead import measure_inference_overhead
    from diffgym.envs import make_task

    if name.endswith(UNTRAINED_SUFFIX):
        task = _untrained_task(name.removesuffix(UNTRAINED_SUFFIX)).to(args.device)
    else:
        task = make_task(name, device=args.device)
    policy, levels = _forced_policy(task, args.knob_index, args.device, args.seed)
    sampler = PolicySampler(policy, task, device=args.device, greedy=True)
    n_steps = task.num_steps
    schedule = {k: [v] * n_steps for k, v in levels.items()}
    timing = measure_inference_overhead(
        sampler, schedule, n=args.n, seed=args.seed, repeats=args.repeats, warmup=args.warmup
    )
    return {
        "task": name,
        "untrained_weights": name.endswith(UNTRAINED_SUFFIX),
        "num_steps": n_steps,
        "forced_levels": levels,
        "nfe_per_sample": timing["policy_nfe_per_sample"],
        "policy_params": sum(p.numel() for p in policy.parameters()),
        **timing,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    results, skipped = [], {}
    for name in args.tasks:
        try:
            res = _bench_task(name, args)
        except (FileNotFoundError, ValueError) as err:  # e.g. digits weights not shipped yet
            skipped[name] = f"{type(err).__name__}: {err}"
            print(f"{name}: skipped ({skipped[name]})", file=sys.stderr)
            continue
        results.append(res)
    data = {
        "command": " ".join(["benchmarks/scripts/inference_overhead.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
            "device": args.device,
            "cuda_device": (
                torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
            ),
        },
        "seed": args.seed,
        "quick": args.quick,
        "results": results,
        "skipped": skipped,
    }
    atomic_write_json(args.out, data)
    print(f"{'task':17s} {'n':>6s} {'NFE':>6s} {'policy s':>9s} {'schedule s':>10s} "
          f"{'overhead %':>10s} {'paired %':>9s} {'cpu %':>6s} identical")
    for r in results:
        print(f"{r['task']:17s} {r['n']:6d} {r['nfe_per_sample']:6.1f} "
              f"{r['policy_s']:9.4f} {r['schedule_s']:10.4f} "
              f"{r['overhead_pct']:10.1f} {r['paired_overhead_pct']:9.1f} "
              f"{r['cpu_overhead_pct']:6.1f} {r['identical_samples']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
