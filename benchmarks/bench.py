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

import itertools
import json
import logging
import math
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffgym.benchmarks.bench_report import (
    BENCH_FORMAT,
    PROFILE_TAUS,
    BenchResult,
    log_wandb,
    write_outputs,
)
from diffgym.benchmarks.compare import (
    CHECKPOINT_EVERY,
    FALLBACK_TIMESTEPS,
    TRAIN_EVAL_SAMPLES,
    check_names,
)
from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS, SEARCH_SEED, eval_seed, finite_or_none
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
from diffgym.benchmarks.runs import train_or_load
from diffgym.benchmarks.stats import (
    DEFAULT_REPS,
    Interval,
    TaskReference,
    aggregate_intervals,
    performance_profile_interval,
    probability_of_improvement_interval,
    task_reference,
)
from diffgym.envs.io import atomic_write_json
from diffgym.envs.noise import NOISE_VERSION_ENV, default_noise_version, noise_key_fields
from diffgym.envs.tasks import Task, list_tasks, make_task

__all__ = [
    "BENCH_FORMAT",
    "REWARD_MODES",
    "BenchConfig",
    "BenchResult",
    "TASK_SEED_SEP",
    "Trial",
    "parse_bench_task",
    "run_bench",
    "run_trial",
]

log = logging.getLogger(__name__)

EVAL_FORMAT = "diffgym-bench-eval/1"
REFERENCES_FORMAT = "diffgym-bench-references/1"
REWARD_MODES: dict[str, dict[str, str]] = {
    "irl": {"irl": "gail", "divergence": "js", "reward": "none"},
    "exact": {"irl": "none", "divergence": "js", "reward": "terminal_logp"},
}
"""The :class:`~diffgym.agents.train.TrainConfig` settings of each reward mode."""


TASK_SEED_SEP = ":"
"""``gmm2d-random:K`` names the procedural task of seed ``K`` in a benchmark's task list."""


def parse_bench_task(spec: str) -> tuple[str, dict[str, Any]]:
    """A benchmark task spec as ``(task name, make_task overrides)``.

    ``"gmm2d"`` -> ``("gmm2d", {})``; ``"gmm2d-random:3"`` -> ``("gmm2d-random", {"seed": 3})``.
    A procedural task takes only development seeds here (:data:`~diffgym.envs.tasks.DEV_SEEDS`):
    held-out seeds are evaluated once, by ``diffgym suite --split heldout``, never benchmarked.

    Raises:
        ValueError: an unknown task, a ``:K`` suffix on a task without seeds, a seed that is not
            an int in the development range.
    """
    from diffgym.envs.tasks import DEV_SEEDS, PROCEDURAL_TASKS

    if not isinstance(spec, str):
        raise ValueError(f"a task must be a name (str), got {spec!r}")
    name, sep, seed_text = spec.partition(TASK_SEED_SEP)
    if name not in list_tasks():
        raise ValueError(
            f"unknown task {name!r}; allowed: {', '.join(list_tasks())} (procedural: "
            f"{', '.join(f'{t}{TASK_SEED_SEP}K' for t in PROCEDURAL_TASKS)})"
        )
    if not sep:
        if name in PROCEDURAL_TASKS:
            raise ValueError(
                f"task {spec!r} is procedural: name its seed, {name}{TASK_SEED_SEP}K with K a "
                f"development seed {DEV_SEEDS.start}-{DEV_SEEDS.stop - 1}"
            )
        return name, {}
    if name not in PROCEDURAL_TASKS:
        raise ValueError(
            f"task {spec!r}: only procedural tasks ({', '.join(PROCEDURAL_TASKS)}) take a "
            f"{TASK_SEED_SEP}K seed"
        )
    seed = int(seed_text) if seed_text.isdecimal() and seed_text.isascii() else None
    if seed is None or str(seed) != seed_text or seed not in DEV_SEEDS:
        raise ValueError(
            f"task {spec!r}: the seed must be an int in the development range "
            f"{DEV_SEEDS.start}-{DEV_SEEDS.stop - 1} (held-out seeds are evaluated only by "
            f"`diffgym suite --split heldout`), got {seed_text!r}"
        )
    return name, {"seed": seed}


def _task_dir(spec: str) -> str:
    """The folder name of a task spec (``gmm2d-random:3`` -> ``gmm2d-random-3``)."""
    return spec.replace(TASK_SEED_SEP, "-")


def _make_bench_task(spec: str, **kwargs: Any) -> Task:
    name, overrides = parse_bench_task(spec)
    return make_task(name, **overrides, **kwargs)


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
        tasks: registered task names, or ``gmm2d-random:K`` for the procedural task of
            development seed ``K`` (:func:`parse_bench_task`).
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

        put("agents", check_names("agents", self.agents, list(AGENTS), one="agent"))
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        if not tasks:
            raise ValueError(f"tasks must not be empty; allowed: {', '.join(list_tasks())}")
        for spec in tasks:
            parse_bench_task(spec)
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must not repeat, got {tasks}")
        put("tasks", tasks)
        put("rewards", check_names("rewards", self.rewards, list(REWARD_MODES), one="reward mode"))
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
            families = check_names(
                "grid families", self.grid_families, list(FAMILIES), one="grid family"
            )
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
                if _make_bench_task(name).target is None:
                    mixtures = [t for t in self.tasks if _make_bench_task(t).target is not None]
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
        from diffgym.agents.registry import hyperparams_env_id, load_hyperparams

        steps = load_hyperparams(agent, hyperparams_env_id(parse_bench_task(task)[0])).get(
            "n_timesteps"
        )
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


def run_trial(trial: Trial) -> dict[str, Any]:
    """Train (or load, or resume) the trial's run, then evaluate its policy greedily on the
    trial's evaluation seed; the evaluation is cached in ``run_dir/bench_eval.json``.

    Runs in a Ray worker as well as locally (everything it needs is in ``trial``).

    Returns:
        The trial's record: ``metrics``, ``nfe_per_sample``, ``eval_cost``, ``train_cost`` (the
        run's ``cost.json``), ``model_sha256``, ``trained`` (whether this call trained).
    """
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import TrainConfig

    if trial.threads is not None:
        torch.set_num_threads(trial.threads)
    config = TrainConfig.from_dict(dict(trial.train))
    run_dir = Path(trial.run_dir)
    run = train_or_load(config, run_dir, device=trial.device, progress=trial.progress)
    sha, trained = run.model_sha256, run.trained_now
    key = {"model_sha256": sha, "n_eval": trial.n_eval, "eval_seed": trial.eval_seed,
           "device_kind": torch.device(trial.device).type, "greedy": True,
           **noise_key_fields()}  # the per-sample noise it was drawn with (none: version 1)
    cache = run_dir / "bench_eval.json"
    record = None
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("format") == EVAL_FORMAT and data.get("key") == key:
            record = data["record"]
    if record is None:
        task = make_task(config.task, device=trial.device, **config.task_overrides)
        sampler = PolicySampler(run.policy, task, device=trial.device, greedy=True)
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
            "nfe_per_sample": ev.nfe_per_sample,
            "eval_cost": ev.cost.to_dict(),
        }
        atomic_write_json(cache, finite_or_none({"format": EVAL_FORMAT, "key": key,
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
            atomic_write_json(self.path, finite_or_none({"format": REFERENCES_FORMAT,
                                                      "evals": self.records}))
        return self.records[key]["metrics"]


def _task_reference(
    name: str, config: BenchConfig, cache: _ReferenceCache
) -> tuple[TaskReference, dict[str, Any]]:
    """Search the task's grid (cached), pick its best point on the search seed, evaluate it and
    the default sampler on every evaluation seed; returns the normalization and a summary."""
    task = _make_bench_task(name, device=config.device)
    metric = default_metric(task)
    direction = METRIC_DIRECTIONS[metric]
    families = make_families(task, config.grid_families, points=config.grid_points,
                             **config.grid_axes)
    grid = run_grid(
        task,
        families,
        n=config.n_eval,
        seed=SEARCH_SEED,
        out_dir=config.out_dir / "grid" / _task_dir(name),
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
# The benchmark
# --------------------------------------------------------------------------------------------


def _trials(config: BenchConfig) -> list[Trial]:
    from diffgym.agents.train import TrainConfig

    trials = []
    for task, agent, reward, seed in itertools.product(
        config.tasks, config.agents, config.rewards, config.seeds
    ):
        task_name, task_overrides = parse_bench_task(task)
        train = TrainConfig(
            task=task_name,
            task_overrides=task_overrides,
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
                    config.out_dir.resolve() / "runs" / _task_dir(task)
                    / f"{agent}_{reward}_seed{seed}"
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

    remote = ray.remote(  # the workers draw the driver's per-sample noise version
        num_cpus=1, num_gpus=1 if torch.device(device).type == "cuda" else 0,
        runtime_env={"env_vars": {NOISE_VERSION_ENV: str(default_noise_version())}},
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
    write_outputs(result)
    if config.wandb:
        log_wandb(result)
    return result
