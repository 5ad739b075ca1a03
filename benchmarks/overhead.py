"""Inference overhead of policy-guided sampling over a fixed per-step schedule (design §5).

One measurement, used by the comparison (on each learned method's first seed, against the fixed
schedule of the policy's per-step mean knob levels) and by ``benchmarks/scripts/
inference_overhead.py`` (against the same levels the policy is forced to choose, so both paths
produce identical samples). Both paths share the noise, labels, guide, renoise budget and step
function; the difference is the policy path (featurising the state, the actor, the argmax).
Repeats are interleaved (order alternating), after warm-up runs; medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from diffgym.benchmarks.evaluate import eval_labels
from diffgym.envs.sampler import BatchNoise, SampleResult, sample, schedule_actions

__all__ = ["measure_inference_overhead", "profile_schedule"]


def measure_inference_overhead(
    sampler: Any,
    schedule: Mapping[str, Sequence[float]],
    *,
    n: int,
    seed: int = 0,
    repeats: int = 5,
    warmup: int = 1,
) -> dict[str, Any]:
    """Wall-clock and CPU time of policy-guided sampling over a fixed schedule, same batch, noise,
    labels and guide.

    Args:
        sampler: a :class:`~diffgym.agents.policy_sampling.PolicySampler` (greedy or stochastic).
        schedule: per-step tables for :func:`~diffgym.envs.sampler.schedule_actions`, each of
            length N.
        n: samples per run; seed: noise and label seed.
        repeats: timed runs per path, interleaved (order alternating); warmup: untimed runs.

    Returns:
        ``policy_s`` / ``schedule_s`` (medians), ``*_transitions`` (sampler loop iterations),
        ``*_nfe_per_sample``, every timing (``times_s``, process CPU ``cpu_s``),
        ``overhead_pct`` = 100 (policy time per transition / schedule time per transition - 1),
        ``paired_overhead_pct`` (median of per-repeat ratios), ``cpu_overhead_pct`` and
        ``identical_samples`` (both paths gave the same samples and NFE in every repeat).

    Raises:
        ValueError: ``repeats < 1`` or ``warmup < 0``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    task = sampler.task
    device = sampler.device
    labels = eval_labels(task, n, seed)
    if labels is not None:
        labels = labels.to(device)
    guide = task.guide if "guidance" in sampler.knob_names else None
    actions = schedule_actions(**schedule)

    def noise() -> BatchNoise:
        return BatchNoise(n, device=device, dtype=task.dtype, seed=seed)

    def run_policy() -> SampleResult:
        return sampler.sample(noise=noise(), labels=labels)

    def run_schedule() -> SampleResult:
        with torch.inference_mode():
            return sample(
                task.denoiser,
                sampler.sigmas,
                noise=noise(),
                data_shape=task.data_shape,
                labels=labels,
                guide=guide,
                actions=actions,
                renoise_budget=sampler.renoise_budget,
                dtype=task.dtype,
                advance=sampler.action_menus.schedule_factor,  # the default walk of its grid
            )

    def sync() -> None:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    paths = {"policy": run_policy, "schedule": run_schedule}
    for _ in range(warmup):
        run_policy()
        run_schedule()
    times: dict[str, list[float]] = {"policy": [], "schedule": []}
    cpu: dict[str, list[float]] = {"policy": [], "schedule": []}
    last: dict[str, SampleResult] = {}
    identical = True
    for r in range(repeats):
        for name in ("policy", "schedule") if r % 2 == 0 else ("schedule", "policy"):
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            last[name] = paths[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        identical &= bool(torch.equal(last["policy"].x, last["schedule"].x))
        identical &= bool(torch.equal(last["policy"].nfe, last["schedule"].nfe))
    med = {k: statistics.median(v) for k, v in times.items()}
    trans = {k: int(v.steps.max()) for k, v in last.items()}
    per_transition = {k: med[k] / max(trans[k], 1) for k in med}
    ratios = [p / s for p, s in zip(times["policy"], times["schedule"])]
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "n": n,
        "repeats": repeats,
        "policy_s": med["policy"],
        "schedule_s": med["schedule"],
        "policy_transitions": trans["policy"],
        "schedule_transitions": trans["schedule"],
        "policy_nfe_per_sample": float(last["policy"].nfe.double().mean()),
        "schedule_nfe_per_sample": float(last["schedule"].nfe.double().mean()),
        "times_s": times,
        "cpu_s": cpu,
        "overhead_pct": 100.0 * (per_transition["policy"] / per_transition["schedule"] - 1.0),
        "paired_overhead_pct": 100.0 * (statistics.median(ratios) - 1.0),
        "cpu_overhead_pct": 100.0 * (cpu_med["policy"] / cpu_med["schedule"] - 1.0),
        "identical_samples": identical,
    }


def profile_schedule(profile: Mapping[str, Any], num_steps: int) -> dict[str, list[float]]:
    """The fixed schedule of a policy's per-step mean churn and guidance (renoise left out)."""
    schedule = {k: list(profile[k]) for k in ("churn", "guidance") if k in profile}
    return schedule or {"churn": [0.0] * num_steps}
