"""Env throughput: how close the batched env comes to a hand-written Heun loop, and what common
random numbers and guidance cost.

Section ``throughput``: four ways of running the same transitions, each timed on
the same pre-drawn actions (``--actions neutral``, the default: every knob at its neutral entry;
``random``: uniform legal menu indices), after a warm-up, median over repeats; the repeats of the
modes are interleaved (the order rotates every round) and each is timed in wall-clock and in
process CPU time (``time.process_time``, less sensitive to other processes on a shared machine):

* ``raw`` (a): a hand-written batched EDM Heun loop over the same denoiser (Karras et al. 2022,
  Alg. 1; no ``sampler_step``, no knobs, no checks), every sample at the same step, starting over
  from fresh noise after ``N`` steps: the physical limit of deterministic sampling.
* ``vector`` (b): :class:`~diffgym.envs.DiffusionSamplingEnv` (torch actions on the device).
* ``sb3`` (c): the SB3 adapter :func:`~diffgym.envs.to_sb3` (numpy in and out).
* ``sync`` (d): ``gymnasium.vector.SyncVectorEnv`` over :class:`DiffusionSamplingSingleEnv`
  (``SAME_STEP`` autoreset so every call is a transition), only up to ``--sync-max-envs`` envs
  (one Python env per sample is slow) and for a fraction (``--sync-fraction``) of the steps.

``steps/s`` counts sub-env transitions (``num_envs`` per vector step). The NFE of a transition
depends only on the action and the step index, never on the noise; it is counted once on the
vector env (untimed). With neutral actions the env and the Heun loop spend the same NFE (checked
during the warm-up), so ``(b)/(a)`` is the env's overhead; with random actions the ratios compare
NFE/s. Target: ``(b)/(a) >= 0.90`` at 1024 envs, neutral actions, gmm2d and digits.

Section ``noise``: per-sample (counter-based) against batch noise at ``--noise-batch`` samples
(2048 by default): one draw of each task's data shape, and a whole ``sample`` call with a churn
schedule (noise drawn at every step). Target: per-sample <= 1.5x batch.

Section ``guided``: ``sample`` with a guidance-interval schedule (guidance at ``k`` of ``N`` steps,
the interval family's first small-grid point) against plain Heun on the same batch: the measured
time ratio over the ratio of counted NFE. Target: within 10 % (0.90..1.10).

Section ``ops``: the tensor operations (aten calls, counted with a ``TorchDispatchMode``) of one
neutral env step at the largest ``--num-envs``, outside the denoiser and guide calls: the env's
own per-step work, which the machine's load cannot blur.

Section ``split``: at the largest ``--num-envs``, the wall-clock of a neutral env step and of a
Heun-loop step, each split into the denoiser's (and guide's) calls and everything else (repeats
interleaved, medians). The ``outside`` part is the env's overhead in microseconds; the ratio
``raw step / (raw model + env outside)`` is the throughput ratio the env would have if its
denoiser calls cost what the loop's do (on a shared VM they often do not). ``vector_parts_us``
splits the env's rest into action validation, observation, ``sampler_step`` outside the model
and the rest of ``step``. On a GPU every timed call synchronises, so these step times are not
comparable with the ``throughput`` section's.

Section ``paired`` (only when named in ``--sections``): at the largest ``--num-envs``, the Heun
loop and the neutral env alternate in short chunks of ``--pair-episodes`` whole episodes,
``--pairs`` times (the order swaps every pair), with no timing wrapper around the denoiser: each
pair's own ratio ``raw / vector`` sees the same machine state, so a load that drifts over
seconds cancels out, which the long repeats of ``throughput`` cannot do on a shared VM.
Reported: the median of the pairs' ratios, its quartiles and a 95 % bootstrap interval of the
median, and the ratio of the summed times.

Usage::

    python benchmarks/scripts/env_throughput.py --device cpu --tasks gmm2d digits \\
        --num-envs 1 64 256 1024 --steps 180 --repeats 5 \\
        --task-steps digits=18 --task-repeats digits=3 --threads 1 \\
        --out benchmarks/results/env_throughput.json

Results are written after every (task, num_envs) and section, atomically, with
``"complete": false`` until the run ends.

Targets: vector/sync >= 20 at 256 envs.

``digits-untrained`` times ``digits`` with a randomly initialised network of the shipped
architecture (for machines without the trained weights; throughput does not depend on weights).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import diffgym.envs.env as env_module
from diffgym.envs import (
    BatchNoise,
    DiffusionSamplingEnv,
    DiffusionSamplingSingleEnv,
    PerSampleNoise,
    Task,
    make_task,
    sample,
    schedule_actions,
    to_sb3,
)
from diffgym.envs.digits_tasks import digits_task
from diffgym.envs.io import atomic_write_json

MODES = ("raw", "vector", "sb3", "sync")
MODE_LABELS = {
    "raw": "(a) Heun loop",
    "vector": "(b) vector env",
    "sb3": "(c) SB3 adapter",
    "sync": "(d) SyncVectorEnv",
}
TARGET_VECTOR_OVER_RAW = 0.90  # at 1024 envs, neutral actions
TARGET_VECTOR_OVER_SYNC = 20.0  # at 256 envs
TARGET_NOISE_RATIO = 1.5  # per-sample / batch noise at --noise-batch samples
TARGET_GUIDED_TOLERANCE = 0.10  # |measured / NFE-predicted time - 1|
ACTION_KINDS = ("neutral", "random")
SECTIONS = ("throughput", "noise", "guided", "ops", "split", "paired")
ACTION_SEED = 1234  # seed of the pre-drawn action pattern
ENV_SEED = 0  # reset seed of every timed run
BOOTSTRAP_RESAMPLES = 1000  # of the paired section's pairs; the 95 % interval is resamples 24, 974
BOOTSTRAP_SEED = 1234


# --------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(device: torch.device) -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        ),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "gpu": gpu,
        "device": str(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": git_state(),
    }


def git_state() -> dict[str, Any] | None:
    """The checkout's commit and its changed tracked files (so an A/B run with a file swapped
    back says which), or ``None`` outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"],
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "changed": [line[3:] for line in status.splitlines()]}


def resolve_task(name: str) -> Task:
    """A task by name; ``digits-untrained`` is ``digits`` with an untrained network."""
    if name != "digits-untrained":
        return make_task(name)
    from diffgym.envs.networks import build_digits_denoiser

    torch.manual_seed(0)
    model = build_digits_denoiser({"sigma_data": 0.5}).eval().requires_grad_(False)
    return dataclasses.replace(digits_task(model), name="digits-untrained")


# --------------------------------------------------------------------------------------------
# The four runners: ``reset()`` (untimed) and ``step(t)`` (timed), on the same action pattern.
# --------------------------------------------------------------------------------------------


class Runner:
    """One way of running the transitions: an untimed ``reset`` and a timed ``step(t)``."""

    def __init__(
        self,
        reset: Callable[[], Any],
        step: Callable[[int], Any],
        close: Callable[[], Any] = lambda: None,
    ) -> None:
        self.reset, self.step, self.close = reset, step, close


def draw_actions(env: DiffusionSamplingEnv, steps: int, kind: str = "neutral") -> torch.Tensor:
    """``(steps, num_envs, num_knobs)`` menu indices (int64, on the env's device): all 0
    (neutral) or uniform random legal indices."""
    sizes = [len(env.menus[k]) for k in env.knob_names] or [1]
    if kind == "neutral":
        return torch.zeros((steps, env.num_envs, len(sizes)), dtype=torch.long, device=env.device)
    gen = torch.Generator().manual_seed(ACTION_SEED)
    cols = [torch.randint(0, n, (steps, env.num_envs, 1), generator=gen) for n in sizes]
    return torch.cat(cols, dim=2).to(env.device)


def env_actions(env: DiffusionSamplingEnv, actions: torch.Tensor) -> torch.Tensor:
    """The action tensor in the shape of ``env.action_space`` (drops the knob axis if Discrete)."""
    return actions if len(env.knob_names) > 1 else actions[..., 0]


def heun_runner(env: DiffusionSamplingEnv) -> tuple[Runner, dict]:
    """(a) a hand-written batched EDM Heun loop (Alg. 1) over the env's denoiser: one step per
    call, every sample at the same step index, fresh noise after ``N`` steps. No sampler_step,
    knobs, validation or bookkeeping. The returned dict's ``"nfe"`` counts the NFE of the steps
    run while ``"count"`` is set (for the untimed check against the env)."""
    dev, task, n = env.device, env.task, env.num_envs
    denoiser, shape, num_steps = task.denoiser, env.data_shape, env.num_steps
    sig = env.sigmas.tolist()
    t_vec = [torch.full((n,), s, device=dev, dtype=env.dtype) for s in sig]
    labels = task.sample_labels(n, torch.Generator().manual_seed(ENV_SEED))
    labels = labels.to(dev) if labels is not None else None
    state: dict[str, Any] = {"count": False, "nfe": 0}

    def reset() -> None:
        state["noise"] = BatchNoise(n, device=dev, dtype=env.dtype, seed=ENV_SEED)
        state["x"], state["i"] = state["noise"].randn(shape) * sig[0], 0

    def step(t: int) -> None:
        x, i = state["x"], state["i"]
        t_cur, t_next = sig[i], sig[i + 1]
        # Euler step
        d_cur = (x - denoiser(x, t_vec[i], labels)) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        # Heun correction
        if t_next > 0:
            d_prime = (x_next - denoiser(x_next, t_vec[i + 1], labels)) / t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        if state["count"]:
            state["nfe"] += n * (2 if t_next > 0 else 1)
        i += 1
        if i == num_steps:  # start over from fresh noise (labels are kept)
            x_next, i = state["noise"].randn(shape) * sig[0], 0
        state["x"], state["i"] = x_next, i

    return Runner(reset, step), state


def vector_runner(env: DiffusionSamplingEnv, actions: torch.Tensor) -> Runner:
    """(b) the batched torch env, torch actions on the device."""
    acts = env_actions(env, actions)
    return Runner(lambda: env.reset(seed=ENV_SEED), lambda t: env.step(acts[t]))


def sb3_runner(env: DiffusionSamplingEnv, actions: torch.Tensor) -> Runner:
    """(c) the SB3 adapter (numpy actions in, numpy out)."""
    venv = to_sb3(env)
    acts = env_actions(env, actions).cpu().numpy()

    def reset() -> None:
        venv.seed(ENV_SEED)
        venv.reset()

    return Runner(reset, lambda t: venv.step(acts[t]))


def sync_runner(
    spec: Task, env: DiffusionSamplingEnv, actions: torch.Tensor, device: torch.device
) -> Runner:
    """(d) ``SyncVectorEnv`` of single envs (``SAME_STEP`` autoreset, so every step is a
    transition, as in the other modes)."""

    def make_single() -> DiffusionSamplingSingleEnv:
        return DiffusionSamplingSingleEnv(spec, device=device)

    venv = SyncVectorEnv([make_single] * env.num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    acts = env_actions(env, actions).cpu().numpy()
    return Runner(lambda: venv.reset(seed=ENV_SEED), lambda t: venv.step(acts[t]), venv.close)


def run_timed(runner: Runner, steps: int, device: torch.device) -> tuple[float, float]:
    """Reset (untimed), then ``steps`` steps: ``(wall seconds, process CPU seconds)``."""
    runner.reset()
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for t in range(steps):
        runner.step(t)
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Timed steps and repeats of one task (``--steps``/``--repeats`` or a per-task override)."""

    steps: int
    repeats: int
    warmup: int
    sync_steps: int
    sync_repeats: int

    @classmethod
    def for_task(cls, task: str, args: argparse.Namespace) -> Budget:
        steps = args.task_steps.get(task, args.steps)
        return cls(
            steps=steps,
            repeats=args.task_repeats.get(task, args.repeats),
            warmup=max(1, math.ceil(args.warmup_fraction * steps)),
            sync_steps=max(1, math.ceil(args.sync_fraction * steps)),
            sync_repeats=args.sync_repeats,
        )


def bench_one(
    task: str,
    spec: Task,
    num_envs: int,
    budget: Budget,
    args: argparse.Namespace,
    device: torch.device,
) -> list[dict[str, Any]]:
    """All modes for one (task, num_envs), repeats interleaved (the mode order rotates each
    round, so a change of machine load hits every mode alike); one result row per mode."""
    # SAME_STEP: every step is a transition for every mode (to_sb3 would switch to it anyway)
    env = DiffusionSamplingEnv(
        spec, num_envs, device=device, autoreset_mode=AutoresetMode.SAME_STEP
    )
    actions = draw_actions(env, budget.steps, args.actions)
    nfe_of_prefix = _nfe_prefixes(env, actions)  # untimed; NFE is fixed by the actions
    raw, raw_state = heun_runner(env)
    runners = {"raw": raw, "vector": vector_runner(env, actions), "sb3": sb3_runner(env, actions)}
    steps = {m: budget.steps for m in runners}
    repeats = {m: budget.repeats for m in runners}
    skipped: dict[str, str] = {}
    if num_envs > args.sync_max_envs:
        skipped["sync"] = f"num_envs > --sync-max-envs={args.sync_max_envs}"
    else:
        runners["sync"] = sync_runner(spec, env, actions, device)
        steps["sync"], repeats["sync"] = budget.sync_steps, budget.sync_repeats

    # Warm-up (untimed); the Heun loop's NFE is checked against the env's on the way (neutral
    # actions) and counted for its own rate (random actions).
    for mode, runner in runners.items():
        raw_state["count"] = mode == "raw"
        run_timed(runner, min(budget.warmup, steps[mode]), device)
    raw_state["count"] = False
    if args.actions == "neutral" and raw_state["nfe"] != nfe_of_prefix[budget.warmup]:
        raise AssertionError(
            f"Heun loop spent {raw_state['nfe']} NFE, the env {nfe_of_prefix[budget.warmup]}"
        )
    heun_nfe = _heun_nfe(env, budget.steps)

    times: dict[str, list[tuple[float, float]]] = {m: [] for m in runners}
    order = list(runners)
    for r in range(max(repeats.values())):
        for mode in order[r % len(order) :] + order[: r % len(order)]:
            if len(times[mode]) < repeats[mode]:
                times[mode].append(run_timed(runners[mode], steps[mode], device))
    for runner in runners.values():
        runner.close()
    env.close()

    rows = []
    for mode in MODES:
        entry: dict[str, Any] = {
            "task": task,
            "num_envs": num_envs,
            "mode": mode,
            "skipped": skipped.get(mode),
            "steps": steps.get(mode, 0),
            "repeats": len(times.get(mode, [])),
            "warmup_steps": budget.warmup,
            "wall_s": [w for w, _ in times.get(mode, [])],
            "cpu_s": [c for _, c in times.get(mode, [])],
            "nfe": None,
            "median_wall_s": None,
            "median_cpu_s": None,
            "steps_per_s": None,
            "nfe_per_s": None,
            "steps_per_cpu_s": None,
        }
        if mode in times:
            n_steps = steps[mode]
            nfe = heun_nfe[n_steps] if mode == "raw" else nfe_of_prefix[n_steps]
            wall, cpu = statistics.median(entry["wall_s"]), statistics.median(entry["cpu_s"])
            entry.update(
                nfe=nfe,
                median_wall_s=wall,
                median_cpu_s=cpu,
                steps_per_s=n_steps * num_envs / wall,
                nfe_per_s=nfe / wall,
                steps_per_cpu_s=n_steps * num_envs / cpu if cpu > 0 else None,
            )
        rows.append(entry)
    return rows


def _nfe_prefixes(env: DiffusionSamplingEnv, actions: torch.Tensor) -> list[int]:
    """``out[t]`` = total NFE of the first ``t`` steps of the pattern, all sub-envs together.

    The NFE of a transition depends only on the action and the step index (never on the noise),
    so every mode spends exactly this on the same actions."""
    env.reset(seed=ENV_SEED)
    acts = env_actions(env, actions)
    totals = [0]
    for t in range(actions.shape[0]):
        totals.append(totals[-1] + int(env.step(acts[t])[4]["nfe"].sum()))
    return totals


# --------------------------------------------------------------------------------------------
# Sections "noise" and "guided"
# --------------------------------------------------------------------------------------------


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device,
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and process-CPU seconds of each ``fn`` over ``repeats`` interleaved rounds
    (the order rotates each round; one untimed warm-up round)."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(repeats + 1):
        for k in order[r % len(order):] + order[: r % len(order)]:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fns[k]()
            _sync(device)
            if r:  # round 0 warms up
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}


def bench_noise(task: str, spec: Task, args: argparse.Namespace, device: torch.device,
                ) -> dict[str, Any]:
    """Per-sample against batch noise at ``--noise-batch`` samples: ``--noise-draws`` draws of
    the task's data shape, and (``--noise-sample-tasks``) a whole ``sample`` with churn at every
    step. Times are medians of interleaved repeats. ``per_sample`` is the default generator
    (version 2); ``per_sample_v1`` the generator of the results before it."""
    n, shape, dt = args.noise_batch, spec.data_shape, spec.dtype
    sources = {
        "batch": BatchNoise(n, device=device, dtype=dt, seed=0),
        "per_sample": PerSampleNoise(range(n), device=device, dtype=dt, version=2),
        "per_sample_no_prefetch": PerSampleNoise(range(n), device=device, dtype=dt,
                                                 prefetch=False, version=2),
        "per_sample_v1": PerSampleNoise(range(n), device=device, dtype=dt, version=1),
    }

    def draws(src):
        def run() -> None:
            for _ in range(args.noise_draws):
                src.randn(shape)
        return run

    draw_s, draw_cpu = _interleaved({k: draws(v) for k, v in sources.items()},
                                    args.noise_repeats, device)
    out: dict[str, Any] = {
        "task": task, "batch": n, "data_shape": list(shape), "draws": args.noise_draws,
        "draw_ms": {k: 1e3 * v / args.noise_draws for k, v in draw_s.items()},
        "draw_cpu_ms": {k: 1e3 * v / args.noise_draws for k, v in draw_cpu.items()},
        "draw_ratio": draw_s["per_sample"] / draw_s["batch"],
        "draw_ratio_cpu": draw_cpu["per_sample"] / draw_cpu["batch"],
        "draw_ratio_no_prefetch": draw_s["per_sample_no_prefetch"] / draw_s["batch"],
        "draw_ratio_v1": draw_s["per_sample_v1"] / draw_s["batch"],
    }
    if task in args.noise_sample_tasks:
        sigmas = spec.sigmas(device)
        labels = spec.sample_labels(n, torch.Generator().manual_seed(0))
        labels = labels.to(device) if labels is not None else None
        churn = schedule_actions(churn=[0.1] * spec.num_steps)  # a draw at every step

        def run(kind: str) -> Callable[[], Any]:
            def go() -> None:
                noise = (BatchNoise(n, device=device, dtype=dt, seed=0) if kind == "batch"
                         else PerSampleNoise(range(n), device=device, dtype=dt,
                                             prefetch=kind != "per_sample_no_prefetch",
                                             version=1 if kind == "per_sample_v1" else 2))
                with torch.inference_mode():
                    sample(spec.denoiser, sigmas, noise=noise, data_shape=shape, labels=labels,
                           actions=churn, dtype=dt)
            return go

        sample_s, sample_cpu = _interleaved({k: run(k) for k in sources}, args.noise_repeats,
                                            device)
        out.update(
            sample_ms={k: 1e3 * v for k, v in sample_s.items()},
            sample_cpu_ms={k: 1e3 * v for k, v in sample_cpu.items()},
            sample_ratio=sample_s["per_sample"] / sample_s["batch"],
            sample_ratio_cpu=sample_cpu["per_sample"] / sample_cpu["batch"],
            sample_ratio_no_prefetch=sample_s["per_sample_no_prefetch"] / sample_s["batch"],
            sample_ratio_v1=sample_s["per_sample_v1"] / sample_s["batch"],
        )
    return out


def bench_guided(task: str, spec: Task, args: argparse.Namespace, device: torch.device,
                 ) -> dict[str, Any] | None:
    """``sample`` with a guidance-interval schedule against plain Heun: measured time ratio over
    the ratio of counted NFE (``None`` for a task without a guide)."""
    if spec.guide is None:
        return None
    from diffgym.benchmarks.grid import IntervalFamily

    family = IntervalFamily.preset(spec, "small")
    point = family.points()[0]
    tables = family.tables(point, spec.sigmas(dtype=torch.float64))
    guided_steps = sum(w != 1.0 for w in tables["guidance"])
    n, dt = args.guided_n, spec.dtype
    sigmas = spec.sigmas(device)
    labels = spec.sample_labels(n, torch.Generator().manual_seed(0))
    labels = labels.to(device) if labels is not None else None
    nfe: dict[str, int] = {}

    def run(kind: str) -> Callable[[], Any]:
        actions = schedule_actions(**tables) if kind == "guided" else None

        def go() -> None:
            with torch.inference_mode():
                res = sample(spec.denoiser, sigmas, noise=BatchNoise(n, device=device, dtype=dt,
                             seed=0), data_shape=spec.data_shape, labels=labels,
                             guide=spec.guide if kind == "guided" else None, actions=actions,
                             dtype=dt)
            nfe[kind] = int(res.nfe.sum())
        return go

    repeats = args.task_repeats.get(task, args.repeats)
    secs, cpu = _interleaved({k: run(k) for k in ("plain", "guided")}, repeats, device)
    nfe_ratio = nfe["guided"] / nfe["plain"]
    time_ratio = secs["guided"] / secs["plain"]
    cpu_ratio = cpu["guided"] / cpu["plain"]
    return {
        "task": task, "n": n, "point": point, "guided_steps": guided_steps,
        "num_steps": spec.num_steps, "nfe": nfe, "seconds": secs, "cpu_seconds": cpu,
        "repeats": repeats, "time_ratio": time_ratio, "cpu_ratio": cpu_ratio,
        "nfe_ratio": nfe_ratio, "measured_over_predicted": time_ratio / nfe_ratio,
        "measured_over_predicted_cpu": cpu_ratio / nfe_ratio,
    }


class _TimedCalls:
    """The model, with the wall-clock seconds of its calls added to ``acc[0]`` and, with
    ``inside``, the number of its calls in progress in ``inside[0]``."""

    def __init__(self, model: Any, acc: list[float], device: torch.device,
                 inside: list[int] | None = None) -> None:
        self.model, self.acc, self.device = model, acc, device
        self.inside = [0] if inside is None else inside

    def __call__(self, *a: Any, **k: Any) -> Any:
        _sync(self.device)
        t0 = time.perf_counter()
        self.inside[0] += 1
        try:
            return self.model(*a, **k)
        finally:
            self.inside[0] -= 1
            _sync(self.device)
            self.acc[0] += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:  # sigma_data, num_classes, ...
        return getattr(self.model, name)


def count_step_ops(task: str, spec: Task, num_envs: int, device: torch.device,
                   warmup: int | None = None) -> dict[str, Any]:
    """Aten calls of one neutral ``SAME_STEP`` env step (after ``warmup`` steps; by default one
    episode and 3 steps, the steady state: the sampler keeps per-step levels it built in the
    first episode), outside the denoiser's and the guide's calls, by name."""
    from torch.utils._python_dispatch import TorchDispatchMode

    env = DiffusionSamplingEnv(spec, num_envs, device=device,
                               autoreset_mode=AutoresetMode.SAME_STEP)
    warmup = env.num_steps + 3 if warmup is None else warmup
    actions = env_actions(env, draw_actions(env, warmup + 1, "neutral"))
    step_actions = actions[warmup]  # indexed before counting: the caller's work
    inside = [0]  # open model calls: their operations are left out of the count
    ops: collections.Counter[str] = collections.Counter()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not inside[0]:
                ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    saved = env.task.denoiser, env._guide
    try:
        env.task.denoiser = _TimedCalls(saved[0], [0.0], device, inside)
        if saved[1] is not None:
            env._guide = _TimedCalls(saved[1], [0.0], device, inside)
        env.reset(seed=ENV_SEED)
        for t in range(warmup):
            env.step(actions[t])
        with Count():
            env.step(step_actions)
    finally:
        env.task.denoiser, env._guide = saved
        env.close()
    return {"task": task, "num_envs": num_envs, "ops_per_step": sum(ops.values()),
            "by_name": dict(sorted(ops.items()))}


def bench_split(task: str, spec: Task, num_envs: int, budget: Budget,
                device: torch.device) -> dict[str, Any]:
    """Per-step wall-clock of the Heun loop (``raw``) and of neutral env steps (``vector``),
    each split into model calls and the rest; medians of interleaved repeats."""
    env = DiffusionSamplingEnv(spec, num_envs, device=device,
                               autoreset_mode=AutoresetMode.SAME_STEP)
    actions = draw_actions(env, budget.steps, "neutral")
    acc = [0.0]
    parts: dict[str, list[float]] = {k: [0.0] for k in ("validate", "observe", "sampler_step")}
    saved = env.task.denoiser, env._guide, env_module.sampler_step
    runs: dict[str, list[tuple[float, float]]] = {"raw": [], "vector": []}
    split_parts: list[dict[str, float]] = []
    try:
        env.task.denoiser = _TimedCalls(saved[0], acc, device)
        if saved[1] is not None:
            env._guide = _TimedCalls(saved[1], acc, device)
        # the env's own parts (instance attributes shadow the methods; removed below)
        env._validate_actions = _TimedCalls(env._validate_actions, parts["validate"], device)
        env._observe = _TimedCalls(env._observe, parts["observe"], device)
        env_module.sampler_step = _TimedCalls(saved[2], parts["sampler_step"], device)
        runners = {"raw": heun_runner(env)[0], "vector": vector_runner(env, actions)}
        for runner in runners.values():
            run_timed(runner, min(budget.warmup, budget.steps), device)
        for r in range(budget.repeats):
            for mode in list(runners)[:: 1 if r % 2 == 0 else -1]:
                acc[0] = 0.0
                for v in parts.values():
                    v[0] = 0.0
                wall, _ = run_timed(runners[mode], budget.steps, device)
                runs[mode].append((wall, acc[0]))
                if mode == "vector":
                    split_parts.append({k: v[0] for k, v in parts.items()} | {"model": acc[0]})
    finally:
        env.task.denoiser, env._guide, env_module.sampler_step = saved
        env.__dict__.pop("_validate_actions", None)
        env.__dict__.pop("_observe", None)
        env.close()
    out: dict[str, Any] = {"task": task, "num_envs": num_envs, "steps": budget.steps,
                           "repeats": budget.repeats}
    us = 1e6 / budget.steps
    for mode, rr in runs.items():
        out[mode] = {"step_us": statistics.median(w for w, _ in rr) * us,
                     "model_us": statistics.median(m for _, m in rr) * us,
                     "outside_us": statistics.median(w - m for w, m in rr) * us}
    med = {k: statistics.median(p[k] for p in split_parts) * us for k in split_parts[0]}
    out["vector_parts_us"] = {  # medians over the repeats: the env's rest, by part
        "validate_actions": med["validate"], "observe": med["observe"],
        "sampler_step_outside_model": med["sampler_step"] - med["model"],
        "step_body": out["vector"]["outside_us"] - med["validate"] - med["observe"]
        - (med["sampler_step"] - med["model"])}
    raw, vec = out["raw"], out["vector"]
    out["vector_over_raw"] = raw["step_us"] / vec["step_us"]
    out["vector_over_raw_same_model"] = raw["step_us"] / (raw["model_us"] + vec["outside_us"])
    return out


def bench_paired(task: str, spec: Task, num_envs: int, episodes: int, pairs: int,
                 device: torch.device) -> dict[str, Any]:
    """The Heun loop and the neutral env alternated in chunks of ``episodes`` whole episodes,
    ``pairs`` times (the order swaps every pair); each pair's ratio ``raw / vector`` of wall-clock
    per step. A bootstrap of the pairs (fixed seed) gives a 95 % interval of the median."""
    env = DiffusionSamplingEnv(spec, num_envs, device=device,
                               autoreset_mode=AutoresetMode.SAME_STEP)
    steps = episodes * env.num_steps
    runners = {"raw": heun_runner(env)[0],
               "vector": vector_runner(env, draw_actions(env, steps, "neutral"))}
    for runner in runners.values():  # warm-up: the env builds its kept per-step levels here
        run_timed(runner, steps, device)
    walls: dict[str, list[float]] = {"raw": [], "vector": []}
    for p in range(pairs):
        for mode in ("raw", "vector") if p % 2 == 0 else ("vector", "raw"):
            walls[mode].append(run_timed(runners[mode], steps, device)[0])
    env.close()
    own = [r / v for r, v in zip(walls["raw"], walls["vector"])]
    gen = torch.Generator().manual_seed(BOOTSTRAP_SEED)
    picks = torch.randint(len(own), (BOOTSTRAP_RESAMPLES, len(own)), generator=gen).tolist()
    boot = sorted(statistics.median(own[i] for i in row) for row in picks)
    lo, hi = round(0.025 * BOOTSTRAP_RESAMPLES) - 1, round(0.975 * BOOTSTRAP_RESAMPLES) - 1
    q = statistics.quantiles(own, n=4) if len(own) > 1 else [own[0]] * 3
    us = 1e6 / steps
    return {"task": task, "num_envs": num_envs, "episodes_per_chunk": episodes,
            "steps_per_chunk": steps, "pairs": pairs,
            "raw_step_us": statistics.median(walls["raw"]) * us,
            "vector_step_us": statistics.median(walls["vector"]) * us,
            "vector_over_raw_paired": statistics.median(own),
            "vector_over_raw_quartiles": [q[0], q[2]],
            "vector_over_raw_ci95": [boot[lo], boot[hi]],
            "vector_over_raw_sums": sum(walls["raw"]) / sum(walls["vector"]),
            "raw_wall_s": walls["raw"], "vector_wall_s": walls["vector"]}


def _heun_nfe(env: DiffusionSamplingEnv, steps: int) -> list[int]:
    """``out[t]`` = NFE of the first ``t`` steps of the Heun loop (2 per sample, 1 at the last
    step of an episode)."""
    totals = [0]
    for t in range(steps):
        last = t % env.num_steps == env.num_steps - 1
        totals.append(totals[-1] + env.num_envs * (1 if last else 2))
    return totals


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``vector/raw``, ``vector/sync`` and ``sb3/vector`` per (task, num_envs), of wall-clock
    rates, and the first two also of process-CPU-time rates (``*_cpu``). ``vector/raw`` compares
    NFE per second (the same as transitions per second with neutral actions).
    ``vector_over_raw_paired`` is the median over repeats of each repeat's own ratio (the two
    modes run back to back in a repeat, so a change of machine speed between repeats cancels),
    with its smallest and largest value."""
    out = []
    keys = list(dict.fromkeys((r["task"], r["num_envs"]) for r in rows))  # in run order
    for task, n in keys:
        mine = {r["mode"]: r for r in rows if (r["task"], r["num_envs"]) == (task, n)}
        wall = {m: r["steps_per_s"] for m, r in mine.items()}
        cpu = {m: r["steps_per_cpu_s"] for m, r in mine.items()}
        for rates, key in ((wall, "median_wall_s"), (cpu, "median_cpu_s")):
            for m in ("vector", "raw"):  # NFE per second for (b)/(a)
                r = mine.get(m)
                rates[m + "_nfe"] = r["nfe"] / r[key] if r and r["nfe"] and r[key] else None
        v, a = mine.get("vector"), mine.get("raw")
        paired = [] if not (v and a and v["nfe"] and a["nfe"]) else [
            (v["nfe"] / wv) / (a["nfe"] / wa) for wv, wa in zip(v["wall_s"], a["wall_s"])
        ]
        out.append(
            {
                "task": task,
                "num_envs": n,
                "vector_over_raw": _ratio(wall.get("vector_nfe"), wall.get("raw_nfe")),
                "vector_over_raw_paired": statistics.median(paired) if paired else None,
                "vector_over_raw_paired_range": [min(paired), max(paired)] if paired else None,
                "vector_over_sync": _ratio(wall.get("vector"), wall.get("sync")),
                "sb3_over_vector": _ratio(wall.get("sb3"), wall.get("vector")),
                "vector_over_raw_cpu": _ratio(cpu.get("vector_nfe"), cpu.get("raw_nfe")),
                "vector_over_sync_cpu": _ratio(cpu.get("vector"), cpu.get("sync")),
            }
        )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def markdown_table(rows: list[dict[str, Any]], ratio_rows: list[dict[str, Any]]) -> str:
    """Steps/s (NFE/s) per mode (wall clock, median), and the ratios (wall clock and CPU time)."""

    def fmt(v: float | None) -> str:
        if v is None:
            return "—"
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    head = (
        "| task | envs | " + " | ".join(MODE_LABELS[m] for m in MODES)
        + " | (b)/(a) | (b)/(a) CPU | (b)/(d) | (b)/(d) CPU | (c)/(b) |"
    )
    lines = [head, "|" + "---|" * (2 + len(MODES) + 5)]
    for rr in ratio_rows:
        cells = []
        for m in MODES:
            r = next(
                r for r in rows
                if (r["task"], r["num_envs"], r["mode"]) == (rr["task"], rr["num_envs"], m)
            )
            cells.append(
                "skipped" if r["skipped"] else f"{fmt(r['steps_per_s'])} ({fmt(r['nfe_per_s'])})"
            )
        ratio_cells = [
            "—" if rr[k] is None else f"{rr[k]:.2f}"
            for k in (
                "vector_over_raw", "vector_over_raw_cpu", "vector_over_sync",
                "vector_over_sync_cpu", "sb3_over_vector",
            )
        ]
        lines.append(
            f"| {rr['task']} | {rr['num_envs']} | " + " | ".join(cells + ratio_cells) + " |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda[:N]'")
    p.add_argument("--tasks", nargs="+", default=["gmm2d", "digits"])
    p.add_argument("--num-envs", nargs="+", type=int, default=[1, 64, 256, 1024])
    p.add_argument("--steps", type=int, default=180, help="timed vector steps per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--task-steps", nargs="*", default=[], metavar="TASK=N",
        help="per-task --steps (e.g. digits=18: a network step is slow on a CPU)",
    )
    p.add_argument("--task-repeats", nargs="*", default=[], metavar="TASK=N")
    p.add_argument(
        "--warmup-fraction", type=float, default=0.1,
        help="untimed warm-up steps per mode, as a fraction of the task's steps (>= 1 step)",
    )
    p.add_argument(
        "--sync-max-envs", type=int, default=256, help="skip (d) above this many envs (slow)"
    )
    p.add_argument(
        "--sync-fraction", type=float, default=0.2,
        help="timed steps per repeat of (d), as a fraction of the task's steps (>= 1 step)",
    )
    p.add_argument("--sync-repeats", type=int, default=3, help="repeats for (d)")
    p.add_argument("--actions", choices=ACTION_KINDS, default="neutral",
                   help="pre-drawn actions of the throughput section")
    p.add_argument("--sections", nargs="+", choices=SECTIONS,
                   default=[s for s in SECTIONS if s != "paired"],
                   help="default: every section but paired (opt-in: hundreds of whole episodes)")
    p.add_argument("--noise-batch", type=int, default=2048, help="samples of the noise section")
    p.add_argument("--noise-draws", type=int, default=64,
                   help="draws per timed noise repeat (64: whole prefetched blocks, 32 draws "
                   "each at B = 2048 x 2, so that every repeat holds the same block work)")
    p.add_argument("--noise-repeats", type=int, default=5)
    p.add_argument("--noise-sample-tasks", nargs="*", default=["gmm2d"],
                   help="tasks whose whole-sample noise cost is timed (slow for networks)")
    p.add_argument("--guided-n", type=int, default=1024, help="samples of the guided section")
    p.add_argument("--pair-episodes", type=int, default=2,
                   help="whole episodes per chunk of the paired section")
    p.add_argument("--pairs", type=int, default=150, help="chunk pairs of the paired section")
    p.add_argument("--task-pairs", nargs="*", default=[], metavar="TASK=N",
                   help="per-task --pairs (e.g. digits=40: a network step is slow on a CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/env_throughput.json"))
    p.add_argument("--quick", action="store_true", help="tiny smoke run (overrides sizes)")
    args = p.parse_args(argv)
    args.task_steps = _task_ints(p, "--task-steps", args.task_steps)
    args.task_repeats = _task_ints(p, "--task-repeats", args.task_repeats)
    args.task_pairs = _task_ints(p, "--task-pairs", args.task_pairs)
    if args.quick:
        args.num_envs = [1, 4]
        args.steps, args.repeats, args.sync_repeats, args.sync_max_envs = 4, 1, 1, 4
        args.task_steps, args.task_repeats = {}, {}
        args.noise_batch, args.noise_draws, args.noise_repeats, args.guided_n = 16, 2, 1, 8
        args.pair_episodes, args.pairs, args.task_pairs = 1, 3, {}
    for name in ("steps", "repeats", "sync_repeats", "noise_batch", "noise_draws",
                 "noise_repeats", "guided_n", "pair_episodes", "pairs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("warmup_fraction", "sync_fraction"):
        if not 0 < getattr(args, name) <= 1:
            p.error(f"--{name.replace('_', '-')} must be in (0, 1]")
    if any(n < 1 for n in args.num_envs):
        p.error("--num-envs must all be >= 1")
    return args


def _task_ints(p: argparse.ArgumentParser, flag: str, items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        task, _, value = item.partition("=")
        if not task or not value.isdigit() or int(value) < 1:
            p.error(f"{flag} takes TASK=N with N >= 1, got {item!r}")
        out[task] = int(value)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: list[dict[str, Any]] = []
    payload: dict[str, Any] = {
        "benchmark": "env_throughput",
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
        "machine": describe_machine(device),
        "settings": {
            "device": str(device),
            "tasks": args.tasks,
            "num_envs": args.num_envs,
            "steps": args.steps,
            "repeats": args.repeats,
            "task_steps": args.task_steps,
            "task_repeats": args.task_repeats,
            "warmup_fraction": args.warmup_fraction,
            "sync_max_envs": args.sync_max_envs,
            "sync_fraction": args.sync_fraction,
            "sync_repeats": args.sync_repeats,
            "quick": args.quick,
            "action_seed": ACTION_SEED,
            "env_seed": ENV_SEED,
            "actions": args.actions,
            "actions_meaning": {
                "neutral": "every knob at menu index 0 (EDM's deterministic Heun step)",
                "random": "uniform random menu indices per knob, pre-drawn, same for every mode",
            }[args.actions],
            "sections": args.sections,
            "noise_batch": args.noise_batch,
            "noise_draws": args.noise_draws,
            "noise_repeats": args.noise_repeats,
            "noise_sample_tasks": args.noise_sample_tasks,
            "guided_n": args.guided_n,
            "pair_episodes": args.pair_episodes,
            "pairs": args.pairs,
            "task_pairs": args.task_pairs,
            "statistic": "median over interleaved repeats (mode order rotates each round)",
            "cpu_time": "time.process_time of this process (all its threads)",
            "steps_per_s": "sub-env transitions per second (num_envs per vector step)",
        },
        "budgets": {},
        "skipped_tasks": {},
        "targets": {
            "vector_over_raw_at_1024": TARGET_VECTOR_OVER_RAW,
            "vector_over_sync_at_256": TARGET_VECTOR_OVER_SYNC,
            "per_sample_over_batch_noise": TARGET_NOISE_RATIO,
            "guided_measured_over_predicted_tolerance": TARGET_GUIDED_TOLERANCE,
        },
        "results": rows,
        "ratios": [],
        "noise": [],
        "guided": [],
        "ops": [],
        "split": [],
        "paired": [],
    }
    for task in args.tasks:
        try:
            spec = resolve_task(task)
        except FileNotFoundError as err:  # e.g. digits weights not trained yet
            payload["skipped_tasks"][task] = f"task unavailable: {err}"
            print(f"skipping {task}: {err}", file=sys.stderr)
            continue
        budget = Budget.for_task(task, args)
        payload["budgets"][task] = dataclasses.asdict(budget)
        spec = spec.to(device)
        if "throughput" in args.sections:
            for n in args.num_envs:
                print(f"{task}, {n} envs ...", file=sys.stderr, flush=True)
                rows.extend(bench_one(task, spec, n, budget, args, device))
                payload["ratios"] = ratios(rows)
                atomic_write_json(args.out, payload)  # partial results survive an interruption
        if "noise" in args.sections:
            print(f"{task}, noise ...", file=sys.stderr, flush=True)
            payload["noise"].append(bench_noise(task, spec, args, device))
            atomic_write_json(args.out, payload)
        if "guided" in args.sections:
            print(f"{task}, guided schedule ...", file=sys.stderr, flush=True)
            guided = bench_guided(task, spec, args, device)
            if guided is not None:
                payload["guided"].append(guided)
            atomic_write_json(args.out, payload)
        if "ops" in args.sections:
            payload["ops"].append(count_step_ops(task, spec, max(args.num_envs), device))
            atomic_write_json(args.out, payload)
        if "split" in args.sections:
            print(f"{task}, split ...", file=sys.stderr, flush=True)
            payload["split"].append(bench_split(task, spec, max(args.num_envs), budget, device))
            atomic_write_json(args.out, payload)
        if "paired" in args.sections:
            print(f"{task}, paired ...", file=sys.stderr, flush=True)
            pairs = args.task_pairs.get(task, args.pairs)
            payload["paired"].append(bench_paired(task, spec, max(args.num_envs),
                                                  args.pair_episodes, pairs, device))
            atomic_write_json(args.out, payload)
    payload["complete"] = True
    payload["ratios"] = ratios(rows)
    atomic_write_json(args.out, payload)
    if rows:
        print(markdown_table(rows, payload["ratios"]))
        for rr in payload["ratios"]:
            if rr["vector_over_raw_paired"] is not None:
                lo, hi = rr["vector_over_raw_paired_range"]
                print(f"(b)/(a) paired by repeat, {rr['task']}, {rr['num_envs']} envs: median "
                      f"{rr['vector_over_raw_paired']:.2f} ({lo:.2f}..{hi:.2f})")
    for r in payload["noise"]:
        ms = r["draw_ms"]
        line = (f"\nnoise, {r['task']}, B={r['batch']}: one draw {ms['per_sample']:.3f} ms "
                f"per-sample vs {ms['batch']:.3f} ms batch ({r['draw_ratio']:.2f}x; CPU time "
                f"{r['draw_ratio_cpu']:.2f}x; without prefetching "
                f"{r['draw_ratio_no_prefetch']:.2f}x; version 1 {r['draw_ratio_v1']:.2f}x)")
        if "sample_ratio" in r:
            line += (f"; whole sample (churn) {r['sample_ms']['per_sample']:.1f} ms vs "
                     f"{r['sample_ms']['batch']:.1f} ms ({r['sample_ratio']:.2f}x; CPU time "
                     f"{r['sample_ratio_cpu']:.2f}x; without prefetching "
                     f"{r['sample_ratio_no_prefetch']:.2f}x; version 1 "
                     f"{r['sample_ratio_v1']:.2f}x)")
        print(line)
    for r in payload["guided"]:
        print(
            f"\nguided, {r['task']}: {r['guided_steps']} of {r['num_steps']} steps guided, "
            f"NFE x{r['nfe_ratio']:.3f}, time x{r['time_ratio']:.3f}: measured / predicted "
            f"{r['measured_over_predicted']:.3f} (CPU time {r['measured_over_predicted_cpu']:.3f})"
        )
    for r in payload["ops"]:
        print(f"\nops, {r['task']}, {r['num_envs']} envs: {r['ops_per_step']} tensor operations "
              "per neutral env step outside the denoiser")
    for r in payload["split"]:
        raw, vec = r["raw"], r["vector"]
        print(f"\nsplit, {r['task']}, {r['num_envs']} envs, us per step (model + outside): Heun "
              f"loop {raw['model_us']:.0f} + {raw['outside_us']:.0f}, env {vec['model_us']:.0f} + "
              f"{vec['outside_us']:.0f}; env/Heun {r['vector_over_raw']:.2f}, with the loop's "
              f"model time {r['vector_over_raw_same_model']:.2f}; the env's rest: "
              + ", ".join(f"{k} {v:.0f}" for k, v in r["vector_parts_us"].items()))
    for r in payload["paired"]:
        (q1, q3), (lo, hi) = r["vector_over_raw_quartiles"], r["vector_over_raw_ci95"]
        print(f"\npaired, {r['task']}, {r['num_envs']} envs: {r['pairs']} pairs of "
              f"{r['steps_per_chunk']} steps, env/Heun median {r['vector_over_raw_paired']:.3f} "
              f"(95 % CI {lo:.3f}..{hi:.3f}; quartiles {q1:.3f}..{q3:.3f}), of the sums "
              f"{r['vector_over_raw_sums']:.3f}; Heun {r['raw_step_us']:.0f} us, env "
              f"{r['vector_step_us']:.0f} us per step")
    print(
        f"\nsteps/s (NFE/s), wall-clock medians; machine: {payload['machine']['cpu']}, "
        f"{payload['machine']['torch_threads']} torch threads, torch {torch.__version__}, "
        f"device {device}; written to {args.out}"
    )
    return payload


if __name__ == "__main__":
    main()
