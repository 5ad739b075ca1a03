"""The stored parts of a comparison (design §5): its cache of evaluations (``evals.json``), the
samples kept for its plots, and the training runs behind its learned rows (trained, resumed from a
checkpoint, or loaded when finished) with their policies' evaluations."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffgym.agents.cost import Cost
from diffgym.benchmarks.evaluate import (
    ACTION_SEED_OFFSET,
    METRIC_DIRECTIONS,
    TrainingEvaluator,
    evaluate_sampler,
    finite_or_none,
)
from diffgym.benchmarks.report import KNOB_FIELDS
from diffgym.envs.io import atomic_save_npz, atomic_write_json, locked
from diffgym.envs.noise import noise_key_fields
from diffgym.envs.sampler import Knobs, PerSampleNoise, SampleResult
from diffgym.envs.tasks import Task

__all__ = [
    "EVALS_FORMAT",
    "EvalCache",
    "ProfileRecorder",
    "TrainedRun",
    "check_inference_guard",
    "choose_inference",
    "evaluate_policy",
    "evaluation_record",
    "load_samples_npz",
    "save_samples_npz",
    "train_or_load",
]

log = logging.getLogger(__name__)

EVALS_FORMAT = "diffgym-compare-evals/1"
NEUTRAL = {"churn": 0.0, "guidance": 1.0, "renoise": 0.0}


# --------------------------------------------------------------------------------------------
# Evaluations (cached in out_dir/evals.json)
# --------------------------------------------------------------------------------------------


class EvalCache:
    """Finished evaluations by key, rewritten atomically after each new one."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.num_new = 0
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path} is not valid JSON ({err}); remove it to start over"
                ) from err
            if data.get("format") != EVALS_FORMAT:
                raise ValueError(f"{path} is not a {EVALS_FORMAT} file; remove it to start over")
            self.records = dict(data["evals"])

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Add a record and rewrite the file under its lock, keeping what another writer (a
        concurrent comparison in the same folder) has added meanwhile."""
        self.records[key] = record
        self.num_new += 1
        if self.path is None:
            return
        with locked(self.path.with_suffix(".lock")):
            if self.path.is_file():
                try:
                    data = json.loads(self.path.read_text())
                except json.JSONDecodeError:
                    data = {}
                for k, v in data.get("evals", {}).items():
                    self.records.setdefault(k, v)
            atomic_write_json(
                self.path, finite_or_none({"format": EVALS_FORMAT, "evals": self.records})
            )


class ProfileRecorder:
    """Wraps an action function; sums each knob's level per step index over active samples."""

    def __init__(self, act: Callable[..., Knobs], num_steps: int, advance: int = 1) -> None:
        self.act = act
        self.advance = advance  # the neutral step, recorded where a level is never visited
        self.num_steps = num_steps
        self.counts = torch.zeros(num_steps, dtype=torch.float64)
        self.sums: dict[str, torch.Tensor] = {}

    def __call__(self, x, step_index, budget, labels) -> Knobs:
        with torch.no_grad():
            knobs = self.act(x, step_index, budget, labels)
        active = step_index < self.num_steps
        idx = step_index[active].cpu()
        self.counts.index_add_(0, idx, torch.ones(idx.shape[0], dtype=torch.float64))
        for name in KNOB_FIELDS:
            value = getattr(knobs, name)
            if value is None:
                continue
            total = self.sums.setdefault(name, torch.zeros(self.num_steps, dtype=torch.float64))
            total.index_add_(0, idx, value[active].detach().cpu().double())
        return knobs

    def profile(self) -> dict[str, Any]:
        """``{"counts": [N], knob: [N] mean level per step}`` (neutral where never visited)."""
        seen = self.counts > 0
        out: dict[str, Any] = {"counts": self.counts.tolist()}
        for name, total in self.sums.items():
            neutral = NEUTRAL.get(name, float(self.advance))
            mean = torch.where(seen, total / self.counts.clamp_min(1), neutral)
            out[name] = mean.tolist()
        return out


def evaluation_record(ev, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metrics": ev.metrics,
        "nfe_per_sample": float(ev.result.nfe.double().mean()),
        "cost": ev.cost.to_dict(),
        **(extra or {}),
    }


def save_samples_npz(path: Path | None, result: SampleResult) -> None:
    if path is None:
        return
    atomic_save_npz(
        path,
        x=result.x.detach().cpu().numpy(),
        labels=None if result.labels is None else result.labels.detach().cpu().numpy(),
    )


def load_samples_npz(path: Path | None) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    if path is None or not path.is_file():
        return None
    with np.load(path) as data:
        x = torch.from_numpy(data["x"])
        labels = torch.from_numpy(data["labels"]) if "labels" in data else None
    return x, labels




# --------------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------------


@dataclass
class TrainedRun:
    """A finished training run: its policy, cost and directory."""

    run_dir: Path
    config: Any
    policy: Any
    cost: Cost
    model_sha256: str
    trained_now: bool




def evaluate_policy(
    *,
    run: Any,
    config: Any,
    method: str,
    task: Task,
    task_fp: str,
    n: int,
    device: str,
    cache: Any,
    tau: float | None,
    seed: int,
    samples_path: Path | None = None,
    panels: dict | None = None,
) -> tuple[str, dict[str, Any], Any]:
    """Evaluate a trained policy at inference temperature ``tau`` (None: greedy) on ``seed``
    with per-sample action noise (sample b's choices depend only on its own seed: common random
    numbers); cached in ``cache``. With ``panels``, the samples are saved/loaded for the plots.

    Returns:
        ``(cache key, evaluation record, the PolicySampler)``.
    """
    from diffgym.agents.policy_sampling import PolicySampler

    key = hashlib.sha256(
        json.dumps(
            {"model": run.model_sha256, "config": config.fingerprint(), "task": task_fp,
             "n": n, "seed": seed, "temperature": tau, **noise_key_fields()},
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    sampler = PolicySampler(run.policy, task, device=device, greedy=tau is None,
                            temperature=tau or 1.0)
    record = cache.get(key)
    if record is None:
        action_noise = PerSampleNoise(
            [ACTION_SEED_OFFSET + seed + b for b in range(n)], device=device
        )
        recorder = ProfileRecorder(sampler.actions(action_noise), task.base_steps,
                                   task.schedule_factor)
        ev = evaluate_sampler(
            task,
            recorder,
            n=n,
            seed=seed,
            guided="guidance" in sampler.knob_names,
            renoise_budget=sampler.renoise_budget,
            device=device,
            base_grid=True,  # as the policy walks it (the task's schedule without a step knob)
        )
        record = evaluation_record(
            ev, {"method": method, "run": run.run_dir.name, "profile": recorder.profile(),
                 "temperature": tau}
        )
        cache.put(key, record)
        if panels is not None:
            save_samples_npz(samples_path, ev.result)
            panels[method] = (ev.result.x, ev.result.labels)
    elif panels is not None and (loaded := load_samples_npz(samples_path)) is not None:
        panels[method] = loaded
    return key, record, sampler


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()




def train_or_load(config, run_dir: Path, *, device: str, progress: bool) -> TrainedRun:
    """Load a finished run, resume an interrupted one from its checkpoint, or train a new one
    (with the protocol's :class:`~diffgym.benchmarks.evaluate.TrainingEvaluator` injected).

    Raises:
        ValueError: ``run_dir`` holds a run with another config.
    """
    from diffgym.agents.registry import AGENTS
    from diffgym.agents.train import TrainingRun, load_run_config, read_cost

    if (run_dir / "config.json").is_file():
        stored = load_run_config(run_dir)
        if stored.fingerprint() != config.fingerprint():
            diff = {
                k: (v, config.to_dict()[k])
                for k, v in stored.to_dict().items()
                if v != config.to_dict()[k]
            }
            raise ValueError(
                f"{run_dir} holds a run with another config (stored vs wanted: {diff}); use "
                f"another out_dir or remove that run"
            )
    trained_now = False
    if not (run_dir / "final_metrics.json").is_file():
        evaluator = TrainingEvaluator()
        if (run_dir / "checkpoints" / "latest.json").is_file():
            log.info("resuming %s from its latest checkpoint", run_dir)
            run = TrainingRun(None, run_dir, resume=True, progress=progress, evaluator=evaluator)
        else:
            if run_dir.exists() and any(run_dir.iterdir()):
                warnings.warn(
                    f"{run_dir} holds an unfinished run without a checkpoint; starting it over",
                    stacklevel=3,
                )
                shutil.rmtree(run_dir)
            run = TrainingRun(config, run_dir, progress=progress, evaluator=evaluator)
        run.train()
        trained_now = True
    model_path = run_dir / "final_model.zip"
    algo = AGENTS[config.agent].load(str(model_path), device=device)
    return TrainedRun(
        run_dir=run_dir,
        config=config,
        policy=algo.policy,
        cost=read_cost(run_dir),
        model_sha256=_sha256(model_path),
        trained_now=trained_now,
    )


def check_inference_guard(guard: str, default_metrics: Mapping[str, float] | None,
                          task_name: str | None = None) -> Mapping[str, float]:
    """The default sampler's search-seed metrics, the guard's reference.

    Raises:
        ValueError: no default sampler row to compare with, or ``guard`` is not one of its
            metrics (the message lists them).
    """
    if not default_metrics:
        raise ValueError(f"inference guard {guard!r} needs the default sampler's row; this "
                         f"comparison has none")
    if guard not in default_metrics:
        of = f"task {task_name!r}" if task_name else "the default sampler's evaluation"
        raise ValueError(f"inference guard {guard!r} is not a metric of {of}; its metrics: "
                         f"{', '.join(default_metrics)}")
    return default_metrics


def choose_inference(
    selection: Mapping[float | None, Mapping[str, Any]], metric: str, direction: str,
    guard: str | None = None, default_metrics: Mapping[str, float] | None = None,
) -> tuple[float | None, bool]:
    """A learned run's inference, from its search-seed evaluations ``selection`` (temperature ->
    record; ``None`` is greedy): ``(tau, use the default sampler)``.

    Without ``guard``: the temperature with the best ``metric`` (``direction`` ``"min"`` or
    ``"max"``). With ``guard`` (a metric name): the best ``metric`` among the temperatures whose
    ``guard`` is no worse than the default sampler's (``default_metrics``, the same search seed)
    and the default sampler itself; the default sampler when no temperature qualifies or it
    scores best.
    """
    sign = 1.0 if direction == "min" else -1.0
    primary = lambda t: sign * selection[t]["metrics"][metric]  # noqa: E731
    if guard is None:
        return min(selection, key=primary), False
    ref = check_inference_guard(guard, default_metrics)
    g = 1.0 if METRIC_DIRECTIONS[guard] == "min" else -1.0
    ok = [t for t in selection if g * selection[t]["metrics"][guard] <= g * ref[guard]]
    if not ok:
        return None, True
    best = min(ok, key=primary)  # None is greedy
    return (None, True) if primary(best) > sign * ref[metric] else (best, False)
