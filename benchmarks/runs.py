"""The stored parts of a comparison (design §5): its cache of evaluations (``evals.json``), the
samples kept for its plots, and the training runs behind its learned rows (trained, resumed from a
checkpoint, or loaded when finished) with their policies' evaluations."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import numbers
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
from diffgym.benchmarks.paired_guard import MODES_FIELD, guard_allowance, has_modes, record_modes
from diffgym.benchmarks.report import (
    INFERENCE_RULES_ALLOWED,
    KNOB_FIELDS,
    MEAN_ACTION,
    RESHAPE_KEYS,
    SCHEDULE_KEYS,
    plain_rule,
    rule_schedule,
    split_rule,
    tau_name,
)
from diffgym.envs.io import atomic_save_npz, atomic_write_json, locked
from diffgym.envs.noise import noise_key_fields
from diffgym.envs.sampler import Knobs, PerSampleNoise, SampleResult
from diffgym.envs.tasks import Task

__all__ = [
    "EVALS_FORMAT",
    "EvalCache",
    "ProfileRecorder",
    "TrainedRun",
    "check_guard_fallbacks",
    "check_inference_guard",
    "choose_inference",
    "evaluate_policy",
    "evaluation_record",
    "load_samples_npz",
    "save_samples_npz",
    "search_inference",
    "search_reference",
    "train_or_load",
    "unreshaped",
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
        concurrent comparison in the same folder) has added meanwhile. ``num_new`` counts new
        keys: a record put again (e.g. with its overhead measurement added) counts once."""
        self.num_new += key not in self.records
        self.records[key] = record
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
        "nfe_per_sample": ev.nfe_per_sample,
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
    round: int | None = None
    """The checkpoint round whose policy this is (``None``: the final model)."""

    def total_rounds(self) -> int:
        """The run's length in rounds (its last checkpoint's round)."""
        latest = self.run_dir / "checkpoints" / "latest.json"
        try:
            return int(json.loads(latest.read_text())["round"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{latest} cannot be read ({err}): the run's length is unknown"
                             ) from err

    def at_milestones(self, milestones: int) -> list[TrainedRun]:
        """The run at each of its ``milestones`` checkpoint rounds
        (:func:`~diffgym.agents.checkpoint.milestone_rounds`), oldest first; the last is this
        final model itself. A checkpoint's policy is the final model's with the checkpoint's
        weights, and its ``model_sha256`` the checkpoint file's (so its evaluations are cached
        apart).

        Raises:
            ValueError: a milestone checkpoint is missing (the run was trained with fewer
                ``keep_milestones``), naming the rounds and the folder.
            CheckpointError: a milestone checkpoint is corrupt.
        """
        from diffgym.agents.checkpoint import checkpoint_path, checkpoint_policy, milestone_rounds

        total = self.total_rounds()
        rounds = milestone_rounds(total, milestones)
        if len(rounds) < milestones:
            log.warning("%s has %d rounds: choosing among %d checkpoints, not %d", self.run_dir,
                        total, len(rounds), milestones)
        ckpt_dir = self.run_dir / "checkpoints"
        missing = [r for r in rounds[:-1] if not checkpoint_path(ckpt_dir, r).is_file()]
        if missing:
            raise ValueError(
                f"{self.run_dir} lacks the checkpoints of rounds {missing} that selecting among "
                f"{milestones} checkpoints needs (it was trained without those milestones); "
                f"use another out_dir or remove that run"
            )
        out = []
        for r in rounds[:-1]:
            path = checkpoint_path(ckpt_dir, r)
            policy = checkpoint_policy(self.policy, path, self.config.fingerprint())
            out.append(dataclasses.replace(self, policy=policy, model_sha256=_sha256(path),
                                           trained_now=False, round=r))
        return [*out, dataclasses.replace(self, round=total)]


def rule_task(task: Task, tau: float | str | None) -> Task:
    """The task an inference rule samples: ``task`` itself, or with the fields of the rule's
    schedule keys replaced (``"mean:cut=1,smin=0.3"``: ``task.replace(sigma_min=0.3)``, the
    same number of steps). ValueError (the task's own validation, naming the rule) when the
    schedule it gives is not valid."""
    changes = rule_schedule(tau)
    if all(getattr(task, k) == v for k, v in changes.items()):  # none, or already that schedule
        return task
    try:
        return task.replace(**changes)
    except ValueError as err:
        raise ValueError(f"inference rule {tau!r} on task {task.name!r}: {err}") from err


def inference_sampler(policy: Any, task: Task, tau: float | str | None, *,
                      device: str | None = None) -> Any:
    """The :class:`~diffgym.agents.policy_sampling.PolicySampler` of inference rule ``tau``
    (None: greedy; ``"mean"``: the mean action at tau = 1; else the temperature), on the rule's
    task (:func:`rule_task`)."""
    from diffgym.agents.policy_sampling import PolicySampler

    task = rule_task(task, tau)
    tau, reshape = split_rule(tau)
    mean = tau == MEAN_ACTION
    return PolicySampler(policy, task, device=device, greedy=tau is None,
                         temperature=1.0 if mean or tau is None else float(tau), mean_action=mean,
                         **reshape)


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
    tau: float | str | None,
    seed: int,
    samples_path: Path | None = None,
    panels: dict | None = None,
    modes: bool = False,
) -> tuple[str, dict[str, Any], Any]:
    """Evaluate a trained policy at inference temperature ``tau`` (None: greedy; ``"mean"``,
    :data:`~diffgym.benchmarks.report.MEAN_ACTION`: the mean action at tau = 1) on ``seed``
    with per-sample action noise (sample b's choices depend only on its own seed: common random
    numbers); cached in ``cache``. With ``panels``, the samples are saved/loaded for the plots.
    With ``modes``, the record also holds each sample's mode
    (:func:`~diffgym.benchmarks.paired_guard.record_modes`; a cached record without them is
    evaluated again).

    Returns:
        ``(cache key, evaluation record, the PolicySampler)``.
    """
    key = hashlib.sha256(
        json.dumps(
            {"model": run.model_sha256, "config": config.fingerprint(), "task": task_fp,
             "n": n, "seed": seed, "temperature": tau, **noise_key_fields()},
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    task = rule_task(task, tau)  # the schedule the rule samples (its own cache key: tau)
    sampler = inference_sampler(run.policy, task, tau, device=device)
    record = cache.get(key)
    if record is not None and modes and MODES_FIELD not in record and has_modes(task):
        record = None  # cached before per-sample modes were asked for: evaluate again
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
                 "temperature": tau, **(record_modes(task, ev.result.x) if modes else {})}
        )
        cache.put(key, record)
        if panels is not None:
            save_samples_npz(samples_path, ev.result)
            panels[method] = (ev.result.x, ev.result.labels)
    elif panels is not None and (loaded := load_samples_npz(samples_path)) is not None:
        panels[method] = loaded
    return key, record, sampler


def guard_reference(task: Task, task_fp: str, n: int, *, seed: int, device: str,
                    cache: Any, modes: bool = False) -> dict[str, Any]:
    """The default sampler on ``seed`` with ``n`` samples (scored as the grid's default point,
    :func:`~diffgym.benchmarks.grid.evaluate_point`): the inference guard's reference when the
    learned candidates are scored on ``selection_n`` samples (or, with ``modes``, paired with
    them: the record then also holds each sample's mode,
    :func:`~diffgym.benchmarks.paired_guard.record_modes`); cached in ``cache``."""
    key = hashlib.sha256(json.dumps(
        {"guard_reference": "default", "task": task_fp, "n": n, "seed": seed,
         **noise_key_fields()}, sort_keys=True).encode()).hexdigest()[:16]
    record = cache.get(key)
    if record is not None and modes and MODES_FIELD not in record and has_modes(task):
        record = None  # cached before per-sample modes were asked for: evaluate again
    if record is None:  # the grid's default point: no actions, unguided, its cost category
        ev = evaluate_sampler(task, None, n=n, seed=seed, device=device, category="grid_point")
        record = {"metrics": ev.metrics, "cost": ev.cost.to_dict(), "method": "default", "n": n,
                  **(record_modes(task, ev.result.x) if modes else {})}
        cache.put(key, record)
    return record


def search_reference(
    task: Task, task_fp: str, default: tuple[Mapping[str, float], Cost] | None, *,
    guard: str | None, n: int, n_eval: int, guard_se: float, seed: int, device: str,
    cache: Any,
) -> tuple[tuple[Mapping[str, float], Cost] | None, Callable[[Mapping], float] | None]:
    """The inference guard's reference on the search seed ``seed`` and its allowance function:
    ``((metrics, cost) | None, allowance | None)``.

    The reference is the default sampler's grid point ``default`` when the candidates are
    scored on ``n == n_eval`` samples, else :func:`guard_reference` on ``n`` samples; with
    ``guard_se > 0`` always :func:`guard_reference` with per-sample modes, and the allowance is
    ``guard_se`` paired standard errors of a candidate's record against it
    (:func:`~diffgym.benchmarks.paired_guard.guard_allowance`; ``None`` otherwise).
    """
    if guard is None or (guard_se == 0 and n == n_eval):
        return default, None
    ref = guard_reference(task, task_fp, n, seed=seed, device=device, cache=cache,
                          modes=guard_se > 0)  # as many samples (paired: the same ones)
    allowance = None if guard_se == 0 else (
        lambda r: guard_allowance(r, ref, task.target.weights, guard_se))
    return (ref["metrics"], Cost.from_dict(ref["cost"])), allowance


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()




def train_or_load(config, run_dir: Path, *, device: str, progress: bool) -> TrainedRun:
    """Load a finished run, resume an interrupted one from its checkpoint, or train a new one
    (with the protocol's :class:`~diffgym.benchmarks.evaluate.TrainingEvaluator` injected).

    Raises:
        ValueError: ``run_dir`` holds a run with another config, or an interrupted run with
            another ``keep_milestones`` (it would resume with its own).
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
            kept = load_run_config(run_dir).keep_milestones
            if kept != config.keep_milestones:  # a resumed run keeps its stored setting
                raise ValueError(
                    f"{run_dir} holds an interrupted run that keeps {kept} milestone "
                    f"checkpoints, {config.keep_milestones} wanted; finish it with its own "
                    f"setting, or remove that run"
                )
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


def _reshaped_rule(v: str) -> str:
    """``"RULE:f=A,cut=C"`` normalised (the base rule's text, then ``f`` and ``cut`` in that
    order, numbers to 12 significant digits); ValueError names a bad part."""
    base_text, spec = v.split(":", 1)
    base = plain_rule(base_text)
    values: dict[str, float] = {}
    for item in spec.split(","):
        key, eq, number = item.strip().partition("=")
        try:
            x = float(number) if eq else math.nan
        except ValueError:
            x = math.nan
        ok = (key in RESHAPE_KEYS or key in SCHEDULE_KEYS) and key not in values and (
            math.isfinite(x)) and (x >= 0 if key == "f" else x > 0)
        if not ok:
            raise ValueError(f"bad reshaping {item!r} in inference candidate {v!r}; allowed: "
                             f"f=A (A >= 0), cut=C (C > 0) and smin=S (S > 0), each at most "
                             f"once")
        values[key] = x
    if values.get("f", 1.0) == 1.0 and "cut" not in values and "smin" not in values:
        raise ValueError(f"inference candidate {v!r} reshapes nothing (f=1, no cut, no smin); "
                         f"give the rule without ':'")
    return _rule_text(base, values)


def _rule_text(base: float | str | None, values: Mapping[str, float]) -> str | float | None:
    """A normalised rule from its base rule and reshapings (guidance keys, then schedule keys,
    each in its table's order); the base rule itself when there are none."""
    keys = [k for k in (*RESHAPE_KEYS, *SCHEDULE_KEYS) if k in values]
    if not keys:
        return base
    head = "greedy" if base is None else MEAN_ACTION if base == MEAN_ACTION else f"{base:.12g}"
    return head + ":" + ",".join(f"{k}={values[k]:.12g}" for k in keys)


def check_inference_candidates(values: Any) -> tuple[float | str | None, ...]:
    """A learned run's inference candidates, normalised: ``None`` or ``"greedy"`` -> ``None``
    (greedy), ``"mean"`` (:data:`~diffgym.benchmarks.report.MEAN_ACTION`), a temperature (a
    finite number > 0, or its text) -> ``float``; a rule with guidance reshapings after ``:``
    (``"mean:f=2,cut=1"``: :class:`~diffgym.agents.policy_sampling.PolicySampler`'s
    ``guidance_factor`` and ``guidance_max_sigma``, RESULTS §48) -> its normalised text
    (:func:`~diffgym.benchmarks.report.split_rule` reads it back).

    Raises:
        ValueError: an empty list, an unknown or non-positive candidate, or a repeat (the
            message names the value and what is allowed).
    """
    if isinstance(values, (str, numbers.Real)) or values is None:
        values = (values,)
    if isinstance(values, (set, frozenset, dict)):  # their order decides ties: refuse it
        raise ValueError(f"inference candidates must be an ordered list, got {values!r}")
    out: list[float | str | None] = []
    for v in values:
        if isinstance(v, str) and ":" in v:
            out.append(_reshaped_rule(v))
        else:
            out.append(plain_rule(v))
    if not out:
        raise ValueError(f"inference candidates must not be empty; allowed: "
                         f"{INFERENCE_RULES_ALLOWED}")
    names = [tau_name(t) for t in out]  # the records' keys: distinct values, distinct names
    if len(set(names)) != len(names):
        raise ValueError(f"inference candidates must not repeat (nor two temperatures share "
                         f"a name), got {names}")
    return tuple(out)


def unreshaped(
    candidates: tuple[float | str | None, ...], fallback: tuple[float | str | None, ...] = (),
) -> tuple[tuple[float | str | None, ...], tuple[float | str | None, ...]]:
    """Inference candidates and fallback rules on a task without a guidance menu, where a
    guidance reshaping has nothing to act on (``w = 1`` at every step, so ``1 + f (w - 1) = 1``
    and a cut removes nothing): each rule without its guidance reshapings (``"mean:f=2,cut=1"``
    -> ``"mean"``; a schedule key stays: ``"mean:cut=1,smin=0.3"`` -> ``"mean:smin=0.3"``), a
    repeat dropped (the first kept; a fallback rule that is also a candidate goes)."""
    def bare(t: float | str | None) -> float | str | None:
        fields = rule_schedule(t)
        return _rule_text(split_rule(t)[0], {k: fields[f] for k, f in SCHEDULE_KEYS.items()
                                             if f in fields})

    cands = tuple(dict.fromkeys(bare(t) for t in candidates))
    fb = tuple(dict.fromkeys(r for r in (bare(t) for t in fallback) if r not in cands))
    return cands, fb


def check_guard_fallbacks(
    guard: str | None, tolerance: Any, fallback: Any,
    candidates: tuple[float | str | None, ...],
) -> tuple[float, tuple[float | str | None, ...]]:
    """The inference guard's tolerance (a finite number >= 0, as ``float``) and fallback rules
    (normalised as :func:`check_inference_candidates`; ``()`` or ``None``: none), checked
    against the guard and the (normalised) ``candidates``.

    Raises:
        ValueError: a bad tolerance; a tolerance > 0 without fallback rules, or fallback rules
            without a guard; a bad fallback rule, or one that is also a candidate (each message
            names the value).
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not (
        math.isfinite(tolerance) and tolerance >= 0
    ):
        raise ValueError(f"inference_guard_tolerance must be a finite number >= 0, got "
                         f"{tolerance!r}")
    empty = fallback is None or (isinstance(fallback, (tuple, list)) and not fallback)
    fb = () if empty else check_inference_candidates(fallback)
    if tolerance > 0 and not fb:
        raise ValueError(f"inference_guard_tolerance {tolerance!r} applies to fallback rules; "
                         f"give some (--inference-fallback RULE ...)")
    if fb and guard is None:
        raise ValueError(f"inference_fallback {[tau_name(t) for t in fb]} needs an inference "
                         f"guard (--inference-guard METRIC)")
    both = {tau_name(t) for t in fb} & {tau_name(t) for t in candidates}
    if both:
        raise ValueError(f"inference_fallback must not repeat an inference candidate; both "
                         f"hold {sorted(both)}")
    return float(tolerance), fb


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
    selection: Mapping[Any, Mapping[str, Any]], metric: str, direction: str,
    guard: str | None = None, default_metrics: Mapping[str, float] | None = None,
    tolerance: float = 0.0, allowance: Mapping[Any, float] | None = None,
) -> tuple[Any, bool]:
    """A learned run's inference, from its search-seed evaluations ``selection`` (candidate ->
    record: a temperature, ``None`` being greedy, ``"mean"`` the mean action, or a ``(round,
    temperature)`` pair):
    ``(candidate, use the default sampler)``.

    Without ``guard``: the candidate with the best ``metric`` (``direction`` ``"min"`` or
    ``"max"``; on a tie, the first in ``selection``'s order). With ``guard`` (a metric name): the
    best ``metric`` among the candidates whose ``guard`` is no worse than the default sampler's
    (``default_metrics``, the same search seed) and the default sampler itself; the default
    sampler when no candidate qualifies or it scores best. With ``tolerance`` > 0 (in the guard
    metric's units), and only when that strict choice is the default sampler: the same choice
    among the candidates whose ``guard`` is at most ``tolerance`` worse than the default's (a
    fallback before the default sampler, never a reason to leave a strict candidate).
    ``allowance`` (candidate -> slack in the guard's units, e.g. ``z`` paired standard errors,
    :func:`~diffgym.benchmarks.paired_guard.guard_allowance`) widens both passes per candidate.
    """
    sign = 1.0 if direction == "min" else -1.0
    primary = lambda t: sign * selection[t]["metrics"][metric]  # noqa: E731
    if guard is None:
        return min(selection, key=primary), False
    ref = check_inference_guard(guard, default_metrics)
    g = 1.0 if METRIC_DIRECTIONS[guard] == "min" else -1.0
    for slack in (0.0, tolerance) if tolerance > 0 else (0.0,):
        ok = [t for t in selection if g * selection[t]["metrics"][guard]
              <= g * ref[guard] + slack + (allowance or {}).get(t, 0.0)]
        best = min(ok, key=primary) if ok else None  # a candidate None is greedy
        if ok and primary(best) <= sign * ref[metric]:
            return best, False
    return None, True


def search_inference(
    candidates: list[TrainedRun],
    evaluate: Callable[[TrainedRun, float | str | None], Mapping[str, Any]],
    temperatures: tuple[float | str | None, ...],
    metric: str,
    direction: str,
    guard: str | None = None,
    default_metrics: Mapping[str, float] | None = None,
    *,
    checkpoints: bool = False,
    tolerance: float = 0.0,
    fallback: tuple[float | str | None, ...] = (),
    allowance: Callable[[Mapping[str, Any]], float] | None = None,
) -> tuple[TrainedRun, float | str | None, bool, dict, Cost, dict[str, Any]]:
    """A learned run's inference, chosen on the search seed among ``candidates`` (the run at
    its milestone checkpoints, oldest first, or the final run alone) and ``temperatures``
    together, by :func:`choose_inference`; ``evaluate(candidate, tau)`` is the candidate's
    search-seed evaluation record. On a tie the later checkpoint wins (the final model first),
    so the choice leaves the final model only for a strictly better one. With ``fallback``
    (further inference rules; needs ``guard``) and only when that choice is the default
    sampler, the fallback rules are evaluated and chosen among by :func:`choose_inference` with
    the guard ``tolerance`` (the candidates themselves are always held to the strict guard);
    their evaluations are then in the records and the cost. ``allowance(record)`` (with
    ``guard``): the guard's slack for the candidate of that search-seed evaluation record
    (:func:`choose_inference`'s ``allowance``).

    Returns:
        ``(the chosen candidate, tau, use the default sampler, the chosen candidate's
        evaluations by temperature, the cost of every evaluation made, the checkpoint fields
        of the per-seed records)``; with the default sampler chosen, the candidate is the
        final run. The checkpoint fields (with ``checkpoints``; else empty) are
        ``checkpoint_round`` (``None`` for the default sampler), ``total_rounds``,
        ``checkpoint_selection`` (round -> the metric by temperature name) and, with
        ``guard``, ``checkpoint_selection_guard`` (round -> the guard metric by temperature).
    """
    def slack(records: Mapping[Any, Mapping[str, Any]]) -> dict[str, dict[Any, float]]:
        """``choose_inference``'s ``allowance`` argument, only when there is one."""
        return {} if allowance is None else {
            "allowance": {k: allowance(r) for k, r in records.items()}}

    searched = {(c.round, t): evaluate(c, t) for c in reversed(candidates) for t in temperatures}
    choice, use_default = choose_inference(searched, metric, direction, guard, default_metrics,
                                           **slack(searched))
    if use_default and fallback:
        temperatures = (*temperatures, *fallback)
        extra = {(c.round, t): evaluate(c, t) for c in reversed(candidates) for t in fallback}
        searched.update(extra)
        choice, use_default = choose_inference(extra, metric, direction, guard, default_metrics,
                                               tolerance, **slack(extra))
    at, tau = (candidates[-1].round, None) if use_default else choice
    chosen = next(c for c in candidates if c.round == at)
    selection = {t: searched[(at, t)] for t in temperatures}
    cost = sum((Cost.from_dict(r["cost"]) for r in searched.values()), Cost())
    if not checkpoints:
        return chosen, tau, use_default, selection, cost, {}

    def by_round(name: str) -> dict[str, dict[str, float]]:
        return {str(c.round): {tau_name(t): searched[(c.round, t)]["metrics"][name]
                               for t in temperatures} for c in candidates}

    fields: dict[str, Any] = {
        "checkpoint_round": None if use_default else at,
        "total_rounds": candidates[-1].round,
        "checkpoint_selection": by_round(metric),
        **({} if guard is None else {"checkpoint_selection_guard": by_round(guard)}),
    }
    return chosen, tau, use_default, selection, cost, fields
