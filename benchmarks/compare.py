"""The main job: learned sampling policies against grid-search-tuned samplers (design §5).

``diffgym compare --task T`` (and :func:`run_comparison`) builds one table whose rows are

* ``default``: the task's plain Heun sampler (every knob neutral);
* ``grid/<family>``: the best point of each grid family
  (:mod:`diffgym.benchmarks.grid_families`), picked by the task's headline metric
  (``Task.headline_metric``: ``sw2`` on ``gmm2d``, ``mode_tv`` on ``gmm2d-bias``, ``fd_digits``
  on ``digits``) on the *search* seed;
* ``<agent>+<irl>/<divergence>``: policies trained by adversarial IRL
  (:class:`~diffgym.agents.train.TrainingRun`), one per training seed, sampled greedily.

Evaluation protocol (:mod:`diffgym.benchmarks.evaluate`). Every row is scored by
:func:`~diffgym.benchmarks.evaluate.evaluate_sampler`
(common random numbers) with the same ``n_eval`` samples on the same held-out *evaluation seeds*:
training seed ``k`` is paired with evaluation seed :func:`eval_seed` ``(k) = 10^6 (k + 1)`` (and,
with ``eval_repeats = R > 1``, with ``R - 1`` further seeds :func:`eval_seed` ``(k, r)``), and the
default sampler and each grid family's best point are evaluated on every one of those seeds. The
grid is searched on seed :data:`SEARCH_SEED` (sample seeds ``0 .. n_eval - 1``), disjoint from the
evaluation seeds, so the best point's reported quality carries no selection bias. A learned row's
``± std`` is over its evaluations (one per training seed and repeat); a grid row's over the same
evaluation seeds (sample standard deviation; ``nan`` with one seed). With one training seed and
``R`` repeats, the pairing measures the sampling noise of one learned sampler, at the cost of one
run; with ``R`` training seeds it also holds their seed-to-seed spread, at the cost of ``R`` runs.
Several seeds with several repeats each are paired per run (the mean over the run's seeds:
:func:`~diffgym.benchmarks.report.per_run_deltas`), since a run's evaluations share its training
noise.

Cost to obtain a row (:class:`~diffgym.agents.cost.Cost`, NFE summed over samples and
wall-clock on this machine):

* grid rows: every point of the family searched (``family_cost``); the *full grid* is the sum over
  all families (the default sampler's own evaluation excluded);
* learned rows: for every seed reported, the training run's own ledger (``cost.json``: rollouts,
  policy updates, discriminator updates and the training loop's evaluations, written by
  :class:`~diffgym.agents.train.TrainingRun`), the inference-temperature selection and the
  comparison's (first) evaluation; summed over the seeds (further evaluation repeats only
  measure the sampler, as the grid rows' evaluation seeds do, and are not counted); with an
  inference guard, also the default's search-seed run, once per row (with the first run);
* the default row: its single evaluation on the search seed.

``grid/learned`` cost ratios divide the full grid's cost by a learned row's cost (> 1: the learned
sampler was cheaper to obtain). Learned policies are evaluated at the inference candidate (by
default greedy or tau = 1; ``inference_candidates`` may add the mean action or other
temperatures) that scores best on the search seed (with ``inference_guard``, possibly the default
sampler: :func:`~diffgym.benchmarks.runs.choose_inference`), with per-sample action noise.
Inference overhead:
wall-clock of policy-guided sampling (:class:`~diffgym.agents.policy_sampling.PolicySampler`)
over :func:`~diffgym.envs.sampler.sample` driven by a fixed schedule of the policy's per-step
mean knob levels (churn and guidance ``w`` recorded on the evaluation batch; renoise left out),
with the same noise, labels, guide and batch
(:mod:`diffgym.benchmarks.overhead`). Repeats are interleaved; medians; the overhead is per sampler
transition (a renoising policy takes more transitions). It is measured on the first seed of each
learned method that samples with its policy.

Files in ``out_dir`` (all written atomically): ``results.json``, ``results.csv``, ``results.md``,
``quality_vs_cost.png``, ``action_profile.png``, ``samples.png``; ``grid/`` (the grid's own
resumable ``grid.json``), ``runs/<agent>_<divergence>_seed<k>/`` (training runs), ``evals.json``
(a cache of every evaluation) and ``samples/`` (the first evaluation seed's samples of each row).
A rerun with the same ``out_dir`` reuses finished grid points, finished runs (``final_metrics.json``
present: loaded, not retrained), resumes an interrupted run from its latest checkpoint, and reuses
cached evaluations.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffgym.agents.cost import Cost
from diffgym.benchmarks.compare_budgets import BUDGETS, CompareBudget, check_names
from diffgym.benchmarks.evaluate import (
    EVAL_REPEAT_STRIDE,
    EVAL_SEED_STRIDE,
    METRIC_DIRECTIONS,
    SEARCH_SEED,
    check_heldout_seed,
    default_metric,
    eval_seed,
    evaluate_sampler,
    plain_values,
    point_key,
    task_fingerprint,
    with_fid,
)
from diffgym.benchmarks.grid import (
    BACKENDS,
    DEFAULT_N,
    FAMILIES,
    POINT_PRESETS,
    GridResult,
    PointResult,
    make_families,
    point_task,
    run_grid,
)
from diffgym.benchmarks.overhead import measure_inference_overhead, profile_schedule
from diffgym.benchmarks.paired_guard import check_guard_se, check_paired_task
from diffgym.benchmarks.report import (
    ComparisonResult,
    ComparisonRow,
    aggregate,
    log_wandb,
    mean_profile,
    tau_name,
    write_outputs,
)
from diffgym.benchmarks.runs import (
    EvalCache,
    check_guard_fallbacks,
    check_inference_candidates,
    check_inference_guard,
    evaluate_policy,
    evaluation_record,
    load_samples_npz,
    rule_task,
    save_samples_npz,
    search_inference,
    search_reference,
    train_or_load,
    unreshaped,
)
from diffgym.envs.noise import default_noise_version
from diffgym.envs.sampler import schedule_actions
from diffgym.envs.tasks import Task, list_tasks, make_task

__all__ = [
    "BUDGETS",
    "SEARCH_SEED",
    "CompareBudget",
    "CompareConfig",
    "ComparisonResult",
    "ComparisonRow",
    "check_heldout_seed",
    "eval_seed",
    "measure_inference_overhead",
    "run_comparison",
]

log = logging.getLogger(__name__)

TRAIN_EVAL_SAMPLES = 256
"""Samples of the training loop's own final evaluation (counted in the learned cost)."""
CHECKPOINT_EVERY = 5
"""Rounds between training checkpoints (an interrupted run resumes from the latest)."""
FALLBACK_TIMESTEPS = 200_000
"""Training timesteps when neither the caller nor the agent's YAML block gives ``n_timesteps``."""
OVERHEAD_MAX_N = 1024
"""Samples per inference-overhead timing run (at most ``n_eval``)."""
INFERENCE_TEMPERATURES: tuple[float | str | None, ...] = (None, 1.0)
"""The default inference candidates of a learned policy (``CompareConfig.inference_candidates``):
temperatures tau (None: greedy; ``"mean"``: the mean action), chosen per training run on the
search seed by the primary metric, as the grid's best points are; the selection evaluations are
counted in the learned cost."""
MAX_SELECT_CHECKPOINTS = 20
"""The most milestone checkpoints a comparison chooses among (``select_checkpoints``)."""


@dataclass(frozen=True)
class CompareConfig:
    """Everything that defines a comparison (validated on construction).

    Attributes:
        task: a registered task (``gmm2d``, ``gmm2d-bias``, ``digits``, ``user``, ...).
        task_overrides: :func:`~diffgym.envs.make_task` overrides, e.g. a user-defined mixture
            ``{"means": [[-2, 0], [2, 0]], "weights": [0.3, 0.7], "model_std": 0.5}``; the same
            overrides go to training.
        agents, divergences: learners (keys of :data:`diffgym.agents.AGENTS`) and IRL reward
            divergences (keys of :data:`diffgym.rewards.DIVERGENCES`); one learned row per pair.
        seeds: training seeds (ints >= 0); seed ``k`` is evaluated on :func:`eval_seed` ``(k)``.
        eval_repeats: evaluation seeds per training run, ``eval_seed(k, r)`` for ``r <
            eval_repeats`` (> 1 needs seeds below ``EVAL_REPEAT_STRIDE``): one run evaluated on
            several seeds, so that one run's pairing is resolved at one run's cost.
        irl: ``"gail"``, ``"airl"`` or ``"none"``.
        timesteps: training transitions per run; ``None``: the agent's YAML ``n_timesteps``.
        n_eval: samples per evaluation, for grid points and every row alike.
        grid_families: grid families (default: all the task supports); grid_points: their preset.
        out_dir: output folder (``None``: nothing written, no resuming; runs go to a temporary
            folder).
        backend: grid backend, ``"local"`` or ``"ray"``.
        device: where to train, sample and evaluate.
        wandb: log the table and the plots to a wandb run (offline unless ``WANDB_MODE`` says
            otherwise or ``WANDB_API_KEY`` is set).
        overhead_repeats: interleaved timing repeats of the inference overhead.
        agent_overrides: hyperparameters for every learner (win over the YAML).
        heldout: allow a held-out seed of a procedural task (``task_overrides["seed"]`` in
            :data:`~diffgym.envs.tasks.HELDOUT_SEEDS`): the final evaluation only, never for
            tuning (``--heldout``; a suite sets it for its held-out split).
        reward_options: named reward options for every training run
            (:data:`~diffgym.rewards.REWARD_OPTIONS`, e.g. ``{"terminal_mmd_weight": 5.0}``;
            default: none, the plain f-divergence reward).
        n_envs: training sub-envs (``None``: the YAML's).
        inference_guard: a metric of the task (e.g. ``"mode_tv"``) that a learned sampler's
            inference choice must not make worse than the default sampler's, on the search
            seed: the choice is then the best primary metric among the inference candidates
            and the default sampler itself, of those no worse on the guard (``None``: the best
            primary metric among the candidates).
        inference_fallback: with ``inference_guard``, inference rules (as
            ``inference_candidates``, none of them) evaluated on the search seed only when the
            choice among the candidates is the default sampler; the best primary metric among
            them that beats the default's and is no worse on the guard (else at most
            ``inference_guard_tolerance`` worse) is then chosen
            (:func:`~diffgym.benchmarks.runs.search_inference`); their evaluations are counted
            in the learned cost when made. ``()``: none.
        inference_guard_tolerance: that slack for the fallback rules, in the guard metric's
            units (``0``: none; > 0 needs fallback rules). The candidates are always held to the
            strict guard.
        inference_guard_se: with ``inference_guard`` ``"mode_tv"`` (mixture tasks): a candidate
            may be up to this many standard errors of its paired difference with the default
            sampler worse on the guard (:mod:`~diffgym.benchmarks.paired_guard`; the reference is
            then always run on the candidates' samples, and counted). ``0``: the plain guard.
        inference_candidates: the inference rules a learned run chooses among on the search
            seed (:func:`~diffgym.benchmarks.runs.check_inference_candidates`: ``None`` or
            ``"greedy"``, ``"mean"`` for the mean action, or a temperature > 0); default
            :data:`INFERENCE_TEMPERATURES`, greedy and tau = 1. Each candidate's search-seed
            evaluation is counted in the learned cost.
        select_checkpoints: K > 1 trains every run with K milestone checkpoints (its length in
            K equal parts) and chooses, on the search seed, the best checkpoint and temperature
            together (with ``inference_guard``, or the default sampler); every candidate's
            search-seed evaluation is counted in the learned cost. 1: the final model only.
        selection_n: samples of each of those search-seed selection evaluations (``None``:
            ``n_eval``); a larger n makes the choice less noisy at its counted cost. With
            ``inference_guard``, the guard's reference (the default sampler on the search seed)
            is then run on as many samples too, once per row, and counted
            (:func:`~diffgym.benchmarks.runs.guard_reference`).
        plots: write the PNGs.
        fid_weights: the FID Inception-v3 state dict; every evaluation then also reports
            Inception FID, KID and precision/recall (image tasks only).

    Raises:
        ValueError: an unknown task, agent, divergence, irl method, grid family, preset or
            backend (each message names the allowed values); empty or repeated lists; a seed
            that is not an int >= 0; ``eval_repeats`` not an int >= 1 (or > 1 with a seed of
            ``EVAL_REPEAT_STRIDE`` or more); ``n_eval`` outside ``[2, 10^6)``; a bad, empty or
            repeated inference candidate.
    """

    task: str = "gmm2d"
    task_overrides: Mapping[str, Any] = field(default_factory=dict)
    agents: tuple[str, ...] = ("ppo",)
    divergences: tuple[str, ...] = ("js",)
    seeds: tuple[int, ...] = (0, 1, 2)
    irl: str = "gail"
    timesteps: int | None = None
    n_eval: int = DEFAULT_N
    grid_families: tuple[str, ...] | None = None
    grid_points: str = "default"
    eval_repeats: int = 1
    out_dir: Path | None = None
    backend: str = "local"
    device: str = "cpu"
    wandb: bool = False
    overhead_repeats: int = 5
    agent_overrides: Mapping[str, Any] = field(default_factory=dict)
    n_envs: int | None = None
    plots: bool = True
    fid_weights: Path | None = None
    reward_options: Mapping[str, Any] = field(default_factory=dict)
    heldout: bool = False
    inference_guard: str | None = None
    inference_guard_tolerance: float = 0.0
    inference_guard_se: float = 0.0
    inference_fallback: tuple[float | str | None, ...] = ()
    select_checkpoints: int = 1
    selection_n: int | None = None
    inference_candidates: tuple[float | str | None, ...] = INFERENCE_TEMPERATURES

    def __post_init__(self) -> None:
        from diffgym.agents.registry import AGENTS
        from diffgym.agents.train import IRL_METHODS
        from diffgym.rewards import DIVERGENCES, check_reward_options

        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.task not in list_tasks():
            raise ValueError(f"unknown task {self.task!r}; allowed: {', '.join(list_tasks())}")
        set_("agents", check_names("agents", self.agents, list(AGENTS), one="agent"))
        set_("divergences", check_names(
            "divergences", self.divergences, list(DIVERGENCES), one="divergence"))
        if self.irl not in IRL_METHODS:
            raise ValueError(f"unknown irl method {self.irl!r}; allowed: {', '.join(IRL_METHODS)}")
        seeds = tuple(self.seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must not repeat, got {seeds}")
        set_("seeds", seeds)
        reps = self.eval_repeats
        if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
            raise ValueError(f"eval_repeats must be an int >= 1, got {reps!r}")
        big = [k for k in seeds if k >= EVAL_REPEAT_STRIDE]
        if reps > 1 and big:
            raise ValueError(
                f"eval_repeats={reps} needs training seeds below {EVAL_REPEAT_STRIDE} (their "
                f"further evaluation seeds would meet other runs'), got {big}"
            )
        n_eval = self.n_eval
        if isinstance(n_eval, bool) or not isinstance(n_eval, int) or not (
            2 <= n_eval < EVAL_SEED_STRIDE
        ):
            raise ValueError(f"n_eval must be an int in [2, {EVAL_SEED_STRIDE}), got {n_eval!r}")
        if self.grid_points not in POINT_PRESETS:
            raise ValueError(
                f"unknown grid points preset {self.grid_points!r}; allowed: "
                f"{', '.join(POINT_PRESETS)}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.grid_families is not None:
            set_("grid_families", check_names(
                "grid families", self.grid_families, list(FAMILIES), one="grid family"))
        ts = self.timesteps
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int) or ts < 1):
            raise ValueError(f"timesteps must be an int >= 1, got {ts!r}")
        if isinstance(self.overhead_repeats, bool) or int(self.overhead_repeats) < 1:
            raise ValueError(f"overhead_repeats must be an int >= 1, got {self.overhead_repeats!r}")
        set_("task_overrides", plain_values(dict(self.task_overrides or {})))
        check_heldout_seed(self.task, self.task_overrides.get("seed"), self.heldout)
        set_("agent_overrides", plain_values(dict(self.agent_overrides or {})))
        set_("reward_options", check_reward_options(self.reward_options or {}))
        if self.reward_options and self.irl == "none":
            raise ValueError(f"reward options {self.reward_options} need irl 'gail' or 'airl', "
                             f"got irl {self.irl!r}")
        guard = self.inference_guard
        if guard is not None and guard not in METRIC_DIRECTIONS:
            raise ValueError(f"unknown inference guard metric {guard!r}; allowed: "
                             f"{', '.join(sorted(METRIC_DIRECTIONS))}")
        set_("inference_candidates", check_inference_candidates(self.inference_candidates))
        tol, fb = check_guard_fallbacks(guard, self.inference_guard_tolerance,
                                        self.inference_fallback, self.inference_candidates)
        set_("inference_guard_tolerance", tol)
        set_("inference_guard_se", check_guard_se(self.inference_guard_se, guard))
        set_("inference_fallback", fb)
        k = self.select_checkpoints
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SELECT_CHECKPOINTS:
            raise ValueError(f"select_checkpoints must be an int in [1, {MAX_SELECT_CHECKPOINTS}]"
                             f", got {k!r}")
        sn = self.selection_n
        if sn is not None:
            if isinstance(sn, bool) or not isinstance(sn, int) or not 2 <= sn < EVAL_SEED_STRIDE:
                raise ValueError(f"selection_n must be None or an int in [2, {EVAL_SEED_STRIDE})"
                                 f", got {sn!r}")
        if self.out_dir is not None:
            set_("out_dir", Path(self.out_dir))

    def replace(self, **changes: Any) -> CompareConfig:
        """A copy with fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def timesteps_by_agent(self) -> dict[str, int]:
        """Training transitions per agent: ``timesteps``, else the agent's YAML ``n_timesteps``,
        else :data:`FALLBACK_TIMESTEPS`."""
        from diffgym.agents.registry import hyperparams_env_id, load_hyperparams

        out = {}
        for agent in self.agents:
            if self.timesteps is not None:
                out[agent] = int(self.timesteps)
            else:
                block = load_hyperparams(agent, hyperparams_env_id(self.task))
                yaml_ts = block.get("n_timesteps")
                out[agent] = int(yaml_ts) if yaml_ts is not None else FALLBACK_TIMESTEPS
        return out


def _policy_detail(agent_overrides: Mapping[str, Any]) -> str:
    """``name=value, `` for each policy setting in ``agent_overrides["policy_kwargs"]`` (the
    features extractor's flattened; ``--policy-option``), for a learned row's detail."""
    kwargs = dict(agent_overrides.get("policy_kwargs") or {})
    flat = {**{k: v for k, v in kwargs.items() if k != "features_extractor_kwargs"},
            **dict(kwargs.get("features_extractor_kwargs") or {})}
    return "".join(f"{k}={v}, " for k, v in flat.items())


def _method_name(agent: str, irl: str, divergence: str) -> str:
    return f"{agent}+{irl}/{divergence}"


def _slug(method: str) -> str:
    return method.replace("/", "_").replace("+", "_")




# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    """What the steps of one comparison share."""

    config: CompareConfig
    task: Task
    metric: str
    direction: str
    families: list
    fingerprint: dict[str, Any]
    eval_seeds: list[int]
    out: Path | None
    runs_root: Path
    cache: EvalCache
    samples_dir: Path | None
    bar: Any
    progress: bool
    panels: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = field(default_factory=dict)
    num_trained: int = 0

    def sample_path(self, method: str) -> Path | None:
        return None if self.samples_dir is None else self.samples_dir / f"{_slug(method)}.npz"


def _samples_dir_name() -> str:
    """``samples`` (noise version 1, as before versions existed) or ``samples-noise2``: the
    saved panels follow the cache keys, so a folder rerun under another version never plots
    the other version's samples."""
    version = default_noise_version()
    return "samples" if version == 1 else f"samples-noise{version}"


def _search_grid(ctx: _Context) -> GridResult:
    """Step 1: the grid, searched on :data:`SEARCH_SEED` (resumable on its own)."""
    cfg = ctx.config
    ctx.bar.set_postfix_str("grid")
    grid = run_grid(
        ctx.task,
        ctx.families,
        n=cfg.n_eval,
        seed=SEARCH_SEED,
        out_dir=None if ctx.out is None else ctx.out / "grid",
        backend=cfg.backend,
        device=cfg.device,
        progress=ctx.progress,
    )
    ctx.bar.update(1)
    return grid


def _fixed_rows(ctx: _Context, grid: GridResult) -> list[ComparisonRow]:
    """Step 2: the default sampler and each family's best point on the evaluation seeds."""
    cfg = ctx.config
    best = grid.best(ctx.metric)
    fixed: list[tuple[str, PointResult]] = []
    if grid.default is not None:
        fixed.append(("default", grid.default))
    fixed += [(f"grid/{name}", point) for name, point in best.items()]
    rows = []
    for method, point in fixed:
        ctx.bar.set_postfix_str(method)
        per_seed = []
        for j, s in enumerate(ctx.eval_seeds):
            key = point_key(
                ctx.fingerprint, point.family, point.params, n=cfg.n_eval, seed=s,
                device=cfg.device,
            )
            record = ctx.cache.get(key)
            path = ctx.sample_path(method)
            if record is None:
                guided = any(w != 1.0 for w in point.schedule.get("guidance", ()))
                actions = schedule_actions(**point.schedule) if point.schedule else None
                ev = evaluate_sampler(
                    point_task(ctx.task, point.family, point.params), actions, n=cfg.n_eval,
                    seed=s, guided=guided, device=cfg.device,
                )
                record = evaluation_record(ev, {"method": method, "point": point.key})
                ctx.cache.put(key, record)
                if j == 0:
                    save_samples_npz(path, ev.result)
                    ctx.panels[method] = (ev.result.x, ev.result.labels)
            elif j == 0 and (loaded := load_samples_npz(path)) is not None:
                ctx.panels[method] = loaded
            per_seed.append({"eval_seed": s, **record})
            ctx.bar.update(1)
        mean, std = aggregate([r["metrics"] for r in per_seed])
        is_default = point.family == "default"
        rows.append(
            ComparisonRow(
                method=method,
                kind="default" if is_default else "grid",
                detail="plain Heun" if is_default else point.label,
                metrics=mean,
                metrics_std=std,
                per_seed=per_seed,
                nfe_per_sample=statistics.fmean(r["nfe_per_sample"] for r in per_seed),
                cost=point.cost if is_default else grid.family_cost(point.family),
                info={
                    "family": point.family,
                    "params": point.params,
                    "schedule": point.schedule,
                    "search_metrics": point.metrics,
                    "grid_points": len(grid.family_points(point.family)),
                },
            )
        )
    return rows


def _train_config(ctx: _Context, agent: str, div: str, seed: int, timesteps: int):
    from diffgym.agents.train import TrainConfig

    cfg = ctx.config
    return TrainConfig(
        task=cfg.task,
        agent=agent,
        irl=cfg.irl,
        divergence=div,
        timesteps=timesteps,
        seed=seed,
        n_envs=cfg.n_envs,
        device=cfg.device,
        checkpoint_every=CHECKPOINT_EVERY,
        keep_milestones=cfg.select_checkpoints if cfg.select_checkpoints > 1 else 0,
        eval_every=0,
        eval_samples=TRAIN_EVAL_SAMPLES,
        task_overrides=dict(cfg.task_overrides),
        agent_overrides=dict(cfg.agent_overrides),
        irl_kwargs=dict(cfg.reward_options),
    )


def _learned_row(
    ctx: _Context, agent: str, div: str, timesteps: int, grid_cost: Cost,
    default: tuple[PointResult, ComparisonRow] | None = None,
) -> ComparisonRow:
    """Step 3 for one method: train (or load) a run per seed, choose its inference temperature
    on the search seed (with ``inference_guard``, possibly the default sampler: ``default`` is
    its grid point and row), evaluate it on the paired evaluation seed."""
    cfg = ctx.config
    method = _method_name(agent, cfg.irl, div)
    per_seed, profiles, costs, run_dirs = [], [], [], []
    overhead = None
    reps = cfg.eval_repeats
    for j, k in enumerate(cfg.seeds):
        ctx.bar.set_postfix_str(f"{method} seed {k}")
        config = _train_config(ctx, agent, div, k, timesteps)
        run = train_or_load(
            config, ctx.runs_root / f"{agent}_{div}_seed{k}", device=cfg.device,
            progress=ctx.progress,
        )
        ctx.num_trained += run.trained_now
        ctx.bar.update(1)
        common = dict(config=config, method=method, task=ctx.task,
                      task_fp=ctx.fingerprint, n=cfg.n_eval, device=cfg.device, cache=ctx.cache)
        # The inference temperature (and with select_checkpoints, the checkpoint) is chosen on
        # the search seed, as grid points are.
        many = cfg.select_checkpoints > 1
        reference, allowance = search_reference(  # the guard's reference and allowance
            ctx.task, ctx.fingerprint, default and (default[0].metrics, default[0].cost),
            guard=cfg.inference_guard, n=cfg.selection_n or cfg.n_eval, n_eval=cfg.n_eval,
            guard_se=cfg.inference_guard_se, seed=SEARCH_SEED, device=cfg.device, cache=ctx.cache)
        chosen, tau, use_default, selection, selection_cost, checkpoints = search_inference(
            run.at_milestones(cfg.select_checkpoints) if many else [run],
            lambda c, t, common=common: evaluate_policy(
                run=c, **{**common, "n": cfg.selection_n or cfg.n_eval}, tau=t,
                seed=SEARCH_SEED, modes=cfg.inference_guard_se > 0)[1],
            cfg.inference_candidates, ctx.metric, ctx.direction, cfg.inference_guard,
            None if reference is None else reference[0], checkpoints=many,
            tolerance=cfg.inference_guard_tolerance, fallback=cfg.inference_fallback,
            allowance=allowance)
        if cfg.inference_guard is not None and reference is not None and j == 0:
            selection_cost += reference[1]  # the guard's reference, run once for the row
        allowed = {} if allowance is None else {"selection_guard_allowance": {  # once per run
            tau_name(t): allowance(r) for t, r in selection.items()}}
        for rep in range(reps):  # the run's evaluation seeds; the first one's cost is counted
            s, first = ctx.eval_seeds[j * reps + rep], j == 0 and rep == 0
            if use_default:  # the guard kept the default sampler: its row's evaluation
                same = default[1].per_seed[j * reps + rep]  # the default row, this seed
                assert same["eval_seed"] == s, (same["eval_seed"], s)
                record = {k: v for k, v in same.items() if k not in ("eval_seed", "point")}
                record.update(method=method, run=run.run_dir.name, profile={},
                              inference="default")  # no policy runs: no overhead to measure
                if first and "default" in ctx.panels:
                    ctx.panels[method] = ctx.panels["default"]
            else:
                key, record, sampler = evaluate_policy(
                    run=chosen, **common, tau=tau, seed=s, panels=ctx.panels if first else None,
                    samples_path=ctx.sample_path(method) if first else None)
            if rep == 0 and overhead is None and not use_default and "overhead" not in record:
                record["overhead"] = measure_inference_overhead(
                    sampler, profile_schedule(record["profile"], ctx.task.base_steps),
                    n=min(cfg.n_eval, OVERHEAD_MAX_N), seed=s, repeats=cfg.overhead_repeats)
                ctx.cache.put(key, record)
            if rep == 0 and overhead is None and not use_default:
                overhead = record["overhead"]
            per_seed.append({
                "train_seed": k, "eval_seed": s, **record, "temperature": tau,
                "selection": {tau_name(t): r["metrics"][ctx.metric] for t, r in selection.items()},
                "selection_cost": selection_cost.to_dict(), **checkpoints,
                **({} if cfg.inference_guard is None else {"selection_guard": {  # its inputs
                    **{tau_name(t): r["metrics"][cfg.inference_guard]
                       for t, r in selection.items()},
                    "default": reference[0][cfg.inference_guard]}}),  # checked: not None
                **allowed,
            })
            profiles.append(record["profile"])
            if rep == 0:
                costs.append(run.cost + selection_cost + Cost.from_dict(record["cost"]))
            ctx.bar.update(1)
        run_dirs.append(str(run.run_dir))
    mean, std = aggregate([r["metrics"] for r in per_seed])
    total = sum(costs, Cost())
    return ComparisonRow(
        method=method,
        kind="learned",
        detail=f"{agent}, {cfg.irl}, {div}, "
        + "".join(f"{k}={v}, " for k, v in cfg.reward_options.items())
        + _policy_detail(cfg.agent_overrides)
        + f"{timesteps:,} steps x {len(cfg.seeds)} "
        f"seed{'s' if len(cfg.seeds) != 1 else ''}, "
        + (f"{reps} evaluation seeds each, " if reps > 1 else "")
        + (f"best of {len(per_seed[0]['checkpoint_selection'])} checkpoints, " if many else "")
        + (f"chosen on {cfg.selection_n} samples, " if cfg.selection_n else "")
        + (f"guard tolerance {cfg.inference_guard_tolerance:g}, "
           if cfg.inference_guard_tolerance else "")
        + (f"guard allowance {cfg.inference_guard_se:g} paired s.e., "
           if cfg.inference_guard_se else "")
        + (f"fallback {', '.join(tau_name(t) for t in cfg.inference_fallback)}, "
           if cfg.inference_fallback else "")
        + "inference " + ", ".join(
            (r.get("inference") or tau_name(r.get("temperature")))
            + (f" at round {r['checkpoint_round']}/{r['total_rounds']}"
               if many and not r.get("inference") else "")
            for r in per_seed[::reps]),
        metrics=mean,
        metrics_std=std,
        per_seed=per_seed,
        nfe_per_sample=statistics.fmean(r["nfe_per_sample"] for r in per_seed),
        cost=total,
        cost_ratio_nfe=grid_cost.nfe / total.nfe if total.nfe else math.nan,
        cost_ratio_seconds=(
            grid_cost.total_seconds / total.total_seconds if total.total_seconds else math.nan
        ),
        inference_overhead_pct=None if overhead is None else overhead["overhead_pct"],
        runs=len(cfg.seeds),
        info={
            "agent": agent,
            "irl": cfg.irl,
            "divergence": div,
            "timesteps": timesteps,
            "run_dirs": run_dirs,
            "per_seed_cost": [c.to_dict() for c in costs],
            "profile": mean_profile(profiles),
            "overhead": overhead,
            # the step knob's base grid, the sigma axis of the profile
            **({"profile_sigmas": ctx.task.base_sigmas(dtype=torch.float64).tolist()}
               if ctx.task.schedule_factor > 1 else {}),
        },
    )


def run_comparison(
    config: CompareConfig | str, *, progress: bool = True, **kwargs: Any
) -> ComparisonResult:
    """Compare the default sampler, the best grid point per family and IRL-trained policies.

    See the module docstring for the protocol, the cost accounting and the files. The steps:
    the grid search (:func:`_search_grid`), the fixed rows (:func:`_fixed_rows`), the learned
    rows (:func:`_learned_row`), the report (:mod:`diffgym.benchmarks.report`).

    Args:
        config: a :class:`CompareConfig`, or a task name with the config's fields as keyword
            arguments (``run_comparison("gmm2d", seeds=(0,), n_eval=512)``).
        progress: progress bars.

    Raises:
        ValueError: see :class:`CompareConfig`; a run directory holding a run with another
            config.
        TypeError: a task override the task does not accept; keyword arguments next to a
            :class:`CompareConfig`.
        FileNotFoundError: ``fid_weights`` is not a file.
    """
    from tqdm.auto import tqdm

    if isinstance(config, str):
        config = CompareConfig(task=config, **kwargs)
    elif kwargs:
        raise TypeError(f"pass either a CompareConfig or keyword arguments, not both: {kwargs}")
    cfg = config
    t_start = time.perf_counter()
    task = make_task(cfg.task, device=cfg.device, **cfg.task_overrides)
    if cfg.fid_weights is not None:
        with_fid(task, cfg.fid_weights)
    metric = default_metric(task)
    if len(task.guidance_levels) < 2:  # no guidance to reshape: each rule is its base rule
        cands, fb = unreshaped(cfg.inference_candidates, cfg.inference_fallback)
        if (cands, fb) != (cfg.inference_candidates, cfg.inference_fallback):
            log.info("task %s has no guidance menu: inference rules %s act as %s", task.name,
                     [tau_name(t) for t in (*cfg.inference_candidates, *cfg.inference_fallback)],
                     [tau_name(t) for t in (*cands, *fb)])
            cfg = cfg.replace(inference_candidates=cands, inference_fallback=fb)
    for rule in (*cfg.inference_candidates, *cfg.inference_fallback):
        rule_task(task, rule)  # a schedule a rule cannot sample is refused before any work
    check_paired_task(task, cfg.inference_guard_se)  # as early: a task without modes to pair
    families = make_families(task, cfg.grid_families, points=cfg.grid_points)
    steps_by_agent = cfg.timesteps_by_agent()

    scratch = None
    if cfg.out_dir is None:
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="diffgym-compare-")
        runs_root, out = Path(scratch.name) / "runs", None
    else:
        out = cfg.out_dir
        out.mkdir(parents=True, exist_ok=True)
        runs_root = out / "runs"
    e_seeds = [eval_seed(k, r) for k in cfg.seeds for r in range(cfg.eval_repeats)]
    methods = [(a, d) for a in cfg.agents for d in cfg.divergences]
    stages = 1 + len(methods) * (len(cfg.seeds) + len(e_seeds)) + (1 + len(families)) * len(
        e_seeds)
    ctx = _Context(
        config=cfg,
        task=task,
        metric=metric,
        direction=METRIC_DIRECTIONS[metric],
        families=families,
        fingerprint=task_fingerprint(task),
        eval_seeds=e_seeds,
        out=out,
        runs_root=runs_root,
        cache=EvalCache(None if out is None else out / "evals.json"),
        samples_dir=None if out is None else out / _samples_dir_name(),
        bar=tqdm(total=stages, desc=f"compare {task.name}", unit="job", disable=not progress),
        progress=progress,
    )
    try:
        grid = _search_grid(ctx)
        rows = _fixed_rows(ctx, grid)
        grid_cost = grid.total_cost()
        default_row = next((r for r in rows if r.kind == "default"), None)
        default = None if grid.default is None or default_row is None else (grid.default,
                                                                             default_row)
        if cfg.inference_guard is not None:  # before any training
            check_inference_guard(cfg.inference_guard, default and default[0].metrics, task.name)
        for agent, div in methods:
            rows.append(_learned_row(ctx, agent, div, steps_by_agent[agent], grid_cost, default))
    finally:
        ctx.bar.close()
        if scratch is not None:
            scratch.cleanup()

    metric_names = [m for m in rows[0].metrics if m in METRIC_DIRECTIONS] if rows else []
    settings = {
        "task_overrides": dict(cfg.task_overrides),
        "heldout": cfg.heldout,
        "agents": list(cfg.agents),
        "divergences": list(cfg.divergences),
        "irl": cfg.irl,
        "seeds": list(cfg.seeds),
        "eval_seeds": e_seeds,
        "eval_repeats": cfg.eval_repeats,
        "timesteps": steps_by_agent,
        "n_eval": cfg.n_eval,
        "grid_families": [f.name for f in families],
        "grid_points": cfg.grid_points,
        "backend": cfg.backend,
        "device": cfg.device,
        "torch_threads": torch.get_num_threads(),
        "overhead_repeats": cfg.overhead_repeats,
        "agent_overrides": dict(cfg.agent_overrides),
        "reward_options": dict(cfg.reward_options),
        "n_envs": cfg.n_envs,
        "inference_guard": cfg.inference_guard,
        "inference_guard_tolerance": cfg.inference_guard_tolerance,
        "inference_guard_se": cfg.inference_guard_se,
        "inference_fallback": list(cfg.inference_fallback),
        "inference_candidates": list(cfg.inference_candidates),  # None: greedy
        "select_checkpoints": cfg.select_checkpoints,
        "selection_n": cfg.selection_n,
        "noise_version": default_noise_version(),
    }
    result = ComparisonResult(
        task=task.name,
        fingerprint=ctx.fingerprint,
        metric=metric,
        direction=ctx.direction,
        metric_names=metric_names,
        rows=rows,
        grid=grid,
        sigmas=task.sigmas(dtype=torch.float64).tolist(),
        settings=settings,
        out_dir=out,
        num_trained=ctx.num_trained,
        num_evaluations=ctx.cache.num_new,
    )
    result.seconds = time.perf_counter() - t_start
    if out is not None:
        write_outputs(result, task, ctx.panels, plots=cfg.plots)
    if cfg.wandb:
        log_wandb(result, out)
    return result
