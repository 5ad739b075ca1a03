"""GPU benchmark: every device measurement of the project in one command, one JSON.

Meant for the few minutes of a lent GPU machine (``benchmarks/scripts/gpu_session.sh`` installs
what a bare machine lacks and runs it). Each phase runs in its own subprocess under its own time
limit (the total stays under ``--total-limit``, 570 s by default); a phase that runs out of time is
stopped and keeps what it had finished, and the next phase starts. The phases, in order:

1. ``tests``: ``pytest -m cuda`` (the CUDA cases of the suite; its summary line is kept).
2. ``env``: env throughput from 64 to 65,536 envs on gmm2d and digits, through
   ``benchmarks/scripts/env_throughput.py`` (its modes, medians and ratios), one
   (size, task) at a time, smallest sizes first for both tasks.
3. ``grid``: one grid point (the default sampler) per task at ``n = 2048`` through
   :func:`diffgym.benchmarks.grid.evaluate_point` (sampling and metrics seconds, NFE/s).
4. ``training``: PPO + GAIL-js training rounds at the YAML's env count and at 1024 envs
   (:class:`diffgym.agents.train.TrainingRun` with ``stop_after_rounds``; after one warm-up
   round: seconds per round, rollout+policy vs discriminator, transitions/s).
5. ``compile``: the digits denoiser's forward at batch 2048, eager vs ``torch.compile``
   (compile time, median ms per forward, the largest output difference).

Every phase also runs on the CPU (``--device cpu`` with small sizes: the smoke test). It needs
diffgym and its dependencies importable (on a bare GPU machine, run it through
``benchmarks/scripts/gpu_session.sh``).

Usage::

    python benchmarks/scripts/gpu_bench.py --device cuda --out gpu_bench.json
    python benchmarks/scripts/gpu_bench.py --device cpu --phases grid compile \\
        --grid-n 64 --compile-batch 16 --compile-backend eager --out /tmp/bench.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("tests", "env", "grid", "training", "compile")
DEFAULT_LIMITS = {"tests": 90, "env": 150, "grid": 90, "training": 120, "compile": 90}
"""Seconds per phase (540 in all; ``--limit PHASE=S`` overrides)."""
TOTAL_LIMIT = 570.0  # seconds for the whole script (a 10-minute lease, less start-up)
MIN_PHASE_SECONDS = 10.0  # a phase is skipped when less than this is left of the total
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of a phase over its limit


def say(msg: str) -> None:
    print(f"[gpu_bench {dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {msg}", flush=True)


def describe_machine(device: str) -> dict[str, Any]:
    """The card (or CPU), torch and CUDA versions.

    Raises:
        ValueError: a CUDA device is asked for and CUDA is not available.
    """
    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "gpu": None,
    }
    if torch.device(device).type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device} was asked for but CUDA is not available")
        props = torch.cuda.get_device_properties(torch.device(device).index or 0)
        info.update(
            gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Part:
    """A phase's results, written atomically after every item (kept when the phase is
    stopped)."""

    def __init__(self, path: Path) -> None:
        from diffgym.envs.io import atomic_write_json

        self.path, self.data, self._write = path, {"items": []}, atomic_write_json

    def add(self, item: dict[str, Any]) -> None:
        self.data["items"].append(item)
        self._write(self.path, self.data)

    def set(self, **fields: Any) -> None:
        self.data.update(fields)
        self._write(self.path, self.data)


# --------------------------------------------------------------------------------------------
# Phases (each runs in a child process: ``--run-phase NAME --part PATH``)
# --------------------------------------------------------------------------------------------


def phase_tests(args: argparse.Namespace, part: Part) -> None:
    """``pytest -m cuda`` on ``--tests-path``; exit code and summary line."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:warnings",
           *args.tests_path]
    say("  " + " ".join(cmd[1:]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else proc.stderr[-500:]
    part.set(returncode=proc.returncode, summary=summary,
             seconds=round(time.perf_counter() - t0, 2))
    say(f"  pytest exit {proc.returncode}: {summary}")


def phase_env(args: argparse.Namespace, part: Part) -> None:
    """``env_throughput.py`` (run as its own process: scripts never import each other) for one
    (num_envs, task) at a time, smallest sizes first."""
    script = Path(__file__).resolve().parent / "env_throughput.py"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "env.json"
        for n in args.env_sizes:
            for task in args.env_tasks:
                argv = ["--device", args.device, "--tasks", task, "--num-envs", str(n),
                        "--steps", str(args.env_steps), "--repeats", str(args.env_repeats),
                        "--sync-max-envs", "0", "--out", str(out)]
                t0 = time.perf_counter()
                subprocess.run([sys.executable, str(script), *argv], check=True,
                               capture_output=True, text=True)  # its own table: not needed
                payload = json.loads(out.read_text())
                seconds = time.perf_counter() - t0
                rates = {r["mode"]: r["steps_per_s"] for r in payload["results"]
                         if r.get("steps_per_s")}
                part.add({"task": task, "num_envs": n, "seconds": round(seconds, 2),
                          "argv": argv, "results": payload["results"],
                          "ratios": payload.get("ratios"),
                          "skipped_tasks": payload.get("skipped_tasks")})
                shown = ", ".join(f"{m} {v:,.0f}" for m, v in rates.items())
                say(f"  env {task} {n} envs: steps/s {shown} ({seconds:.1f} s)")


def phase_grid(args: argparse.Namespace, part: Part) -> None:
    """One default-sampler grid point per task at ``--grid-n``, after a small warm-up point."""
    from diffgym.benchmarks.grid import evaluate_point
    from diffgym.envs import make_task

    device = torch.device(args.device)
    for name in args.grid_tasks:
        task = make_task(name)
        evaluate_point(task, None, n=min(64, args.grid_n), seed=0, device=device)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        point = evaluate_point(task, None, n=args.grid_n, seed=0, device=device)
        _sync(device)
        seconds = time.perf_counter() - t0
        cost = point.cost
        sampling, metrics = cost.seconds.get("grid_point", 0.0), cost.seconds.get("metrics", 0.0)
        part.add({
            "task": name, "n": args.grid_n, "seconds": round(seconds, 3),
            "sampling_s": sampling, "metrics_s": metrics, "nfe": cost.nfe,
            "nfe_per_s": cost.nfe / sampling if sampling else None,
            "samples_per_s": args.grid_n / seconds, "metrics": point.metrics,
        })
        say(f"  grid {name} n={args.grid_n}: sampling {sampling:.2f} s ({cost.nfe:,} NFE), "
            f"metrics {metrics:.2f} s, {args.grid_n / seconds:,.0f} samples/s")


def phase_training(args: argparse.Namespace, part: Part) -> None:
    """PPO + GAIL-js rounds per task and env count, timed after one warm-up round."""
    from diffgym.agents.train import TrainConfig, TrainingRun

    for task in args.train_tasks:
        for envs in args.train_envs:
            config = TrainConfig(
                task=task, agent="ppo", irl="gail", timesteps=10**9, seed=0,
                device=args.device, n_envs=None if envs == "yaml" else int(envs),
                eval_every=0, checkpoint_every=10**6,
            )
            with tempfile.TemporaryDirectory() as tmp:
                run = TrainingRun(config, Path(tmp) / "run", progress=False)
                run.train(stop_after_rounds=1)  # warm-up
                before, steps0 = dict(run.ledger.seconds), run.agent.num_timesteps
                t0 = time.perf_counter()
                run.train(stop_after_rounds=args.train_rounds)
                seconds = time.perf_counter() - t0
                after = run.ledger.seconds
                gen = sum(after[k] - before[k] for k in ("rollouts", "policy_update"))
                disc = after["discriminator"] - before["discriminator"]
                steps = run.agent.num_timesteps - steps0
                n_envs = run.env.num_envs
            part.add({
                "task": task, "num_envs": n_envs, "env_count": envs, "rounds": args.train_rounds,
                "transitions_per_round": steps // args.train_rounds,
                "seconds_per_round": seconds / args.train_rounds,
                "rollouts_and_policy_s_per_round": gen / args.train_rounds,
                "discriminator_s_per_round": disc / args.train_rounds,
                "discriminator_share": disc / (gen + disc) if gen + disc > 0 else None,
                "transitions_per_s": steps / seconds,
            })
            say(f"  training {task} {n_envs} envs: {seconds / args.train_rounds:.2f} s/round "
                f"(discriminator {disc / max(gen + disc, 1e-12):.0%}), "
                f"{steps / seconds:,.0f} transitions/s")


def _time_forward(fn: Callable[[], torch.Tensor], iters: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``iters`` calls, each synchronised."""
    times = []
    for _ in range(iters):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def phase_compile(args: argparse.Namespace, part: Part) -> None:
    """The digits denoiser's forward at ``--compile-batch``: eager, then ``torch.compile``."""
    from diffgym.envs import make_task

    device = torch.device(args.device)
    task = make_task("digits")
    net = task.denoiser.to(device).eval()
    gen = torch.Generator().manual_seed(0)
    b = args.compile_batch
    x = (torch.randn(b, *task.data_shape, generator=gen) * 2.0).to(device)
    sigma = torch.exp(torch.randn(b, generator=gen)).to(device)
    labels = torch.randint(0, task.num_classes, (b,), generator=gen).to(device)
    with torch.no_grad():  # (not inference_mode: some torch.compile versions reject it)
        eager_out = net(x, sigma, labels)
        eager_s = _time_forward(lambda: net(x, sigma, labels), args.compile_iters, device)
        part.set(batch=b, eager_ms=eager_s * 1e3, backend=args.compile_backend)
        say(f"  compile: eager forward {eager_s * 1e3:.2f} ms at batch {b}")
        compiled = torch.compile(net, backend=args.compile_backend)
        _sync(device)
        t0 = time.perf_counter()
        compiled_out = compiled(x, sigma, labels)  # compiles
        _sync(device)
        compile_s = time.perf_counter() - t0
        compiled_s = _time_forward(lambda: compiled(x, sigma, labels), args.compile_iters, device)
        diff = float((compiled_out - eager_out).abs().max())
    part.set(compile_s=compile_s, compiled_ms=compiled_s * 1e3, speedup=eager_s / compiled_s,
             max_abs_diff=diff)
    say(f"  compile ({args.compile_backend}): {compile_s:.1f} s to compile, forward "
        f"{compiled_s * 1e3:.2f} ms ({eager_s / compiled_s:.2f}x eager), max |diff| {diff:.1e}")


PHASE_FUNCTIONS: dict[str, Callable[[argparse.Namespace, Part], None]] = {
    "tests": phase_tests,
    "env": phase_env,
    "grid": phase_grid,
    "training": phase_training,
    "compile": phase_compile,
}


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def run_phase(name: str, argv: list[str], limit: float, tmp: Path) -> dict[str, Any]:
    """Run one phase in a child process (its own session, so a stop reaches its children)."""
    part_path = tmp / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv,
           "--run-phase", name, "--part", str(part_path)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    status = "ok"
    try:
        _, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        status = "timed_out"
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
    if status == "ok" and proc.returncode != 0:
        status = "failed"
    entry: dict[str, Any] = {
        "status": status, "limit_s": round(limit, 1),
        "seconds": round(time.perf_counter() - t0, 2), "returncode": proc.returncode,
        "result": json.loads(part_path.read_text()) if part_path.is_file() else None,
    }
    if status != "ok":
        entry["stderr_tail"] = (stderr or "")[-3000:]
    return entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="'cuda' (default), 'cuda:N' or 'cpu'")
    p.add_argument("--out", type=Path, default=Path("gpu_bench.json"))
    p.add_argument("--phases", nargs="+", default=list(PHASES), metavar="PHASE",
                   help=f"phases to run, in this order: {' '.join(PHASES)}")
    p.add_argument("--limit", nargs="*", default=[], metavar="PHASE=S",
                   help="seconds for a phase (defaults: "
                   + ", ".join(f"{k}={v}" for k, v in DEFAULT_LIMITS.items()) + ")")
    p.add_argument("--total-limit", type=float, default=TOTAL_LIMIT,
                   help="seconds for all phases together")
    p.add_argument("--tests-path", nargs="+", default=["tests"], help="what pytest collects")
    p.add_argument("--env-tasks", nargs="+", default=["gmm2d", "digits"])
    p.add_argument("--env-sizes", nargs="+", type=int,
                   default=[64, 256, 1024, 4096, 16384, 65536])
    p.add_argument("--env-steps", type=int, default=18, help="timed vector steps per repeat")
    p.add_argument("--env-repeats", type=int, default=3)
    p.add_argument("--grid-tasks", nargs="+", default=["gmm2d", "digits"])
    p.add_argument("--grid-n", type=int, default=2048)
    p.add_argument("--train-tasks", nargs="+", default=["gmm2d", "digits"])
    p.add_argument("--train-envs", nargs="+", default=["yaml", "1024"],
                   help="env counts: 'yaml' (the YAML's n_envs) or integers")
    p.add_argument("--train-rounds", type=int, default=2, help="timed rounds (after a warm-up)")
    p.add_argument("--compile-batch", type=int, default=2048)
    p.add_argument("--compile-iters", type=int, default=20)
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend ('eager' for a fast CPU smoke run)")
    p.add_argument("--run-phase", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--part", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [ph for ph in args.phases if ph not in PHASES]
    if unknown:
        p.error(f"unknown phase(s) {unknown}; allowed: {', '.join(PHASES)}")
    limits = dict(DEFAULT_LIMITS)
    for item in args.limit:
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if name not in PHASES or not seconds > 0:
            p.error(f"--limit takes PHASE=SECONDS with PHASE in {', '.join(PHASES)} and "
                    f"SECONDS > 0, got {item!r}")
        limits[name] = seconds
    args.limits = limits
    for name in ("env_steps", "env_repeats", "grid_n", "train_rounds", "compile_batch",
                 "compile_iters"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.grid_n < 2:
        p.error(f"--grid-n must be >= 2, got {args.grid_n}")
    if any(n < 1 for n in args.env_sizes):
        p.error(f"--env-sizes must all be >= 1, got {args.env_sizes}")
    bad = [e for e in args.train_envs if e != "yaml" and not (e.isdigit() and int(e) >= 1)]
    if bad:
        p.error(f"--train-envs takes 'yaml' or integers >= 1, got {bad}")
    return args


def _child_argv(argv: list[str]) -> list[str]:
    """The parent's arguments minus ``--out`` (the child writes its part file only)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--out":
            skip = True
            continue
        if a.startswith("--out="):
            continue
        out.append(a)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.run_phase is not None:  # child: one phase
        if args.part is None:
            raise ValueError("--run-phase needs --part")
        PHASE_FUNCTIONS[args.run_phase](args, Part(args.part))
        return {}

    from diffgym.envs.io import atomic_write_json

    report: dict[str, Any] = {
        "benchmark": "gpu_bench",
        "command": "python benchmarks/scripts/gpu_bench.py " + shlex.join(argv),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(args.device),
        "settings": {k: v for k, v in vars(args).items() if k not in ("run_phase", "part", "out")},
        "phases": {},
        "complete": False,
    }
    report["settings"] = json.loads(json.dumps(report["settings"], default=str))
    atomic_write_json(args.out, report)
    say(f"device {args.device} ({report['machine']['gpu'] or 'CPU'}), torch {torch.__version__}; "
        f"phases {' '.join(args.phases)} within {args.total_limit:.0f} s")
    start = time.perf_counter()
    child_argv = _child_argv(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.phases:
            left = args.total_limit - (time.perf_counter() - start)
            if left < MIN_PHASE_SECONDS:
                report["phases"][name] = {"status": "skipped", "reason": "total limit reached"}
                say(f"{name}: skipped ({left:.0f} s left of --total-limit)")
                continue
            limit = min(args.limits[name], left)
            say(f"{name}: starting (limit {limit:.0f} s)")
            entry = run_phase(name, child_argv, limit, Path(tmp))
            report["phases"][name] = entry
            atomic_write_json(args.out, report)
            say(f"{name}: {entry['status']} in {entry['seconds']:.1f} s")
            if entry["status"] == "failed":
                say("  " + entry["stderr_tail"].strip().splitlines()[-1]
                    if entry["stderr_tail"].strip() else "  (no stderr)")
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["complete"] = all(
        report["phases"].get(n, {}).get("status") == "ok" for n in args.phases
    )
    atomic_write_json(args.out, report)
    say(f"wrote {args.out} ({report['seconds']:.0f} s; complete: {report['complete']})")
    return report


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:  # a bad device: the message, not a traceback
        print(f"gpu_bench: error: {err}", file=sys.stderr)
        sys.exit(2)
