"""Grid-search baselines evaluated with the common-random-numbers protocol (design §5).

Every point of the families of :mod:`diffgym.benchmarks.grid_families`, and the default sampler
(plain Heun), is evaluated by :func:`~diffgym.benchmarks.evaluate.evaluate_sampler` with the same
protocol a learned policy is evaluated with (:mod:`diffgym.benchmarks.evaluate`): sample ``b``
draws its noise from its own stream seeded ``seed + b``, labels are drawn once from a generator
seeded ``seed``, and the metrics' reference data from one seeded ``seed + 1``. A point's result
therefore depends only on the task, the point, ``n`` and ``seed``.

:func:`run_grid` writes ``grid.json`` and ``grid.csv`` atomically after every point; a rerun with
the same ``out_dir`` reuses every finished point (points are keyed by a hash of the task, family,
parameters, ``n`` and ``seed``). ``backend="ray"`` runs the pending points as a Ray Tune
``grid_search`` (:mod:`diffgym.benchmarks.ray_runner`) and records the same table.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffgym.agents.cost import Cost
from diffgym.benchmarks.evaluate import (
    METRIC_DIRECTIONS,
    SamplerEvaluation,
    _check_n,
    crn_sample,
    default_metric,
    eval_labels,
    eval_seeds,
    evaluate_sampler,
    point_key,
    reference_seed,
    task_fingerprint,
)
from diffgym.benchmarks.grid_families import (
    CHURN_CAP,
    FAMILIES,
    POINT_PRESETS,
    ChurnFamily,
    GridFamily,
    GuidanceFamily,
    IntervalFamily,
    ScheduleFamily,
    _check_family,
    edm_churn_gammas,
    guidance_interval_weights,
    make_families,
    point_task,
    task_knobs,
)
from diffgym.envs.io import atomic_write_json, atomic_write_text, locked, rows_to_csv
from diffgym.envs.noise import default_noise_version
from diffgym.envs.sampler import schedule_actions
from diffgym.envs.tasks import Task

__all__ = [
    "BACKENDS",
    "CHURN_CAP",
    "DEFAULT_N",
    "FAMILIES",
    "POINT_PRESETS",
    "ChurnFamily",
    "GridFamily",
    "GridResult",
    "GuidanceFamily",
    "IntervalFamily",
    "PointResult",
    "ScheduleFamily",
    "SamplerEvaluation",
    "crn_sample",
    "default_metric",
    "edm_churn_gammas",
    "eval_labels",
    "eval_seeds",
    "evaluate_point",
    "evaluate_sampler",
    "guidance_interval_weights",
    "make_families",
    "point_key",
    "point_task",
    "print_grid_table",
    "reference_seed",
    "run_grid",
    "task_fingerprint",
    "task_knobs",
]

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
DEFAULT_N = 2048  # samples per grid point (and per evaluation of any method)
DEFAULT_FAMILY = "default"  # the record name of the default sampler (all knobs neutral)
GRID_FORMAT = "diffgym-grid/1"


@dataclass(frozen=True)
class PointResult:
    """One evaluated grid point (or the default sampler, family ``"default"``).

    Attributes:
        key: :func:`point_key` of the point.
        family: family name, or ``"default"``.
        params: the point, e.g. ``{"w": 2.0}`` (empty for the default sampler).
        metrics: task metrics.
        cost: ``nfe`` summed over the ``samples``; seconds ``{"grid_point", "metrics"}``.
        schedule: the per-step tables the point ran with (``schedule_actions`` arguments).
        noise_version: the per-sample noise generator it was drawn with (a record written before
            versions existed has none: version 1); the key encodes it too.
    """

    key: str
    family: str
    params: dict[str, float]
    metrics: dict[str, float]
    cost: Cost
    schedule: dict[str, list[float]]
    noise_version: int = 1

    @property
    def nfe_per_sample(self) -> float:
        return self.cost.nfe_per_sample

    @property
    def label(self) -> str:
        """``family(p=v, ...)`` for tables."""
        if not self.params:
            return self.family
        inner = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.family}({inner})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "family": self.family,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "nfe_per_sample": self.nfe_per_sample,
            "cost": self.cost.to_dict(),
            "schedule": {k: list(v) for k, v in self.schedule.items()},
            "noise_version": self.noise_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointResult:
        return cls(
            key=str(data["key"]),
            family=str(data["family"]),
            params={k: float(v) for k, v in data["params"].items()},
            metrics={k: float(v) for k, v in data["metrics"].items()},
            cost=Cost.from_dict(data["cost"]),
            schedule={k: [float(x) for x in v] for k, v in data.get("schedule", {}).items()},
            noise_version=int(data.get("noise_version", 1)),
        )


@dataclass(frozen=True)
class _PointSpec:
    """A point to evaluate: its key, family name, parameters and schedule tables."""

    key: str
    family: str
    params: dict[str, float]
    schedule: dict[str, list[float]]

    @property
    def guided(self) -> bool:
        return any(w != 1.0 for w in self.schedule.get("guidance", ()))


def _specs(
    task: Task,
    families: Sequence[GridFamily],
    *,
    n: int,
    seed: int,
    include_default: bool,
    device: torch.device | str,
) -> list[_PointSpec]:
    fp = task_fingerprint(task)
    sigmas = task.sigmas(dtype=torch.float64)
    specs = []
    if include_default:
        key = point_key(fp, DEFAULT_FAMILY, {}, n=n, seed=seed, device=device)
        specs.append(_PointSpec(key, DEFAULT_FAMILY, {}, {}))
    for family in families:
        for params in family.points():
            key = point_key(fp, family.name, params, n=n, seed=seed, device=device)
            specs.append(_PointSpec(key, family.name, dict(params), family.tables(params, sigmas)))
    return specs


def _evaluate_spec(
    task: Task, spec: _PointSpec, *, n: int, seed: int, device: torch.device | str
) -> PointResult:
    actions = schedule_actions(**spec.schedule) if spec.schedule else None
    ev = evaluate_sampler(
        point_task(task, spec.family, spec.params), actions, n=n, seed=seed,
        guided=spec.guided, device=device, category="grid_point",
    )
    return PointResult(spec.key, spec.family, spec.params, ev.metrics, ev.cost, spec.schedule,
                       noise_version=default_noise_version())


def evaluate_point(
    task: Task,
    family: GridFamily | None,
    params: Mapping[str, float] | None = None,
    *,
    n: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> PointResult:
    """Evaluate one point of ``family`` (``None``: the default sampler) with the CRN protocol.

    Raises:
        ValueError: ``n < 2``; a point that is not in the family's grid.
    """
    _check_n(n)
    if family is None:
        name, params, schedule = DEFAULT_FAMILY, {}, {}
    else:
        params = {k: float(v) for k, v in (params or {}).items()}
        if params not in family.points():
            raise ValueError(f"{params} is not a point of the {family.name} grid {family.config()}")
        name, schedule = family.name, family.tables(params, task.sigmas(dtype=torch.float64))
    key = point_key(task_fingerprint(task), name, params, n=n, seed=seed, device=device)
    return _evaluate_spec(
        task, _PointSpec(key, name, dict(params), schedule), n=n, seed=seed, device=device
    )


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class GridResult:
    """A (possibly partial) grid: the finished points in grid order, the default sampler first.

    Attributes:
        task: the task's fingerprint (:func:`task_fingerprint`).
        n, seed: the evaluation protocol.
        families: each family's axis values.
        points: finished :class:`PointResult` records, in grid order.
        num_points: points in the whole grid (the default sampler included).
        num_evaluated, num_reused: points computed in this run / taken from ``grid.json``.
        path: the ``grid.json`` written, if any.
    """

    task: dict[str, Any]
    n: int
    seed: int
    families: dict[str, dict[str, list[float]]]
    points: list[PointResult]
    num_points: int
    num_evaluated: int = 0
    num_reused: int = 0
    path: Path | None = None

    @property
    def complete(self) -> bool:
        return len(self.points) == self.num_points

    @property
    def default(self) -> PointResult | None:
        """The default sampler's record, if evaluated."""
        return next((p for p in self.points if p.family == DEFAULT_FAMILY), None)

    def family_points(self, family: str) -> list[PointResult]:
        """The finished points of ``family``.

        Raises:
            ValueError: ``family`` is not in this grid.
        """
        if family not in self.families and family != DEFAULT_FAMILY:
            raise ValueError(
                f"family {family!r} is not in this grid; its families: {', '.join(self.families)}"
            )
        return [p for p in self.points if p.family == family]

    def best(self, metric: str) -> dict[str, PointResult]:
        """The best finished point of each family by ``metric`` (direction from
        ``METRIC_DIRECTIONS``; ``nan`` values are skipped; ties keep the first in grid order).

        Raises:
            ValueError: ``metric`` has no known direction or is not measured on this task.
        """
        if metric not in METRIC_DIRECTIONS:
            raise ValueError(
                f"unknown metric {metric!r}; allowed: {', '.join(sorted(METRIC_DIRECTIONS))}"
            )
        measured = sorted({k for p in self.points for k in p.metrics})
        if self.points and metric not in measured:
            raise ValueError(
                f"metric {metric!r} is not measured on task {self.task['name']!r}; "
                f"measured: {', '.join(measured)}"
            )
        sign = 1.0 if METRIC_DIRECTIONS[metric] == "min" else -1.0
        best: dict[str, PointResult] = {}
        for family in self.families:
            scored = [p for p in self.family_points(family) if not math.isnan(p.metrics[metric])]
            if scored:
                best[family] = min(scored, key=lambda p: sign * p.metrics[metric])
        return best

    def family_cost(self, family: str) -> Cost:
        """Summed cost of the finished points of ``family``."""
        return sum((p.cost for p in self.family_points(family)), Cost())

    def total_cost(self, *, include_default: bool = False) -> Cost:
        """The grid's cost: the sum over every finished point of every family (the default
        sampler's evaluation is a separate row and is left out unless asked for)."""
        return sum(
            (p.cost for p in self.points if include_default or p.family != DEFAULT_FAMILY), Cost()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GRID_FORMAT,
            "task": self.task,
            "n": self.n,
            "seed": self.seed,
            "families": self.families,
            "num_points": self.num_points,
            "complete": self.complete,
            "total_cost": self.total_cost().to_dict(),
            "points": [p.to_dict() for p in self.points],
        }

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows (one per point) for CSV: key, family, each parameter, cost, metrics."""
        axes = list(dict.fromkeys(k for p in self.points for k in p.params))
        metrics = list(dict.fromkeys(k for p in self.points for k in p.metrics))
        rows = []
        for p in self.points:
            row: dict[str, Any] = {"key": p.key, "family": p.family}
            row.update({a: p.params.get(a, "") for a in axes})
            row.update(
                {
                    "nfe": p.cost.nfe,
                    "samples": p.cost.samples,
                    "nfe_per_sample": p.nfe_per_sample,
                    "grid_point_seconds": p.cost.seconds.get("grid_point", 0.0),
                    "metrics_seconds": p.cost.seconds.get("metrics", 0.0),
                }
            )
            row.update({m: p.metrics.get(m, "") for m in metrics})
            rows.append(row)
        return rows

    def to_csv(self) -> str:
        return rows_to_csv(self.rows())

    @classmethod
    def load(cls, path: str | os.PathLike) -> GridResult:
        """Read a ``grid.json`` (or the folder holding it) written by :func:`run_grid`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a grid file.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "grid.json"
        data = _read_grid_json(path)
        if data is None:
            raise FileNotFoundError(f"{path} not found")
        return cls(
            task=data["task"],
            n=int(data["n"]),
            seed=int(data["seed"]),
            families=data["families"],
            points=[PointResult.from_dict(p) for p in data["points"]],
            num_points=int(data["num_points"]),
            path=path,
        )


def _read_grid_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); move it away to start over") from err
    if not isinstance(data, dict) or data.get("format") != GRID_FORMAT:
        raise ValueError(f"{path} is not a {GRID_FORMAT} file; move it away to start over")
    return data


# --------------------------------------------------------------------------------------------
# Running a grid
# --------------------------------------------------------------------------------------------


class _Recorder:
    """Holds finished records; rewrites ``grid.json`` / ``grid.csv`` atomically after each one.

    Records read from an earlier ``grid.json`` that are not in this grid are kept in the file
    under ``"other_points"`` (nothing computed is ever thrown away).
    """

    def __init__(
        self,
        *,
        specs: list[_PointSpec],
        out_dir: Path | None,
        header: dict[str, Any],
    ) -> None:
        self.specs = specs
        self.out_dir = out_dir
        self.header = header
        self.done: dict[str, PointResult] = {}
        self.other: list[dict[str, Any]] = []
        self.num_evaluated = 0
        if out_dir is not None:
            self._load(out_dir / "grid.json")

    def _load(self, path: Path) -> None:
        data = _read_grid_json(path)
        if data is None:
            return
        wanted = {s.key for s in self.specs}
        for raw in data.get("points", []) + data.get("other_points", []):
            if raw["key"] in wanted:
                self.done[raw["key"]] = PointResult.from_dict(raw)
            else:
                self.other.append(raw)
        log.info("resuming %s: %d of %d points already done", path, len(self.done), len(self.specs))

    @property
    def pending(self) -> list[_PointSpec]:
        return [s for s in self.specs if s.key not in self.done]

    def result(self, num_reused: int) -> GridResult:
        path = None if self.out_dir is None else self.out_dir / "grid.json"
        return GridResult(
            points=[self.done[s.key] for s in self.specs if s.key in self.done],
            num_points=len(self.specs),
            num_evaluated=self.num_evaluated,
            num_reused=num_reused,
            path=path,
            **self.header,
        )

    def add(self, record: PointResult) -> None:
        self.done[record.key] = record
        self.num_evaluated += 1
        self.write()

    def write(self) -> None:
        """Rewrite ``grid.json`` / ``grid.csv`` under the folder's lock, first merging in what
        another writer (a concurrent ``diffgym grid`` into the same folder) has saved there:
        its points of this grid are taken, its other points kept under ``"other_points"``."""
        if self.out_dir is None:
            return
        path = self.out_dir / "grid.json"
        with locked(self.out_dir / "grid.lock"):
            data = _read_grid_json(path)
            if data is not None:
                wanted = {s.key for s in self.specs}
                known = {r["key"] for r in self.other}
                for raw in data.get("points", []) + data.get("other_points", []):
                    if raw["key"] in wanted:
                        self.done.setdefault(raw["key"], PointResult.from_dict(raw))
                    elif raw["key"] not in known:
                        self.other.append(raw)
                        known.add(raw["key"])
            result = self.result(0)
            data = result.to_dict()
            if self.other:
                data["other_points"] = self.other
            atomic_write_json(path, data)
            atomic_write_text(self.out_dir / "grid.csv", result.to_csv())


def run_grid(
    task: Task,
    families: Sequence[GridFamily | str] | None = None,
    *,
    n: int = DEFAULT_N,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    backend: str = "local",
    num_cpus: int | None = None,
    device: torch.device | str = "cpu",
    include_default: bool = True,
    progress: bool = True,
    on_point: Callable[[PointResult], None] | None = None,
) -> GridResult:
    """Evaluate every point of ``families`` (and the default sampler) under the CRN protocol.

    Args:
        task: the task; moved to ``device`` by the caller (``make_task(..., device=...)``).
        families: :class:`GridFamily` instances, or names resolved with their ``"default"``
            preset; ``None``: every family the task supports.
        n: samples per point, ``>= 2``.
        seed: protocol seed (see :func:`evaluate_sampler`).
        out_dir: folder of ``grid.json`` and ``grid.csv``, rewritten atomically after every point;
            finished points found there are reused, not recomputed. ``None``: nothing written.
        backend: ``"local"`` (in this process, one point after another) or ``"ray"`` (a Ray Tune
            ``grid_search``, one CPU per trial (and one GPU when ``device`` is CUDA); Tune's files
            go to ``out_dir/ray``, or a temporary folder when ``out_dir`` is None).
        num_cpus: local: torch threads for the run; ray: CPUs given to ``ray.init`` (all when
            ``None``). An already-initialised Ray (e.g. a cluster) is used as it is.
        device: where to sample.
        include_default: also evaluate the default sampler (family ``"default"``).
        progress: show a progress bar.
        on_point: called with each newly evaluated point after it is written (not for reused
            points); an exception it raises stops the grid, with the point already saved.

    Returns:
        The :class:`GridResult`, default sampler first, then the families' points in order.

    Raises:
        ValueError: ``n < 2``, an unknown backend, an unknown family or one whose knob the task
            lacks, repeated family names, ``num_cpus < 1``, an unreadable ``grid.json``.
        ImportError: ``backend="ray"`` without Ray installed (``pip install 'diffgym[ray]'``).
    """
    _check_n(n)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if num_cpus is not None and (isinstance(num_cpus, bool) or int(num_cpus) < 1):
        raise ValueError(f"num_cpus must be an int >= 1, got {num_cpus!r}")
    if families is None:
        families = make_families(task)
    names = [f if isinstance(f, str) else f.name for f in families]
    if len(set(names)) != len(names):
        raise ValueError(f"grid families must not repeat, got {names}")
    resolved: list[GridFamily] = []
    for family in families:
        if isinstance(family, str):
            resolved.extend(make_families(task, [family]))
        else:
            _check_family(task, family.name)
            resolved.append(family)

    specs = _specs(
        task, resolved, n=n, seed=seed, include_default=include_default, device=device
    )
    header = {
        "task": task_fingerprint(task),
        "n": n,
        "seed": int(seed),
        "families": {f.name: f.config() for f in resolved},
    }
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(specs=specs, out_dir=out, header=header)
    num_reused = len(recorder.done)
    pending = recorder.pending
    recorder.write()

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(specs),
        initial=num_reused,
        desc=f"grid {task.name}",
        disable=not progress,
        unit="pt",
    )

    def finish(record: PointResult) -> None:
        recorder.add(record)
        bar.update(1)
        if on_point is not None:
            on_point(record)

    try:
        if backend == "local":
            _run_local(
                task, pending, n=n, seed=seed, device=device, num_cpus=num_cpus, finish=finish
            )
        else:
            from diffgym.benchmarks.ray_runner import run_ray

            run_ray(
                task,
                pending,
                n=n,
                seed=seed,
                device=device,
                num_cpus=num_cpus,
                out_dir=out,
                finish=finish,
            )
    finally:
        bar.close()
    result = recorder.result(num_reused)
    log.info(
        "grid %s: %d points (%d evaluated, %d reused), NFE %d, %.1f s",
        task.name,
        len(result.points),
        result.num_evaluated,
        num_reused,
        result.total_cost().nfe,
        result.total_cost().total_seconds,
    )
    return result


def _run_local(
    task: Task,
    pending: list[_PointSpec],
    *,
    n: int,
    seed: int,
    device: torch.device | str,
    num_cpus: int | None,
    finish: Callable[[PointResult], None],
) -> None:
    threads = torch.get_num_threads()
    if num_cpus is not None:
        torch.set_num_threads(int(num_cpus))
    try:
        for spec in pending:
            finish(_evaluate_spec(task, spec, n=n, seed=seed, device=device))
    finally:
        torch.set_num_threads(threads)


def print_grid_table(result: GridResult, metric: str) -> None:
    """Print the default sampler and the best point of each family by ``metric``, with costs."""
    from rich.console import Console
    from rich.table import Table

    best = result.best(metric)
    direction = METRIC_DIRECTIONS[metric]
    rows = ([result.default] if result.default is not None else []) + list(best.values())
    metric_names = list(dict.fromkeys(k for p in rows for k in p.metrics))
    table = Table(
        title=f"{result.task['name']}: best point per family by {metric} ({direction}); "
        f"n={result.n}, seed={result.seed}"
    )
    for col in ("sampler", "points", *metric_names, "NFE/sample", "family NFE", "family s"):
        table.add_column(col, justify="left" if col == "sampler" else "right")
    for p in rows:
        fam_cost = result.family_cost(p.family)
        table.add_row(
            p.label,
            str(len(result.family_points(p.family))),
            *[f"{p.metrics.get(m, math.nan):.4g}" for m in metric_names],
            f"{p.nfe_per_sample:.4g}",
            f"{fam_cost.nfe:,}",
            f"{fam_cost.total_seconds:.1f}",
        )
    console = Console(width=160)
    console.print(table)
    total = result.total_cost()
    grid_points = sum(1 for p in result.points if p.family != DEFAULT_FAMILY)
    status = "" if result.complete else f" (incomplete: {len(result.points)}/{result.num_points})"
    console.print(
        f"grid total{status}: {grid_points} points, NFE x samples {total.nfe:,}, "
        f"{total.total_seconds:.1f} s wall-clock "
        f"(sampling {total.seconds.get('grid_point', 0.0):.1f} s, "
        f"metrics {total.seconds.get('metrics', 0.0):.1f} s)"
    )
