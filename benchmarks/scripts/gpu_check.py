"""GPU check: the CUDA tests, env throughput and a short training run on one device, in one script.

Meant for the few minutes of a lent GPU machine; every part also runs on the CPU, so the
script itself is tested without a GPU (``--device cpu --quick``).

1. ``pytest -m cuda`` (the CUDA cases of the suite; skipped parts are reported, not hidden);
2. ``benchmarks/scripts/env_throughput.py`` on the device (vector env vs raw loop vs SB3 adapter);
3. a short ``diffgym train`` run (PPO + GAIL-js on ``gmm2d`` by default) on the device, with its
   wall-clock, rollout NFE and final metrics.

Usage::

    python benchmarks/scripts/gpu_check.py --device cuda --out benchmarks/results/gpu_check.json

The JSON (written atomically after every part) names the card, torch and CUDA versions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from diffgym.envs.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[2]


def describe_device(device: str) -> dict[str, Any]:
    """The card (or CPU), torch and CUDA versions."""
    info: dict[str, Any] = {"device": device, "torch": torch.__version__}
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device} was asked for but CUDA is not available")
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(
            {
                "gpu": props.name,
                "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda,
            }
        )
    else:
        info["gpu"] = None
    return info


def run_cuda_tests(timeout: float) -> dict[str, Any]:
    """``pytest -m cuda -q`` in a subprocess; returns its exit code and summary line."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:warnings"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return {
        "returncode": proc.returncode,
        "summary": lines[-1] if lines else proc.stderr[-500:],
        "seconds": round(time.perf_counter() - t0, 2),
    }


def run_throughput(device: str, quick: bool, out: Path) -> dict[str, Any]:
    """``env_throughput.py`` on ``device``; returns its JSON."""
    import json

    args = [
        sys.executable,
        str(ROOT / "benchmarks" / "scripts" / "env_throughput.py"),
        "--device",
        device,
        "--tasks",
        "gmm2d",
        "digits",
        "--out",
        str(out),
    ]
    if quick:
        args.append("--quick")
    else:
        # Sized for a short lease: on an H100 the earlier 8192 envs x 90 steps x 3 repeats (both
        # tasks, SyncVectorEnv up to 64) did not finish in 100 s (RESULTS §7).
        args += ["--num-envs", "64", "1024", "4096", "--steps", "36", "--repeats", "3",
                 "--sync-max-envs", "16"]
    subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def run_training(device: str, quick: bool, task: str) -> dict[str, Any]:
    """A short PPO + GAIL-js run on ``device``; returns wall-clock, cost and final metrics."""
    from diffgym.agents.train import TrainConfig, TrainingRun

    timesteps = 2_304 if quick else 100_000
    config = TrainConfig(
        task=task, agent="ppo", timesteps=timesteps, seed=0, device=device,
        n_envs=64 if quick else 1024, eval_every=0, eval_samples=256 if quick else 2048,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = TrainingRun(config, Path(tmp) / "run", progress=False)
        final = run.train()
        seconds = time.perf_counter() - t0
    return {
        "config": config.to_dict(),
        "seconds": round(seconds, 2),
        "timesteps_per_s": round(run.agent.num_timesteps / seconds, 1),
        "cost": run.cost(),
        "final": final,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="'cuda' (default) or 'cpu'")
    p.add_argument("--task", default="gmm2d", help="task of the training run")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--skip-tests", action="store_true", help="skip the pytest part")
    p.add_argument("--test-timeout", type=float, default=300.0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    args = p.parse_args(argv)

    report: dict[str, Any] = {
        "benchmark": "gpu_check",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_device(args.device),
        "complete": False,
    }
    atomic_write_json(args.out, report)
    if not args.skip_tests:
        report["cuda_tests"] = run_cuda_tests(args.test_timeout)
        atomic_write_json(args.out, report)
    with tempfile.TemporaryDirectory() as tmp:
        report["throughput"] = run_throughput(args.device, args.quick, Path(tmp) / "tp.json")
    atomic_write_json(args.out, report)
    report["training"] = run_training(args.device, args.quick, args.task)
    report["complete"] = True
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
