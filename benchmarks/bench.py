"""The RL benchmark: agents x tasks x seeds x reward modes, normalized scores, reliable aggregates.

``diffgym bench`` (and :func:`run_bench`) trains one policy per (agent, task, seed, reward mode),
scores each on its task's headline metric (:func:`~diffgym.benchmarks.grid.default_metric`), and
reports the aggregate statistics of Agarwal et al. 2021 (:mod:`diffgym.benchmarks.stats`).

Protocol (the comparison's, :mod:`diffgym.benchmarks.compare`):

* per task, the grid (:func:`~diffgym.benchmarks.grid.make_families`) is searched once on the
  search seed :data:`~diffgym.benchmarks.compare.SEARCH_SEED` and cached; the best point of each
  family is picked by the headline metric there, and the best of those is the task's *grid
  reference*;
* training seed ``k`` is evaluated on evaluation seed ``e = eval_seed(k)`` with ``n_eval``
  samples under common random numbers (:func:`~diffgym.benchmarks.grid.evaluate_sampler`); the
  default sampler and the grid reference are evaluated on the same seeds (paired);
* a policy samples greedily (its most likely menu entry at every step).

Normalized score (:func:`~diffgym.benchmarks.stats.task_reference`): with ``sign = +1`` for a
metric where lower is better and ``-1`` where higher is better,
``s = sign * (m_default(e) - m_agent(e)) / gain``, ``gain = mean_e sign * (m_default(e) -
m_grid(e))``: 0 is the default sampler on the same seed, 1 the best grid point. A task whose grid
does not beat the default by more than twice the paired std over the evaluation seeds (or by
0.1 % of the default's value) is reported and excluded from the aggregates.

Reward modes: ``"irl"`` (the project's method: GAIL, Jensen-Shannon reward) and ``"exact"``
(no IRL; the env's exact terminal log-density reward ``terminal_logp``, mixture tasks only), which
isolates the RL algorithm from the learned reward.

Backends: ``"local"`` runs the trials one after another in this process; ``"ray"`` runs each
trial (one training run and its evaluation) as a Ray task with one CPU and one torch thread, on a
Ray started here with ``num_cpus`` and no dashboard (an already-initialised Ray is used as it is);
the grid then runs on the same Ray. On the CPU a run is deterministic given its seed, so both
backends give the same table (with one torch thread locally too).

Files in ``out_dir`` (written atomically): ``bench.json``, ``bench.csv`` (one row per trial),
``leaderboard.md``, ``aggregates.png``, ``profiles.png``, ``per_task.png``; ``grid/<task>/`` (each
task's resumable grid), ``references.json`` (the cached reference evaluations) and
``runs/<task>/<agent>_<reward>_seed<k>/`` (each trial's training run with its ``cost.json``, and
``bench_eval.json``, its cached evaluation). A rerun reuses finished runs and evaluations and
resumes an interrupted run from its latest checkpoint.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import math
import os
import shlex
import shutil
import statistics
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffgym.benchmarks.compare import SEARCH_SEED, eval_seed
from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS
from diffgym.benchmarks.grid import (
    BACKENDS,
    DEFAULT_N,
    FAMILIES,
    POINT_PRESETS,
    PointResult,
    default_metric,
    evaluate_point,
    evaluate_sampler,
    make_families,
    point_key,
    run_grid,
    task_fingerprint,
)
from diffgym.benchmarks.stats import (
    DEFAULT_REPS,
    Interval,
    TaskReference,
    aggregate_intervals,
    performance_profile_interval,
    probability_of_improvement_interval,
    task_reference,
)
from diffgym.envs.io import atomic_write_json, atomic_write_text
from diffgym.envs.tasks import Task, list_tasks, make_task

__all__ = [
    "BENCH_FORMAT",
    "REWARD_MODES",
    "BenchConfig",
    "BenchResult",
    "Trial",
    "run_bench",
    "run_trial",
]

log = logging.getLogger(__name__)

BENCH_FORMAT = "diffgym-bench/1"
EVAL_FORMAT = "diffgym-bench-eval/1"
REFERENCES_FORMAT = "diffgym-bench-references/1"
REWARD_MODES: dict[str, dict[str, str]] = {
    "irl": {"irl": "gail", "divergence": "js", "reward": "none"},
    "exact": {"irl": "none", "divergence": "js", "reward": "terminal_logp"},
}
"""The :class:`~diffgym.agents.train.TrainConfig` settings of each reward mode."""
TRAIN_EVAL_SAMPLES = 256
"""Samples of the training loop's own final evaluation (its ``final_metrics.json``)."""
CHECKPOINT_EVERY = 5
"""Rounds between training checkpoints (an interrupted run resumes from the latest)."""
FALLBACK_TIMESTEPS = 200_000
"""Training timesteps when neither the config nor the agent's YAML block gives them."""
PROFILE_TAUS = tuple(np.round(np.linspace(-1.0, 2.0, 61), 4).tolist())
"""Thresholds of the performance profiles (normalized score)."""


def _names(kind: str, values: Any, allowed: Sequence[str], one: str) -> tuple[str, ...]:
    """``values`` as a tuple; ``ValueError`` naming ``allowed`` for an unknown, empty or repeat."""
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"{kind} must not be empty; allowed: {', '.join(allowed)}")
    for v in values:
        if v not in allowed:
            raise ValueError(f"unknown {one} {v!r}; allowed: {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{kind} must not repeat, got {values}")
    return values


def _positive_int(name: str, value: Any, *, minimum: int = 1, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class BenchConfig:
    """What a benchmark runs (validated on construction; keyword-only).

    Attributes:
        agents: learners, keys of :data:`diffgym.agents.AGENTS`.
        tasks: registered task names.
        seeds: training seeds (ints >= 0); seed ``k`` is evaluated on ``eval_seed(k)``.
        rewards: reward modes, keys of :data:`REWARD_MODES` (``"exact"``: mixture tasks only).
        backend: ``"local"`` or ``"ray"``.
        out_dir: output folder (resumable).
        timesteps: training transitions per run (``None``: each agent's YAML ``n_timesteps``).
        n_eval: samples per evaluation (grid points, references and trials alike).
        grid_points: grid preset, ``"small"`` or ``"default"``.
        grid_families: grid families (``None``: every family each task supports).
        grid_axes: explicit axis values replacing the preset's (``{"w": (2.0, 3.0)}``), as in
            :func:`~diffgym.benchmarks.grid.make_families`.
        num_cpus: CPUs given to Ray (``None``: all); unused locally.
        device: where to train, sample and evaluate.
        n_envs: training sub-envs (``None``: the YAML's).
        agent_overrides: per agent, hyperparameters that win over the YAML (``{"ppo": {...}}``).
        reps: bootstrap replicates of every interval; ci_seed: their seed.
        threshold: the optimality gap's threshold (normalized score).
        progress: progress bars; wandb: log the tables and plots to a wandb run; plots: PNGs.
    """

    agents: tuple[str, ...] = ("ppo", "a2c", "trpo", "reinforce")
    tasks: tuple[str, ...] = ("gmm2d", "gmm2d-bias")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    rewards: tuple[str, ...] = ("irl",)
    backend: str = "local"
    out_dir: Path = Path("runs/bench")
    timesteps: int | None = None
    n_eval: int = DEFAULT_N
    grid_points: str = "default"
    grid_families: tuple[str, ...] | None = None
    grid_axes: dict[str, tuple[float, ...]] = field(default_factory=dict)
    num_cpus: int | None = None
    device: str = "cpu"
    n_envs: int | None = None
    agent_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    reps: int = DEFAULT_REPS
    ci_seed: int = 0
    threshold: float = 1.0
    progress: bool = True
    wandb: bool = False
    plots: bool = True

    def __post_init__(self) -> None:
        from diffgym.agents.registry import AGENTS

        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("agents", _names("agents", self.agents, list(AGENTS), "agent"))
        put("tasks", _names("tasks", self.tasks, list_tasks(), "task"))
        put("rewards", _names("rewards", self.rewards, list(REWARD_MODES), "reward mode"))
        seeds = (self.seeds,) if isinstance(self.seeds, int) else tuple(self.seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must not repeat, got {seeds}")
        put("seeds", seeds)
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        put("out_dir", Path(self.out_dir))
        _positive_int("timesteps", self.timesteps, optional=True)
        _positive_int("n_eval", self.n_eval, minimum=2)
        if self.grid_points not in POINT_PRESETS:
            raise ValueError(
                f"unknown grid points preset {self.grid_points!r}; allowed: "
                f"{', '.join(POINT_PRESETS)}"
            )
        if self.grid_families is not None:
            families = _names("grid families", self.grid_families, list(FAMILIES), "grid family")
            put("grid_families", families)
        put("grid_axes", {str(k): tuple(float(x) for x in v) for k, v in self.grid_axes.items()})
        _positive_int("num_cpus", self.num_cpus, optional=True)
        _positive_int("n_envs", self.n_envs, optional=True)
        unknown = sorted(set(self.agent_overrides) - set(self.agents))
        if unknown:
            raise ValueError(
                f"agent_overrides for {unknown}, which are not benchmarked; agents: "
                f"{', '.join(self.agents)}"
            )
        for agent, overrides in self.agent_overrides.items():
            if not isinstance(overrides, Mapping):
                raise TypeError(
                    f"agent_overrides[{agent!r}] must be a mapping of hyperparameters, got "
                    f"{overrides!r}"
                )
        put("agent_overrides", {k: dict(v) for k, v in self.agent_overrides.items()})
        _positive_int("reps", self.reps)
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}")
        if "exact" in self.rewards:
            for name in self.tasks:
                if make_task(name).target is None:
                    mixtures = [t for t in self.tasks if make_task(t).target is not None]
                    raise ValueError(
                        f"reward mode 'exact' needs a mixture task (an exact target density); "
                        f"task {name!r} has none; mixture tasks here: "
                        f"{', '.join(mixtures) or 'none'}"
                    )

    @property
    def methods(self) -> list[str]:
        """``"<agent>/<reward>"`` for every agent and reward mode."""
        return [f"{a}/{r}" for a in self.agents for r in self.rewards]

    def timesteps_for(self, agent: str, task: str) -> int:
        """Training timesteps of ``agent`` on ``task`` (the config's, else the YAML's)."""
        if self.timesteps is not None:
            return self.timesteps
        from diffgym.agents.registry import env_id_for_task, load_hyperparams

        steps = load_hyperparams(agent, env_id_for_task(task)).get("n_timesteps")
        return int(steps) if steps is not None else FALLBACK_TIMESTEPS

    def command(self) -> str:
        """The ``diffgym bench`` command line of this config (its non-default options)."""
        parts = ["diffgym", "--threads", "1", "bench", "--agents", *self.agents]
        parts += ["--tasks", *self.tasks, "--seeds", *map(str, self.seeds)]
        parts += ["--reward", *self.rewards, "--backend", self.backend, "--out", str(self.out_dir)]
        if self.timesteps is not None:
            parts += ["--timesteps", str(self.timesteps)]
        parts += ["--n-eval", str(self.n_eval), "--grid-points", self.grid_points]
        if self.grid_families is not None:
            parts += ["--families", *self.grid_families]
        if self.num_cpus is not None:
            parts += ["--num-cpus", str(self.num_cpus)]
        return shlex.join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


# --------------------------------------------------------------------------------------------
# One trial: a training run and its evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One (agent, task, seed, reward mode) of the benchmark.

    Attributes:
        train: the :class:`~diffgym.agents.train.TrainConfig` as a dict.
        run_dir: the training run's folder.
        n_eval, eval_seed: the evaluation.
        device: where to train and evaluate.
        threads: torch CPU threads inside the trial (``None``: leave torch's setting).
        progress: the training progress bar.
    """

    agent: str
    task: str
    seed: int
    reward: str
    train: dict[str, Any]
    run_dir: str
    n_eval: int
    eval_seed: int
    device: str = "cpu"
    threads: int | None = None
    progress: bool = False

    @property
    def method(self) -> str:
        return f"{self.agent}/{self.reward}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train_or_load(config: Any, run_dir: Path, *, progress: bool) -> bool:
    """Finish the run in ``run_dir``: nothing if finished, resume from its latest checkpoint, or
    train it from scratch. Returns whether anything was trained.

    Raises:
        ValueError: ``run_dir`` holds a run with another config.
    """
    from diffgym.agents.train import TrainingRun, load_run_config

    if (run_dir / "config.json").is_file():
        stored = load_run_config(run_dir)
        if stored.fingerprint() != config.fingerprint():
            raise ValueError(
                f"{run_dir} holds a run with another config ({stored.to_dict()}); use another "
                f"out_dir or remove that run"
            )
    if (run_dir / "final_metrics.json").is_file() and (run_dir / "final_model.zip").is_file():
        return False
    if (run_dir / "checkpoints" / "latest.json").is_file():
        log.info("resuming %s from its latest checkpoint", run_dir)
        run = TrainingRun(None, run_dir, resume=True, progress=progress)
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            warnings.warn(
                f"{run_dir} holds an unfinished run without a checkpoint; starting it over",
                stacklevel=3,
            )
            shutil.rmtree(run_dir)
        run = TrainingRun(config, run_dir, progress=progress)
    run.train()
    return True


def run_trial(trial: Trial) -> dict[str, Any]:
    """Train (or load, or resume) the trial's run, then evaluate its policy greedily on the
    trial's evaluation seed; the evaluation is cached in ``run_dir/bench_eval.json``.

    Runs in a Ray worker as well as locally (everything it needs is in ``trial``).

    Returns:
        The trial's record: ``metrics``, ``nfe_per_sample``, ``eval_cost``, ``train_cost`` (the
        run's ``cost.json``), ``model_sha256``, ``trained`` (whether this call trained).
    """
    from diffgym.agents.sampler import PolicySampler
    from diffgym.agents.train import TrainConfig, load_policy

    if trial.threads is not None:
        torch.set_num_threads(trial.threads)
    config = TrainConfig.from_dict(dict(trial.train))
    run_dir = Path(trial.run_dir)
    trained = _train_or_load(config, run_dir, progress=trial.progress)
    sha = _sha256(run_dir / "final_model.zip")
    key = {"model_sha256": sha, "n_eval": trial.n_eval, "eval_seed": trial.eval_seed,
           "device_kind": torch.device(trial.device).type, "greedy": True}
    cache = run_dir / "bench_eval.json"
    record = None
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("format") == EVAL_FORMAT and data.get("key") == key:
            record = data["record"]
    if record is None:
        policy, task, _ = load_policy(run_dir, device=trial.device)
        sampler = PolicySampler(policy, task, device=trial.device, greedy=True)
        ev = evaluate_sampler(
            task,
            sampler.actions(),
            n=trial.n_eval,
            seed=trial.eval_seed,
            guided="guidance" in sampler.knob_names,
            renoise_budget=sampler.renoise_budget,
            device=trial.device,
        )
        record = {
            "metrics": ev.metrics,
            "nfe_per_sample": float(ev.result.nfe.double().mean()),
            "eval_cost": ev.cost.to_dict(),
        }
        atomic_write_json(cache, _json_ready({"format": EVAL_FORMAT, "key": key,
                                              "record": record}))
    return {
        "agent": trial.agent,
        "task": trial.task,
        "seed": trial.seed,
        "reward": trial.reward,
        "eval_seed": trial.eval_seed,
        "run_dir": str(run_dir),
        **record,
        "train_cost": json.loads((run_dir / "cost.json").read_text()),
        "model_sha256": sha,
        "trained": trained,
    }


# --------------------------------------------------------------------------------------------
# Task references: the default sampler and the best grid point on the evaluation seeds
# --------------------------------------------------------------------------------------------


def _json_ready(obj: Any) -> Any:
    """JSON-ready copy: non-finite floats become ``None``; paths and tuples plain."""
    if isinstance(obj, (float, np.floating)):
        obj = float(obj)
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


class _ReferenceCache:
    """Reference evaluations by point key (``references.json``), rewritten after each new one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("format") != REFERENCES_FORMAT:
                raise ValueError(
                    f"{path} is not a {REFERENCES_FORMAT} file; remove it to start over"
                )
            self.records = dict(data["evals"])

    def get_or_eval(
        self, task: Task, family: Any, point: PointResult, *, n: int, seed: int, device: str
    ) -> dict[str, float]:
        key = point_key(task_fingerprint(task), point.family, point.params, n=n, seed=seed,
                        device=device)
        if key not in self.records:
            result = evaluate_point(task, family, point.params or None, n=n, seed=seed,
                                    device=device)
            self.records[key] = {"family": point.family, "params": point.params, "seed": seed,
                                 "metrics": result.metrics, "cost": result.cost.to_dict()}
            atomic_write_json(self.path, _json_ready({"format": REFERENCES_FORMAT,
                                                      "evals": self.records}))
        return self.records[key]["metrics"]


def _task_reference(
    name: str, config: BenchConfig, cache: _ReferenceCache
) -> tuple[TaskReference, dict[str, Any]]:
    """Search the task's grid (cached), pick its best point on the search seed, evaluate it and
    the default sampler on every evaluation seed; returns the normalization and a summary."""
    task = make_task(name, device=config.device)
    metric = default_metric(task)
    direction = METRIC_DIRECTIONS[metric]
    families = make_families(task, config.grid_families, points=config.grid_points,
                             **config.grid_axes)
    grid = run_grid(
        task,
        families,
        n=config.n_eval,
        seed=SEARCH_SEED,
        out_dir=config.out_dir / "grid" / name,
        backend=config.backend,
        num_cpus=config.num_cpus if config.backend == "ray" else None,
        device=config.device,
        progress=config.progress,
    )
    if grid.default is None:
        raise RuntimeError(f"the grid of {name!r} has no default sampler record")
    sign = 1.0 if direction == "min" else -1.0
    best_by_family = grid.best(metric)
    if not best_by_family:
        raise RuntimeError(f"no grid point of {name!r} has a finite {metric}")
    best = min(best_by_family.values(), key=lambda p: sign * p.metrics[metric])
    family = next(f for f in families if f.name == best.family)
    e_seeds = [eval_seed(k) for k in config.seeds]
    kw = dict(n=config.n_eval, device=config.device)
    default = {e: cache.get_or_eval(task, None, grid.default, seed=e, **kw)[metric]
               for e in e_seeds}
    at_grid = {e: cache.get_or_eval(task, family, best, seed=e, **kw)[metric] for e in e_seeds}
    ref = task_reference(metric, direction, default, at_grid)
    summary = {
        "task": name,
        "best_point": best.label,
        "best_point_search_value": best.metrics[metric],
        "default_search_value": grid.default.metrics[metric],
        "grid_points": len(grid.points) - 1,
        "grid_nfe": grid.total_cost().nfe,
        "grid_seconds": grid.total_cost().total_seconds,
        **ref.to_dict(),
    }
    return ref, summary


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass
class BenchResult:
    """The benchmark's table and statistics.

    Attributes:
        config: the :class:`BenchConfig`.
        references: per task, its :class:`~diffgym.benchmarks.stats.TaskReference`.
        reference_info: per task, the reference summary (best grid point, grid cost, ...).
        trials: one record per trial (:func:`run_trial`) with its ``score`` added.
        tasks_used: tasks in the aggregates (the others are excluded, see ``references``).
        scores: ``{method: (num_seeds, num_tasks_used)}`` normalized scores.
        aggregates: ``{method: {"iqm" | "mean" | "median" | "optimality_gap": Interval}}``.
        improvement: ``{(X, Y): Interval}`` of ``P(X > Y)`` for every pair of methods.
        profiles: ``{method: (profile, low, high)}`` over :data:`PROFILE_TAUS`.
        files: the files written; seconds: wall-clock of the call; num_trained: runs trained.
    """

    config: BenchConfig
    references: dict[str, TaskReference]
    reference_info: dict[str, dict[str, Any]]
    trials: list[dict[str, Any]]
    tasks_used: list[str]
    scores: dict[str, np.ndarray]
    aggregates: dict[str, dict[str, Interval]]
    improvement: dict[tuple[str, str], Interval]
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    num_trained: int = 0

    @property
    def excluded_tasks(self) -> list[str]:
        return [t for t, r in self.references.items() if r.excluded]

    def table_rows(self) -> list[dict[str, Any]]:
        """One flat row per trial (``bench.csv``)."""
        rows = []
        for t in self.trials:
            ref = self.references[t["task"]]
            cost = t["train_cost"]
            rows.append({
                "task": t["task"],
                "agent": t["agent"],
                "reward": t["reward"],
                "seed": t["seed"],
                "eval_seed": t["eval_seed"],
                "metric": ref.metric,
                "direction": ref.direction,
                "value": t["metrics"][ref.metric],
                "default": ref.default[t["eval_seed"]],
                "grid": ref.grid[t["eval_seed"]],
                "score": t["score"],
                "task_excluded": ref.excluded,
                "nfe_per_sample": t["nfe_per_sample"],
                "train_timesteps": cost["timesteps"],
                "train_nfe": cost["rollout_nfe"] + cost["eval_nfe"],
                "train_seconds": round(sum(cost["seconds"].values()), 3),
            })
        return rows

    def to_csv(self) -> str:
        rows = self.table_rows()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v
                             for k, v in row.items()})
        return buf.getvalue()

    def per_task_means(self) -> dict[str, dict[str, float]]:
        """``{method: {task: mean normalized score over seeds}}`` (every task, excluded ones
        ``nan``)."""
        out: dict[str, dict[str, float]] = {}
        for m in self.config.methods:
            out[m] = {}
            for task in self.config.tasks:
                xs = [t["score"] for t in self.trials
                      if f"{t['agent']}/{t['reward']}" == m and t["task"] == task]
                out[m][task] = statistics.fmean(xs) if xs else math.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return _json_ready({
            "format": BENCH_FORMAT,
            "config": self.config.to_dict(),
            "command": self.config.command(),
            "search_seed": SEARCH_SEED,
            "references": self.reference_info,
            "excluded_tasks": self.excluded_tasks,
            "tasks_used": self.tasks_used,
            "trials": self.trials,
            "scores": {m: s.tolist() for m, s in self.scores.items()},
            "aggregates": {m: {k: v.to_dict() for k, v in a.items()}
                           for m, a in self.aggregates.items()},
            "probability_of_improvement": [
                {"x": x, "y": y, **ci.to_dict()} for (x, y), ci in self.improvement.items()
            ],
            "profiles": {
                "taus": list(PROFILE_TAUS),
                **{m: {"profile": p.tolist(), "low": lo.tolist(), "high": hi.tolist()}
                   for m, (p, lo, hi) in self.profiles.items()},
            },
            "per_task_means": self.per_task_means(),
            "seconds": self.seconds,
            "files": self.files,
        })

    def to_markdown(self) -> str:
        """The leaderboard: references, aggregates with CIs, P(X > Y), per-task means."""
        cfg = self.config
        steps = sorted({t["train_cost"]["timesteps"] for t in self.trials})
        lines = [
            "# diffgym bench leaderboard",
            "",
            f"Agents {', '.join(cfg.agents)}; reward modes {', '.join(cfg.rewards)}; tasks "
            f"{', '.join(cfg.tasks)}; training seeds {list(cfg.seeds)} (evaluation seeds "
            f"{[eval_seed(k) for k in cfg.seeds]}); {cfg.n_eval} samples per evaluation; "
            f"{', '.join(f'{s:,}' for s in steps)} training steps per run; greedy policies; "
            f"backend {cfg.backend}; device {cfg.device}.",
            "",
            f"Reproduce: `{cfg.command()}`",
            "",
            "Normalized score of a run evaluated on seed e: `s = sign * (m_default(e) - m(e)) / "
            "gain`, `gain = mean_e sign * (m_default(e) - m_grid(e))`, sign = +1 where lower is "
            "better: **0 = the default sampler, 1 = the best grid point** (searched on seed "
            f"{SEARCH_SEED}), paired on the same evaluation seeds. A task whose gain is not above "
            "max(2 x its paired std over seeds, 0.1 % of the default's value) is excluded.",
            "",
            "## Task references",
            "",
            "| task | metric | default | best grid point | grid | gain | floor | status |",
            "|---|---|---:|---|---:|---:|---:|---|",
        ]
        for name, ref in self.references.items():
            info = self.reference_info[name]
            status = "**excluded** (grid gains nothing resolvable)" if ref.excluded else "used"
            arrow = "↓" if ref.direction == "min" else "↑"
            lines.append(
                f"| {name} | {ref.metric} {arrow} | {_mean_std(ref.default.values())} | "
                f"{info['best_point']} (of {info['grid_points']}) | "
                f"{_mean_std(ref.grid.values())} | {ref.gain:.4g} | {ref.floor:.3g} | {status} |"
            )
        lines += [""]
        if not self.tasks_used:
            lines += ["Every task is excluded: no aggregate can be computed.", "",
                      *self._raw_table()]
            return "\n".join(lines)
        n_runs = len(cfg.seeds)
        lines += [
            f"## Aggregates over {len(self.tasks_used)} task(s) x {n_runs} seed(s)",
            "",
            f"Point estimate [95 % stratified-bootstrap percentile CI, {cfg.reps} replicates, "
            f"seed {cfg.ci_seed}]. Tasks used: {', '.join(self.tasks_used)}"
            + (f"; excluded: {', '.join(self.excluded_tasks)}" if self.excluded_tasks else "")
            + ".",
            "",
            f"| method | IQM ↑ | mean ↑ | median ↑ | optimality gap (γ={cfg.threshold:g}) ↓ |",
            "|---|---:|---:|---:|---:|",
        ]
        order = sorted(self.aggregates, key=lambda m: -self.aggregates[m]["iqm"].point)
        for m in order:
            a = self.aggregates[m]
            lines.append(
                f"| {m} | {a['iqm']} | {a['mean']} | {a['median']} | {a['optimality_gap']} |"
            )
        if self.improvement:
            lines += [
                "",
                "## Probability of improvement",
                "",
                "P(X > Y): per task, the probability that a run of X scores above a run of Y "
                "(ties count 1/2), averaged over tasks; an interval excluding 0.5 resolves the "
                "difference.",
                "",
                "| X | Y | P(X > Y) [95 % CI] | resolved |",
                "|---|---|---:|---|",
            ]
            for (x, y), ci in self.improvement.items():
                resolved = "yes" if ci.low > 0.5 or ci.high < 0.5 else "no"
                lines.append(f"| {x} | {y} | {ci} | {resolved} |")
        means = self.per_task_means()
        lines += [
            "",
            "## Mean normalized score per task",
            "",
            "| method | " + " | ".join(cfg.tasks) + " |",
            "|---|" + "---:|" * len(cfg.tasks),
        ]
        for m in order:
            cells = [
                "excluded" if self.references[t].excluded else f"{means[m][t]:.3f}"
                for t in cfg.tasks
            ]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", *self._raw_table()]
        return "\n".join(lines)

    def _raw_table(self) -> list[str]:
        """The headline metric itself per task (mean ± std over the evaluation seeds), for the
        references and every method: readable where a task is excluded from the scores."""
        cfg = self.config
        arrows = {"min": "↓", "max": "↑"}
        head = [f"{t} {self.references[t].metric} {arrows[self.references[t].direction]}"
                for t in cfg.tasks]
        lines = [
            "## Headline metric per task",
            "",
            "Mean ± sample std over the evaluation seeds (not normalized).",
            "",
            "| sampler | " + " | ".join(head) + " |",
            "|---|" + "---:|" * len(cfg.tasks),
            "| default sampler | "
            + " | ".join(_mean_std(self.references[t].default.values()) for t in cfg.tasks)
            + " |",
            "| best grid point | "
            + " | ".join(_mean_std(self.references[t].grid.values()) for t in cfg.tasks)
            + " |",
        ]
        for m in cfg.methods:
            cells = []
            for t in cfg.tasks:
                metric = self.references[t].metric
                xs = [r["metrics"][metric] for r in self.trials
                      if r["task"] == t and f"{r['agent']}/{r['reward']}" == m]
                cells.append(_mean_std(xs) if xs else "")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        return lines


def _mean_std(values: Any) -> str:
    xs = list(values)
    if len(xs) < 2:
        return f"{xs[0]:.4g}"
    return f"{statistics.fmean(xs):.4g} ± {statistics.stdev(xs):.2g}"


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def _trials(config: BenchConfig) -> list[Trial]:
    from diffgym.agents.train import TrainConfig

    trials = []
    for task, agent, reward, seed in itertools.product(
        config.tasks, config.agents, config.rewards, config.seeds
    ):
        train = TrainConfig(
            task=task,
            agent=agent,
            timesteps=config.timesteps_for(agent, task),
            seed=seed,
            n_envs=config.n_envs,
            device=config.device,
            checkpoint_every=CHECKPOINT_EVERY,
            eval_every=0,
            eval_samples=TRAIN_EVAL_SAMPLES,
            agent_overrides=dict(config.agent_overrides.get(agent, {})),
            **REWARD_MODES[reward],
        )
        trials.append(
            Trial(
                agent=agent,
                task=task,
                seed=seed,
                reward=reward,
                train=train.to_dict(),
                run_dir=str(
                    config.out_dir.resolve() / "runs" / task / f"{agent}_{reward}_seed{seed}"
                ),
                n_eval=config.n_eval,
                eval_seed=eval_seed(seed),
                device=config.device,
                threads=1 if config.backend == "ray" else None,
                progress=False,
            )
        )
    return trials


def _run_local(trials: Sequence[Trial], bar: Any) -> list[dict[str, Any]]:
    records = []
    for trial in trials:
        bar.set_postfix_str(f"{trial.task} {trial.method} seed {trial.seed}")
        records.append(run_trial(trial))
        bar.update(1)
    return records


def _run_ray(trials: Sequence[Trial], bar: Any, device: str) -> list[dict[str, Any]]:
    """One Ray task per trial (one CPU, plus one GPU on CUDA); results in trial order."""
    import ray

    remote = ray.remote(
        num_cpus=1, num_gpus=1 if torch.device(device).type == "cuda" else 0
    )(run_trial)
    refs = {remote.remote(t): i for i, t in enumerate(trials)}
    records: list[dict[str, Any] | None] = [None] * len(trials)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = refs[ref]
            records[i] = ray.get(ref)
            bar.set_postfix_str(f"{trials[i].task} {trials[i].method} seed {trials[i].seed}")
            bar.update(1)
    return [r for r in records if r is not None]


def run_bench(config: BenchConfig) -> BenchResult:
    """Run (or resume) the benchmark of ``config`` and write its files (module docstring).

    Returns:
        The :class:`BenchResult`.

    Raises:
        ValueError: a run folder holding a run with another config; bad grid settings for a
            task (an unknown family or axis).
        ImportError: ``backend="ray"`` without Ray installed (``pip install 'diffgym[ray]'``).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    started_ray = False
    if config.backend == "ray":
        try:
            import ray
        except ImportError as err:
            raise ImportError(
                "the ray backend needs Ray, which is not installed: pip install 'diffgym[ray]'"
            ) from err
        if not ray.is_initialized():
            ray.init(num_cpus=config.num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
            started_ray = True
    try:
        cache = _ReferenceCache(out / "references.json")
        references, info = {}, {}
        for name in config.tasks:
            references[name], info[name] = _task_reference(name, config, cache)
        trials = _trials(config)
        bar = tqdm(total=len(trials), desc="bench", unit="run", disable=not config.progress)
        try:
            if config.backend == "ray":
                records = _run_ray(trials, bar, config.device)
            else:
                records = _run_local(trials, bar)
        finally:
            bar.close()
    finally:
        if started_ray:
            import ray

            ray.shutdown()

    for r in records:
        r["score"] = references[r["task"]].normalize(
            r["metrics"][references[r["task"]].metric], r["eval_seed"]
        )
    tasks_used = [t for t in config.tasks if not references[t].excluded]
    scores: dict[str, np.ndarray] = {}
    for method in config.methods:
        by = {(r["task"], r["seed"]): r["score"] for r in records
              if f"{r['agent']}/{r['reward']}" == method}
        scores[method] = np.array(
            [[by[(t, k)] for t in tasks_used] for k in config.seeds], dtype=np.float64
        ).reshape(len(config.seeds), len(tasks_used))
    aggregates: dict[str, dict[str, Interval]] = {}
    improvement: dict[tuple[str, str], Interval] = {}
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if tasks_used:
        kw = dict(reps=config.reps, seed=config.ci_seed)
        aggregates = aggregate_intervals(scores, threshold=config.threshold, **kw)
        for x, y in itertools.combinations(config.methods, 2):
            improvement[(x, y)] = probability_of_improvement_interval(scores[x], scores[y], **kw)
        profiles = {m: performance_profile_interval(s, PROFILE_TAUS, **kw)
                    for m, s in scores.items()}
    result = BenchResult(
        config=config,
        references=references,
        reference_info=info,
        trials=records,
        tasks_used=tasks_used,
        scores=scores,
        aggregates=aggregates,
        improvement=improvement,
        profiles=profiles,
        num_trained=sum(bool(r["trained"]) for r in records),
    )
    result.seconds = time.perf_counter() - t_start
    _write_outputs(result)
    if config.wandb:
        _log_wandb(result)
    return result


# --------------------------------------------------------------------------------------------
# Files, plots, wandb
# --------------------------------------------------------------------------------------------


def _write_outputs(result: BenchResult) -> None:
    out = result.config.out_dir
    files = {"json": out / "bench.json", "csv": out / "bench.csv",
             "leaderboard": out / "leaderboard.md"}
    if result.config.plots and result.tasks_used:
        files.update(aggregates=out / "aggregates.png", profiles=out / "profiles.png",
                     per_task=out / "per_task.png")
        _plot_aggregates(result, files["aggregates"])
        _plot_profiles(result, files["profiles"])
        _plot_per_task(result, files["per_task"])
    result.files = {k: str(v) for k, v in files.items()}
    atomic_write_text(files["csv"], result.to_csv())
    atomic_write_text(files["leaderboard"], result.to_markdown())
    atomic_write_json(files["json"], result.to_dict())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    from diffgym.envs.io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
    _pyplot().close(fig)


def _plot_aggregates(result: BenchResult, path: Path) -> None:
    """One panel per estimator: each method's point estimate and 95 % CI (rliable's style)."""
    plt = _pyplot()
    methods = list(result.aggregates)
    names = ["iqm", "mean", "median", "optimality_gap"]
    titles = ["IQM ↑", "mean ↑", "median ↑", "optimality gap ↓"]
    fig, axes = plt.subplots(1, 4, figsize=(13, 0.5 * len(methods) + 1.5), sharey=True)
    colors = plt.get_cmap("tab10")
    for ax, name, title in zip(axes, names, titles):
        for i, m in enumerate(methods):
            ci = result.aggregates[m][name]
            ax.barh(i, ci.high - ci.low, left=ci.low, height=0.6, color=colors(i % 10), alpha=0.6)
            ax.plot([ci.point, ci.point], [i - 0.3, i + 0.3], color="k", lw=2)
        ax.set_title(title)
        ax.set_xlabel("normalized score")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(methods)), methods)
    axes[0].invert_yaxis()  # the first method on top
    fig.suptitle(f"95 % stratified-bootstrap CIs over {len(result.tasks_used)} task(s) x "
                 f"{len(result.config.seeds)} seed(s) (0 = default sampler, 1 = best grid point)",
                 y=1.04)
    _save(fig, path)


def _plot_profiles(result: BenchResult, path: Path) -> None:
    """Performance profiles: fraction of runs with a normalized score above tau, with bands."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    taus = np.asarray(PROFILE_TAUS)
    for i, (m, (p, lo, hi)) in enumerate(result.profiles.items()):
        color = plt.get_cmap("tab10")(i % 10)
        ax.plot(taus, p, color=color, label=m)
        ax.fill_between(taus, lo, hi, color=color, alpha=0.2)
    for x in (0.0, 1.0):
        ax.axvline(x, color="gray", ls=":", lw=1)
    ax.set_xlabel("normalized score τ (0 = default, 1 = best grid point)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def _plot_per_task(result: BenchResult, path: Path) -> None:
    """Per task: each method's mean normalized score (bar) and every seed (dots)."""
    plt = _pyplot()
    methods = result.config.methods
    tasks = result.tasks_used
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(tasks) * len(methods) ** 0.5 + 3), 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        color = plt.get_cmap("tab10")(i % 10)
        s = result.scores[m]
        xs = np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(xs, s.mean(axis=0), width=width * 0.9, color=color, alpha=0.6, label=m)
        for j in range(len(tasks)):
            ax.scatter(np.full(s.shape[0], xs[j]), s[:, j], color=color, s=10, zorder=3)
    ax.axhline(0.0, color="gray", lw=1, ls=":")
    ax.axhline(1.0, color="gray", lw=1, ls="--")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("normalized score (0 = default, 1 = best grid)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def _log_wandb(result: BenchResult) -> None:
    """Log the table, the aggregates and the PNGs to a wandb run (offline without an API key)."""
    import wandb

    mode = os.environ.get("WANDB_MODE")
    if mode is None:
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    run = wandb.init(project="diffgym", job_type="bench", name="bench",
                     dir=str(result.config.out_dir), mode=mode,
                     config=_json_ready(result.config.to_dict()))
    try:
        rows = result.table_rows()
        columns = list(rows[0])
        logged: dict[str, Any] = {
            "bench/table": wandb.Table(columns=columns,
                                       data=[[_json_ready(r[c]) for c in columns] for r in rows])
        }
        for name in ("aggregates", "profiles", "per_task"):
            if name in result.files:
                logged[f"bench/{name}"] = wandb.Image(result.files[name])
        run.log(logged)
        for m, a in result.aggregates.items():
            for k, ci in a.items():
                run.summary[f"{m}/{k}"] = ci.point
                run.summary[f"{m}/{k}_low"] = ci.low
                run.summary[f"{m}/{k}_high"] = ci.high
    finally:
        run.finish()
