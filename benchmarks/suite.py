"""The comparison over a suite of procedural tasks, aggregated into one verdict (design §5.5).

``diffgym suite --task gmm2d-random --task-seeds 0-9`` (and :func:`run_suite`) runs the
comparison of :mod:`diffgym.benchmarks.compare` (:func:`~diffgym.benchmarks.compare.run_comparison`,
unchanged: same grid, same evaluation seeds, same cost ledger; no second protocol) once per task
seed, into ``<out>/<task>-<seed>/``, then reads each comparison's rows. A killed suite resumes:
rerun it with the same ``out`` and every finished grid point, training run and evaluation is
reused by the comparison's own resume logic.

Per task and learned method (``ppo+gail/js``, ``reinforce+gail/js``, ...):

* **quality against the best grid point**: the paired difference learned - best grid point of
  the task's headline metric (``Task.headline_metric``: SW2 on ``gmm2d-random``), on the same
  evaluation seeds (:meth:`~diffgym.benchmarks.report.ComparisonResult.paired_delta`; the best
  grid point is the one the grid search picks on the search seed). The learned sampler
  **reaches** the best grid point iff the mean paired difference, signed so that positive means
  *worse*, is at most one sample standard deviation of the paired differences:
  ``mean <= +std`` for a metric to minimise (``mean >= -std`` for one to maximise). With a single
  pair (one training seed, one evaluation seed) the std is undefined and the rule is
  ``mean <= 0`` (no noise allowance that was not measured); one run on several seeds
  (``eval_repeats``) is paired on each of them;
* **mode masses against the default sampler**: the paired difference learned - default of the
  mode-mass TV (``mode_tv``) on the same evaluation seeds; *at or below the default* iff its mean
  is ``<= 0`` (undefined on tasks that do not measure ``mode_tv``);
* **cost**: full grid / learned cost to obtain, in counted denoiser evaluations (NFE) and in
  wall-clock, from the comparison's cost ledger: over all the row's training runs (``total``) and
  per training run (``x runs``; one run yields a usable sampler, as one grid search does);
* **inference rule**: each run's inference candidate (by default greedy or tau = 1;
  ``inference_candidates`` may add the mean action or other temperatures; guarded, also the
  default sampler) is chosen on the search seed; the suite reports tau=1 - greedy there (signed
  as above), the runs that chose tau = 1, guarded the runs the guard sent to the default
  sampler, and with the mean action among the candidates the runs that chose it. The evaluation
  seeds only see the chosen one.

Aggregated per method over the tasks: the fraction of tasks that reach the best grid point, the
fraction with mode TV at or below the default's (each over the tasks where it is defined), the
median and minimum NFE and wall-clock cost ratios, and the mean temperature difference. The
verdict line per method checks the targets :data:`TARGETS`: at least 80 % of tasks reached, at
least 90 % with mode TV at or below the default's, and a median full-grid / learned NFE ratio
(all runs) of at least 10.

Held-out discipline: a task with a seed split (:data:`TASK_SPLITS`: ``gmm2d-random``'s
development seeds 0-99 and held-out seeds 1000-1099) takes only seeds of the requested ``split``
(``"dev"`` by default); other tasks ignore ``split``.

Files in ``out_dir`` (atomic; the tables are rewritten after every task, so a partial suite can be
read while it runs): ``suite.json``, ``suite.csv`` (one row per task and method), ``suite.md``
(per-task table, aggregate table, verdict lines), ``suite.png`` (per-task paired differences
with ``± std`` error bars, per method), and one comparison folder per task seed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffgym.benchmarks.compare import INFERENCE_TEMPERATURES, CompareConfig, run_comparison
from diffgym.benchmarks.evaluate import finite_or_none
from diffgym.benchmarks.grid import DEFAULT_N
from diffgym.benchmarks.report import MEAN_ACTION, ComparisonResult, split_rule, tau_name
from diffgym.benchmarks.suite_outcomes import (
    MODE_METRIC,
    TARGETS,
    MethodOutcome,
    MethodSummary,
    _flag,
    _fraction,
    _g,
    _pct,
    _pm,
    _x,
    outcomes_from_comparison,
    reached,
    summarize,
)
from diffgym.envs.io import atomic_write_json, atomic_write_text, rows_to_csv
from diffgym.envs.tasks import DEV_SEEDS, HELDOUT_SEEDS, make_task

__all__ = [
    "MODE_METRIC",
    "SPLITS",
    "SUITE_FORMAT",
    "TARGETS",
    "TASK_SPLITS",
    "MethodOutcome",
    "MethodSummary",
    "SuiteConfig",
    "SuiteResult",
    "check_split",
    "finished_suite_tasks",
    "outcomes_from_comparison",
    "parse_task_seeds",
    "reached",
    "run_suite",
    "summarize",
]

SUITE_FORMAT = "diffgym-suite/1"
SPLITS = ("dev", "heldout")
TASK_SPLITS: dict[str, dict[str, range]] = {
    "gmm2d-random": {"dev": DEV_SEEDS, "heldout": HELDOUT_SEEDS},
}
"""Seed splits of the procedural tasks: ``dev`` to develop and tune on, ``heldout`` for the final
evaluation only."""


# --------------------------------------------------------------------------------------------
# Configuration and input checks
# --------------------------------------------------------------------------------------------


def parse_task_seeds(tokens: Sequence[str | int]) -> tuple[int, ...]:
    """Task seeds from ints and ranges: ``["0-3", "7", "9,12"]`` -> ``(0, 1, 2, 3, 7, 9, 12)``
    (ranges include both ends).

    Raises:
        ValueError: a token that is neither an int >= 0 nor a range ``A-B`` with ``A <= B``.
    """
    out: list[int] = []
    for token in tokens:
        if isinstance(token, int) and not isinstance(token, bool):
            parts = [str(token)]
        else:
            parts = [p.strip() for p in str(token).split(",") if p.strip()]
        for part in parts:
            lo, sep, hi = part.partition("-")
            try:
                a, b = int(lo), int(hi) if sep else int(lo)
            except ValueError:
                a = b = -1
            if a < 0 or b < a or not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
                raise ValueError(
                    f"bad task seed {part!r}: expected an int >= 0 or a range A-B with A <= B "
                    "(e.g. 0-9)"
                )
            out.extend(range(a, b + 1))
    return tuple(out)


def _span(r: range) -> str:
    return f"{r.start}-{r.stop - 1}"


def finished_suite_tasks(suite_dir: Path, *, allow_heldout: bool = False,
                         why: str = "") -> tuple[dict[str, Any], list[Path]]:
    """A finished suite folder's ``suite.json`` and its task folders, in task-seed order, for
    the scripts that study a suite after the fact.

    Raises:
        ValueError: a held-out suite without ``allow_heldout`` (``why`` says what the caller
            may do instead), or a task folder without ``results.json``.
        FileNotFoundError: no ``suite.json``.
    """
    suite_dir = Path(suite_dir)
    suite = json.loads((suite_dir / "suite.json").read_text())
    if suite.get("split") != "dev" and not allow_heldout:
        raise ValueError(f"{suite_dir} has split {suite.get('split')!r}; only development "
                         f"suites (split 'dev') are studied here{why}")
    dirs = [suite_dir / f"{suite['task']}-{k}" for k in suite["task_seeds"]]
    missing = [str(d) for d in dirs if not (d / "results.json").is_file()]
    if missing:
        raise ValueError(f"{suite_dir}: no results.json in {', '.join(missing)} (finish the "
                         "suite first)")
    return suite, dirs


def check_split(task: str, seeds: Sequence[int], split: str) -> None:
    """Held-out discipline: every seed of a task with a seed split (:data:`TASK_SPLITS`) lies in
    ``split``'s range. Tasks without a split accept any seed (``split`` is then ignored).

    Raises:
        ValueError: ``split`` is not ``"dev"`` or ``"heldout"``; a seed outside the split (the
            message names the offending seeds and the allowed range).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    ranges = TASK_SPLITS.get(task)
    if ranges is None:
        return
    bad = [s for s in seeds if s not in ranges[split]]
    if not bad:
        return
    names = {"dev": "development", "heldout": "held-out"}
    other = "heldout" if split == "dev" else "dev"
    raise ValueError(
        f"split {split!r} of task {task!r} takes {names[split]} seeds {_span(ranges[split])} "
        f"only; got {', '.join(map(str, bad))} (the {names[other]} seeds "
        f"{_span(ranges[other])} need split {other!r}"
        + (", and only for the final evaluation)" if other == "heldout" else ")")
    )


@dataclass(frozen=True)
class SuiteConfig:
    """A suite: one comparison per task seed, with the same budget (validated on construction).

    Attributes:
        task: a task that takes a ``seed`` override (``gmm2d-random``).
        task_seeds: the task seeds, ints >= 0, distinct.
        split: ``"dev"`` or ``"heldout"``: the seed range allowed for a task with a seed split
            (:func:`check_split`); ignored for other tasks.
        task_overrides: further :func:`~diffgym.envs.make_task` overrides for every task (not
            ``seed``).
        agents, divergences, irl, seeds, timesteps, n_eval, grid_families, grid_points,
        eval_repeats, backend, device, overhead_repeats, agent_overrides, n_envs, plots,
        reward_options, inference_guard, inference_guard_tolerance, inference_guard_se,
        inference_fallback,
        select_checkpoints, selection_n,
        inference_candidates: to every
            :class:`~diffgym.benchmarks.compare.CompareConfig` (``seeds`` are training seeds).
        threads: torch CPU threads while the suite runs (``None``: leave torch's setting).
        out_dir: the suite's folder (``None``: nothing written, no resuming).

    Raises:
        ValueError: empty, repeated or negative task seeds; a seed outside the split; a
            ``seed`` in ``task_overrides``; ``threads < 1``; any error of ``CompareConfig``.
    """

    task: str = "gmm2d-random"
    task_seeds: tuple[int, ...] = ()
    split: str = "dev"
    task_overrides: Mapping[str, Any] = field(default_factory=dict)
    agents: tuple[str, ...] = ("ppo",)
    divergences: tuple[str, ...] = ("js",)
    irl: str = "gail"
    seeds: tuple[int, ...] = (0, 1, 2)
    timesteps: int | None = None
    n_eval: int = DEFAULT_N
    grid_families: tuple[str, ...] | None = None
    grid_points: str = "default"
    eval_repeats: int = 1
    backend: str = "local"
    device: str = "cpu"
    overhead_repeats: int = 5
    agent_overrides: Mapping[str, Any] = field(default_factory=dict)
    n_envs: int | None = None
    plots: bool = True
    threads: int | None = None
    reward_options: Mapping[str, Any] = field(default_factory=dict)
    inference_guard: str | None = None
    inference_guard_tolerance: float = 0.0
    inference_guard_se: float = 0.0
    inference_fallback: tuple[float | str | None, ...] = ()
    select_checkpoints: int = 1
    selection_n: int | None = None
    inference_candidates: tuple[float | str | None, ...] = INFERENCE_TEMPERATURES
    out_dir: Path | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        seeds = tuple(self.task_seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"task seeds must be a non-empty list of ints >= 0, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            dup = sorted({s for s in seeds if seeds.count(s) > 1})
            raise ValueError(f"task seeds must not repeat; repeated: {dup}")
        set_("task_seeds", seeds)
        check_split(self.task, seeds, self.split)
        if "seed" in (self.task_overrides or {}):
            raise ValueError("task_overrides must not hold 'seed': the suite sets it per task")
        th = self.threads
        if th is not None and (isinstance(th, bool) or not isinstance(th, int) or th < 1):
            raise ValueError(f"threads must be an int >= 1, got {th!r}")
        if self.out_dir is not None:
            set_("out_dir", Path(self.out_dir))
        template = self.compare_config(seeds[0])  # validates every forwarded field
        for name in ("agents", "divergences", "seeds", "grid_families", "reward_options",
                     "inference_candidates", "inference_fallback"):
            set_(name, getattr(template, name))

    def replace(self, **changes: Any) -> SuiteConfig:
        """A copy with fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def task_dir(self, seed: int) -> Path | None:
        """The comparison folder of task ``seed``: ``<out_dir>/<task>-<seed>``."""
        return None if self.out_dir is None else self.out_dir / f"{self.task}-{seed}"

    def compare_config(self, seed: int) -> CompareConfig:
        """The comparison of task ``seed`` (the same as ``diffgym compare --task-seed seed``
        with these settings and ``--out`` :meth:`task_dir`)."""
        return CompareConfig(
            task=self.task,
            task_overrides={**dict(self.task_overrides or {}), "seed": seed},
            agents=self.agents,
            divergences=self.divergences,
            seeds=tuple(self.seeds),
            irl=self.irl,
            timesteps=self.timesteps,
            n_eval=self.n_eval,
            grid_families=self.grid_families,
            grid_points=self.grid_points,
            eval_repeats=self.eval_repeats,
            out_dir=self.task_dir(seed),
            backend=self.backend,
            device=self.device,
            overhead_repeats=self.overhead_repeats,
            agent_overrides=dict(self.agent_overrides or {}),
            n_envs=self.n_envs,
            plots=self.plots,
            reward_options=dict(self.reward_options or {}),
            heldout=self.split == "heldout",
            inference_guard=self.inference_guard,
            inference_guard_tolerance=self.inference_guard_tolerance,
            inference_guard_se=self.inference_guard_se,
            inference_fallback=self.inference_fallback,
            select_checkpoints=self.select_checkpoints,
            selection_n=self.selection_n,
            inference_candidates=self.inference_candidates,
        )

    def to_dict(self) -> dict[str, Any]:
        return finite_or_none(
            {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        )


# --------------------------------------------------------------------------------------------
# The result and its files
# --------------------------------------------------------------------------------------------


@dataclass
class SuiteResult:
    """The suite: per-task comparisons, per-task outcomes and per-method summaries.

    Attributes:
        config: the :class:`SuiteConfig`.
        metric, direction: the tasks' headline metric.
        comparisons: task seed -> its :class:`~diffgym.benchmarks.report.ComparisonResult`
            (only the finished ones while the suite runs).
        task_info: task seed -> the task's drawn settings (``Task.extra``).
        outcomes: every (task, learned method) outcome, in task order.
        complete: every task seed has its comparison.
        files: the files written, by kind; seconds: wall-clock of this call.
        num_trained, num_evaluations: training runs trained and evaluations computed by this
            call, summed over tasks (0 and 0: everything reused).
    """

    config: SuiteConfig
    metric: str
    direction: str
    comparisons: dict[int, ComparisonResult] = field(default_factory=dict)
    task_info: dict[int, dict[str, Any]] = field(default_factory=dict)
    outcomes: list[MethodOutcome] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    num_trained: int = 0
    num_evaluations: int = 0

    @property
    def complete(self) -> bool:
        return set(self.comparisons) == set(self.config.task_seeds)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(o.method for o in self.outcomes))

    def summaries(self) -> dict[str, MethodSummary]:
        return summarize(self.outcomes)

    def verdicts(self) -> list[str]:
        return [s.verdict() for s in self.summaries().values()]

    def table_rows(self) -> list[dict[str, Any]]:
        return [o.to_row(self.config.task) for o in self.outcomes]

    def to_csv(self) -> str:
        return rows_to_csv(self.table_rows())

    def to_markdown(self) -> str:
        cfg, m = self.config, self.metric
        guard = cfg.inference_guard is not None
        mean = any(split_rule(t)[0] == MEAN_ACTION for t in cfg.inference_candidates)
        arrow = "lower" if self.direction == "min" else "higher"
        split = (f", split {cfg.split}" if cfg.task in TASK_SPLITS else "")
        lines = [
            f"**Suite {cfg.task}{split}**: task seeds {_seed_list(cfg.task_seeds)} "
            f"({len(self.comparisons)}/{len(cfg.task_seeds)} compared); per task the comparison "
            f"of `diffgym compare` (training seeds {list(cfg.seeds)}, {cfg.eval_repeats} "
            f"evaluation seed(s) per run, n = {cfg.n_eval}, grid {cfg.grid_points}"
            + "".join(f", {k} = {v}" for k, v in cfg.reward_options.items())
            + (f", inference guard {cfg.inference_guard}" if cfg.inference_guard else "")
            + (f" (tolerance {cfg.inference_guard_tolerance:g})"
               if cfg.inference_guard_tolerance else "")
            + (f" (allowance {cfg.inference_guard_se:g} paired s.e.)"
               if cfg.inference_guard_se else "")
            + (", fallback " + ", ".join(tau_name(t) for t in cfg.inference_fallback)
               if cfg.inference_fallback else "")
            + (f", best of {cfg.select_checkpoints} checkpoints"
               if cfg.select_checkpoints > 1 else "")
            + (f", chosen on {cfg.selection_n} samples" if cfg.selection_n else "")
            + (", inference among " + ", ".join(tau_name(t) for t in cfg.inference_candidates)
               if cfg.inference_candidates != INFERENCE_TEMPERATURES else "")
            + f"). Headline metric {m} ({arrow} is better). Δ grid = learned - "
            f"best grid point, paired on the evaluation seeds (± std of the pairing); reached iff "
            f"Δ <= +1 std (one pair: Δ <= 0). Δ TV = mode TV learned - default, paired; "
            f"<= default iff Δ TV <= 0. Cost = full grid / learned NFE (all runs; per run).",
            "",
            f"| task seed | method | {m} learned | {m} best grid | {m} default | Δ grid | "
            "reached | mode TV learned | mode TV default | Δ TV | TV <= default | "
            "grid/learned NFE (per run) | grid/learned s | τ=1 - greedy |",
            "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|",
        ]
        for o in self.outcomes:
            lines.append("| " + " | ".join([
                str(o.task_seed), o.method, _g(o.learned), _g(o.best_grid), _g(o.default),
                _pm(o.delta_mean, o.delta_std), _flag(o.reached), _g(o.mode_tv_learned),
                _g(o.mode_tv_default), _pm(o.mode_tv_delta_mean, o.mode_tv_delta_std),
                _flag(o.mode_tv_ok), f"{_x(o.ratio_nfe)} ({_x(o.ratio_nfe_per_run)})",
                _x(o.ratio_seconds),
                "—" if math.isnan(o.tau1_minus_greedy) else _g(o.tau1_minus_greedy, "+.3g"),
            ]) + " |")
        lines += [
            "",
            "| method | tasks | reached | mode TV <= default | grid/learned NFE median (min) | "
            "per run median (min) | grid/learned s median (min) | τ=1 - greedy mean "
            "(no worse; runs τ=1) |" + (" runs on the default sampler |" if guard else "")
            + (" runs on the mean action |" if mean else ""),
            "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if guard else "")
            + ("---:|" if mean else ""),
        ]
        for s in self.summaries().values():
            lines.append("| " + " | ".join([
                s.method, str(s.tasks),
                f"{s.reached}/{s.reached_defined} ({_pct(s.frac_reached)})",
                f"{s.mode_tv_ok}/{s.mode_tv_defined} ({_pct(s.frac_mode_tv_ok)})",
                f"{_x(s.ratio_nfe_median)} ({_x(s.ratio_nfe_min)})",
                f"{_x(s.ratio_nfe_per_run_median)} ({_x(s.ratio_nfe_per_run_min)})",
                f"{_x(s.ratio_seconds_median)} ({_x(s.ratio_seconds_min)})",
                "—" if not s.tau1_defined else
                f"{_g(s.tau1_minus_greedy_mean, '+.3g')} ({s.tau1_no_worse}/{s.tau1_defined}; "
                f"{s.tau1_runs}/{s.runs})",
                *([f"{s.default_runs}/{s.runs}"] if guard else []),
                *([f"{s.mean_runs}/{s.runs}"] if mean else []),
            ]) + " |")
        per_task = {o.task_seed: o for o in self.outcomes}.values()
        k_d, n_d, f_d = _fraction([o.default_reached for o in per_task])
        k_g, n_g, f_g = _fraction([o.grid_mode_tv_ok for o in per_task])
        lines += ["", "τ=1 - greedy: the headline metric on the search seed, where the "
                  "comparison chooses the inference temperature (positive: τ=1 worse)"
                  + (", at the chosen checkpoint" if cfg.select_checkpoints > 1 else "")
                  + "; — where a run's inference candidates do not include both.", "",
                  f"Reference, by the same rules: the default sampler reaches the best grid point "
                  f"on {k_d}/{n_d} tasks ({_pct(f_d)}); the best grid point has mode TV <= "
                  f"default on {k_g}/{n_g} ({_pct(f_g)}).", ""]
        if cfg.task in TASK_SPLITS and cfg.split == "dev":
            lines.append("Development seeds: evidence for tuning, not the held-out result.")
        if not self.complete:
            lines.append(f"PARTIAL: {len(self.comparisons)} of {len(cfg.task_seeds)} tasks.")
        lines += [f"verdict {v}" for v in self.verdicts()] + [""]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        return finite_or_none({
            "format": SUITE_FORMAT,
            "task": cfg.task,
            "split": cfg.split if cfg.task in TASK_SPLITS else None,
            "task_seeds": list(cfg.task_seeds),
            "complete": self.complete,
            "metric": self.metric,
            "direction": self.direction,
            "targets": TARGETS,
            "settings": cfg.to_dict(),
            "tasks": [
                {
                    "task_seed": s,
                    "out_dir": None if (d := cfg.task_dir(s)) is None else str(d),
                    "task": self.task_info.get(s, {}),
                    "comparison_verdict": c.verdict(),
                    "quality_winner": c.quality_call()[0],
                }
                for s, c in self.comparisons.items()
            ],
            "outcomes": [o.to_dict() for o in self.outcomes],
            "summary": {k: s.to_dict() for k, s in self.summaries().items()},
            "verdicts": self.verdicts(),
            "num_trained": self.num_trained,
            "num_evaluations": self.num_evaluations,
            "seconds": self.seconds,
            "files": self.files,
        })


def _seed_list(seeds: Sequence[int]) -> str:
    """``0-3, 7`` (consecutive runs collapsed)."""
    parts, i = [], 0
    seeds = list(seeds)
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ", ".join(parts)


def write_suite_outputs(result: SuiteResult, *, plot: bool = True) -> None:
    """``suite.json``, ``suite.csv``, ``suite.md`` (and ``suite.png`` with ``plot``)."""
    out = result.config.out_dir
    assert out is not None
    files = {"json": out / "suite.json", "csv": out / "suite.csv", "markdown": out / "suite.md"}
    if plot and result.comparisons:
        from diffgym.benchmarks.suite_plots import plot_suite

        files["plot"] = out / "suite.png"
        plot_suite(result, files["plot"])
    result.files = {k: str(v) for k, v in files.items()}
    atomic_write_text(files["csv"], result.to_csv())
    atomic_write_text(files["markdown"], result.to_markdown())
    atomic_write_json(files["json"], result.to_dict())


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


def run_suite(config: SuiteConfig, *, progress: bool = True) -> SuiteResult:
    """Run (or resume) one comparison per task seed and aggregate them; see the module docstring.

    Every task is built first, so a task that takes no ``seed`` or a bad seed fails before any
    work. The tables are rewritten after each task; the plot once at the end.

    Raises:
        ValueError: see :class:`SuiteConfig`; a comparison folder holding another config.
        TypeError: the task takes no ``seed`` override (or another override it does not accept).
    """
    import torch
    from tqdm.auto import tqdm

    cfg = config
    t_start = time.perf_counter()
    tasks = {s: make_task(cfg.task, **{**dict(cfg.task_overrides), "seed": s})
             for s in cfg.task_seeds}
    first = next(iter(tasks.values()))
    from diffgym.benchmarks.evaluate import METRIC_DIRECTIONS, default_metric

    metric = default_metric(first)
    result = SuiteResult(
        config=cfg, metric=metric, direction=METRIC_DIRECTIONS[metric],
        task_info={s: dict(t.extra) for s, t in tasks.items()},
    )
    if cfg.out_dir is not None:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    bar = tqdm(cfg.task_seeds, desc=f"suite {cfg.task}", unit="task", disable=not progress)
    try:
        for seed in bar:
            bar.set_postfix_str(f"seed {seed}")
            comparison = run_comparison(cfg.compare_config(seed), progress=progress)
            result.comparisons[seed] = comparison
            result.outcomes += outcomes_from_comparison(comparison, seed)
            result.num_trained += comparison.num_trained
            result.num_evaluations += comparison.num_evaluations
            result.seconds = time.perf_counter() - t_start
            if cfg.out_dir is not None:
                write_suite_outputs(result, plot=False)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    result.seconds = time.perf_counter() - t_start
    if cfg.out_dir is not None:
        write_suite_outputs(result, plot=cfg.plots)
    return result
