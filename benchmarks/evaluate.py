"""The evaluation protocol (design §5): every protocol seed, common-random-numbers sampling, task
metrics, the noise floor and result fingerprints, defined once.

Seeds:

* :data:`SEARCH_SEED` (0): the protocol seed a grid is searched on, and on which a learned policy's
  inference temperature is chosen.
* :func:`eval_seed` ``(k) = 10^6 (k + 1)``: the held-out evaluation seed paired with training seed
  ``k``; every row of a comparison is evaluated on the same evaluation seeds.
* On protocol seed ``s`` sample ``b`` draws its sampler noise from its own stream seeded
  ``s + b`` (:func:`eval_seeds`), its label from a generator seeded ``s`` (:func:`eval_labels`),
  its policy action noise from ``ACTION_SEED_OFFSET + s + b``, and the metrics score against real
  reference data drawn with :func:`reference_seed` ``(s) = s + 1`` (a task with a fixed
  ``Task.reference``, such as ``digits``, scores against that set on every seed; the seed then
  drives only the metrics' own random draws).
* Training-time evaluations (:class:`TrainingEvaluator`) sample with
  ``TRAIN_EVAL_SEED_OFFSET + training seed`` and score against reference seed
  :data:`TRAIN_EVAL_REFERENCE_SEED`.
* The noise floor (:func:`noise_floor`) scores real data drawn with
  ``s + NOISE_FLOOR_SAMPLE_OFFSET`` against the reference set of protocol seed ``s``.

Metrics: each task declares its metric suite (``Task.metric_suite``, a key of
:data:`METRIC_SUITES`) and its headline metric (``Task.headline_metric``), so a new task needs no
edit here; :func:`register_metric_suite` adds a new kind of task.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffgym.agents.cost import Cost, Stopwatch
from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET, PolicySampler
from diffgym.envs.denoisers import FullCovGaussianMixture, GaussianMixture
from diffgym.envs.noise import noise_key_fields
from diffgym.envs.sampler import ActionFn, PerSampleNoise, SampleResult, sample
from diffgym.envs.tasks import Task

__all__ = [
    "ACTION_SEED_OFFSET",
    "EVAL_REPEAT_STRIDE",
    "EVAL_SEED_STRIDE",
    "FID_WEIGHTS_KEY",
    "INCEPTION_METRICS",
    "METRIC_DIRECTIONS",
    "METRIC_SUITES",
    "NOISE_FLOOR_SAMPLE_OFFSET",
    "PROTOCOL_VERSION",
    "SEARCH_SEED",
    "TRAIN_EVAL_REFERENCE_SEED",
    "TRAIN_EVAL_SEED_OFFSET",
    "MetricSuite",
    "SamplerEvaluation",
    "TrainingEvaluator",
    "check_heldout_seed",
    "check_seeds",
    "crn_sample",
    "default_metric",
    "eval_labels",
    "eval_seed",
    "eval_seeds",
    "evaluate_sampler",
    "measured_metrics",
    "noise_floor",
    "plain_values",
    "point_key",
    "reference_seed",
    "register_metric_suite",
    "task_fingerprint",
    "task_metrics",
    "with_fid",
]

# --------------------------------------------------------------------------------------------
# Protocol seeds
# --------------------------------------------------------------------------------------------

PROTOCOL_VERSION = 1
"""Bump when the evaluation protocol changes: cached records keyed with the old one stop
matching."""
SEARCH_SEED = 0
"""Protocol seed on which a grid is searched (and the best point per family picked)."""
EVAL_SEED_STRIDE = 1_000_000
"""Evaluation seed of training seed ``k``: ``EVAL_SEED_STRIDE * (k + 1)``; its sample seeds never
meet the search seed's, nor each other's, while ``n < EVAL_SEED_STRIDE``."""
EVAL_REPEAT_STRIDE = 1_000
"""Further evaluation seeds of one run (:func:`eval_seed` with ``repeat > 0``) are offset by
``repeat * EVAL_REPEAT_STRIDE`` strides, so they never meet any run's evaluation seeds while the
training seeds stay below ``EVAL_REPEAT_STRIDE``."""
TRAIN_EVAL_SEED_OFFSET = 10_000
"""Training-time evaluations sample with seed ``TRAIN_EVAL_SEED_OFFSET + training seed``."""
TRAIN_EVAL_REFERENCE_SEED = 20_000
"""Training-time evaluations score against reference data drawn with this seed."""
NOISE_FLOOR_SAMPLE_OFFSET = 7
"""The noise floor's real "samples" of protocol seed ``s`` are drawn with seed
``s + NOISE_FLOOR_SAMPLE_OFFSET``."""


def eval_seed(train_seed: int, repeat: int = 0) -> int:
    """The evaluation (protocol) seed paired with training seed ``train_seed``; ``repeat > 0``
    gives the run's further evaluation seeds (``CompareConfig.eval_repeats``),
    ``EVAL_SEED_STRIDE * (train_seed + 1 + repeat * EVAL_REPEAT_STRIDE)``.

    Raises:
        ValueError: ``repeat < 0``, or ``repeat > 0`` with ``train_seed >= EVAL_REPEAT_STRIDE``
            (its seeds would meet another run's).
    """
    train_seed, repeat = int(train_seed), int(repeat)
    if repeat < 0 or (repeat > 0 and not 0 <= train_seed < EVAL_REPEAT_STRIDE):
        raise ValueError(
            f"evaluation repeat {repeat} of training seed {train_seed}: repeats are ints >= 0, "
            f"and repeats > 0 need a training seed in [0, {EVAL_REPEAT_STRIDE})"
        )
    return EVAL_SEED_STRIDE * (train_seed + 1 + repeat * EVAL_REPEAT_STRIDE)


def reference_seed(seed: int) -> int:
    """Seed of the real reference set that an evaluation on protocol seed ``seed`` is scored
    against (``seed + 1``; the samples themselves use ``seed + b``)."""
    return int(seed) + 1


def eval_seeds(n: int, seed: int) -> range:
    """Per-sample noise seeds of the evaluation protocol: ``seed, ..., seed + n - 1``."""
    return range(int(seed), int(seed) + int(n))


def eval_labels(task: Task, n: int, seed: int) -> torch.Tensor | None:
    """``(n,)`` labels of the evaluation protocol (CPU), drawn from a generator seeded ``seed``."""
    return task.sample_labels(n, torch.Generator().manual_seed(int(seed)))


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (samples per point), got {n!r}")
    return n


# --------------------------------------------------------------------------------------------
# Metric suites
# --------------------------------------------------------------------------------------------

FID_WEIGHTS_KEY = "fid_weights"
"""``Task.extra`` key of the Inception weights file that switches FID on (see :func:`with_fid`)."""

METRIC_DIRECTIONS = {
    "logp": "max",
    "mode_tv": "min",
    "mode_recall": "max",
    "sw2": "min",
    "mmd": "min",
    "fd_digits": "min",
    "kid": "min",
    "precision": "max",
    "recall": "max",
    "class_tv": "min",
    "label_accuracy": "max",
    "fid": "min",
    "kid_inception": "min",
    "precision_inception": "max",
    "recall_inception": "max",
    "bayes_accuracy": "max",
    "class_sw2": "min",
}
"""Whether a larger (``"max"``) or smaller (``"min"``) value of each metric is better."""

INCEPTION_METRICS = ("fid", "kid_inception", "precision_inception", "recall_inception")

SuiteFn = Callable[[Task, torch.Tensor, "torch.Tensor | None", torch.Tensor, torch.Generator],
                   dict[str, float]]


@dataclass(frozen=True)
class MetricSuite:
    """The metrics of a kind of task.

    Attributes:
        names: the metric names the suite reports, in column order (each a key of
            :data:`METRIC_DIRECTIONS`).
        fn: ``fn(task, x, labels, reference, generator) -> {name: value}``; ``reference`` is the
            reference set (the generator's first draw) on ``x``'s device, ``generator`` the
            generator after it. Suites compute on the samples' device.
    """

    names: tuple[str, ...]
    fn: SuiteFn


def _mixture_suite(task, x, labels, ref, gen) -> dict[str, float]:
    from diffgym.benchmarks import metrics

    # (the metrics compute in float64 on every device but mps)
    return metrics.mixture_metrics(x.detach(), task.target, ref, gen)


def _conditional_mixture_suite(task, x, labels, ref, gen) -> dict[str, float]:
    from diffgym.benchmarks import conditional_metrics as metrics

    if labels is None:
        raise ValueError(f"task {task.name!r} is conditional: its metrics need the labels")
    lab = labels.detach().cpu().long()
    # the reference has the samples' own labels: class-conditional distances compare like
    ref_c, ref_lab = task.target.sample(lab.shape[0], gen, lab, dtype=torch.float64)
    x64 = x.detach().to("cpu", torch.float64)
    return metrics.conditional_mixture_metrics(x64, lab, task.target, ref_c, ref_lab, gen)


def _digits_suite(task, x, labels, ref, gen) -> dict[str, float]:
    from diffgym.benchmarks.digits_metrics import digits_metrics

    return digits_metrics(
        x.detach().float(),
        None if labels is None else labels.detach(),
        ref,
        target_probs=task.label_probs,
        generator=gen,
    )


def _pixels_suite(task, x, labels, ref, gen) -> dict[str, float]:
    from diffgym.benchmarks import metrics

    xf, rf = x.detach().float().flatten(1), ref.float().flatten(1)
    return {
        "sw2": metrics.sliced_wasserstein(xf, rf, generator=gen),
        "mmd": metrics.mmd(xf, rf),
        **metrics.precision_recall(rf, xf),
    }


METRIC_SUITES: dict[str, MetricSuite] = {
    "mixture": MetricSuite(("logp", "mode_tv", "mode_recall", "sw2", "mmd"), _mixture_suite),
    "digits": MetricSuite(
        ("fd_digits", "kid", "precision", "recall", "class_tv", "label_accuracy"), _digits_suite
    ),
    "pixels": MetricSuite(("sw2", "mmd", "precision", "recall"), _pixels_suite),
    "conditional_mixture": MetricSuite(
        ("logp", "bayes_accuracy", "mode_tv", "class_sw2", "sw2", "mmd", "precision", "recall"),
        _conditional_mixture_suite,
    ),
}
"""Metric suites by name: ``mixture`` (exact metrics against ``task.target``), ``digits``
(FD-digits, KID, k-NN precision/recall, class TV, label accuracy in the feature space of the
project's digits classifier), ``pixels`` (distribution distances on raw samples: bring-your-own
model and data), ``conditional_mixture`` (labelled mixtures such as ``cmix``: class-conditional
log density, Bayes-classifier accuracy, per-class mode masses, class-conditional SW2, and
distances to a reference drawn with the samples' own labels)."""


def register_metric_suite(name: str, suite: MetricSuite) -> None:
    """Add (or replace) the metric suite ``name``.

    Raises:
        ValueError: a metric without a direction in :data:`METRIC_DIRECTIONS`.
    """
    unknown = [m for m in suite.names if m not in METRIC_DIRECTIONS]
    if unknown:
        raise ValueError(
            f"metrics {unknown} of suite {name!r} have no direction; add them to "
            "METRIC_DIRECTIONS ('min' or 'max')"
        )
    METRIC_SUITES[name] = suite


def _suite(task: Task) -> MetricSuite:
    name = task.metric_suite
    if name is None:
        raise ValueError(f"task {task.name!r} declares no metric suite (Task.metric_suite)")
    if name not in METRIC_SUITES:
        raise ValueError(
            f"task {task.name!r} declares the unknown metric suite {name!r}; known suites: "
            f"{', '.join(METRIC_SUITES)}"
        )
    return METRIC_SUITES[name]


def measured_metrics(task: Task) -> tuple[str, ...]:
    """The names :func:`task_metrics` reports for ``task`` (known before anything is sampled)."""
    names = _suite(task).names
    return names + (INCEPTION_METRICS if FID_WEIGHTS_KEY in task.extra else ())


def default_metric(task: Task) -> str:
    """The task's headline metric (``Task.headline_metric``): it picks the best grid point and
    judges the comparison.

    Raises:
        ValueError: the task declares none (pass a metric explicitly).
    """
    if task.headline_metric is None:
        raise ValueError(f"no default metric for task {task.name!r}; pass --metric")
    return task.headline_metric


def with_fid(task: Task, weights: str | os.PathLike) -> Task:
    """Switch FID on for ``task``: its evaluations add Inception FID, KID and precision/recall.

    The resolved weights path is stored in ``task.extra`` (so it is part of the task's
    fingerprint: results with and without FID are kept apart) and the task is returned.

    Raises:
        ValueError: ``task`` is not an image task (FID needs ``(C, H, W)`` data with ``C`` in
            {1, 3}).
        FileNotFoundError: ``weights`` is not a file (the message names it).
        ImportError: torchmetrics is not installed (``pip install 'diffgym[fid]'``).
    """
    shape = task.data_shape
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(
            f"FID needs an image task with data shape (1 or 3, H, W); task {task.name!r} has "
            f"data shape {shape}"
        )
    from diffgym.benchmarks.fid import load_inception, require_torchmetrics

    path = Path(weights).expanduser()
    # Fail now, naming the file or the missing package, rather than after sampling.
    load_inception(path)
    require_torchmetrics()
    task.extra[FID_WEIGHTS_KEY] = str(path.resolve())
    return task


def task_metrics(
    task: Task,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    num_reference: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of samples ``x (N, *data_shape)`` for ``task`` against real data (a fresh draw, or
    the task's fixed reference set).

    The task's metric suite (:data:`METRIC_SUITES`) decides the metrics; tasks passed through
    :func:`with_fid` also get ``fid``, ``kid_inception``, ``precision_inception`` and
    ``recall_inception`` (:func:`diffgym.benchmarks.fid.inception_metrics`). The reference set
    is the task's fixed :attr:`~diffgym.envs.tasks.Task.reference` when it has one (``digits``:
    the whole data set; ``num_reference`` must then be ``None`` or its size), else
    ``num_reference`` samples (default ``N``) drawn with ``seed``. The Inception metrics always
    score against ``N`` real samples drawn with ``seed`` (as before fixed references existed).

    Raises:
        ValueError: samples of the wrong shape; a task without a (known) metric suite.
    """
    if tuple(x.shape[1:]) != task.data_shape:
        raise ValueError(
            f"samples must have shape (N, {', '.join(map(str, task.data_shape))}), "
            f"got {tuple(x.shape)}"
        )
    suite = _suite(task)
    gen = torch.Generator().manual_seed(seed)
    if task.reference is not None:  # a fixed reference set: the same on every seed
        if num_reference is not None and num_reference != task.reference[0].shape[0]:
            raise ValueError(
                f"task {task.name!r} is scored against its fixed reference of "
                f"{task.reference[0].shape[0]} samples; num_reference={num_reference!r} cannot "
                f"apply (pass None)"
            )
        ref = task.reference[0]
    else:
        n_ref = int(num_reference or x.shape[0])
        ref, _ = task.sample_data(n_ref, gen)  # the generator's first draw: the reference set
    out = suite.fn(task, x, labels, ref.to(x.device), gen)  # metrics run on the samples' device
    weights = task.extra.get(FID_WEIGHTS_KEY)
    if weights is not None:
        from diffgym.benchmarks.fid import inception_metrics

        if task.reference is not None:
            # Inception metrics keep the drawn reference of N samples (the seed's first draw):
            # an Inception pass over a whole data set costs minutes per evaluation on a CPU.
            ref, _ = task.sample_data(int(x.shape[0]), torch.Generator().manual_seed(seed))
        out.update(
            inception_metrics(x.detach().cpu(), ref, weights, device=x.device, seed=seed)
        )
    return out


# --------------------------------------------------------------------------------------------
# Sampling and scoring with common random numbers
# --------------------------------------------------------------------------------------------


@dataclass
class SamplerEvaluation:
    """One evaluated sampler: ``metrics`` from :func:`task_metrics`, its ``cost`` (NFE summed over
    samples; seconds under the sampling category and ``"metrics"``) and the raw ``result``."""

    metrics: dict[str, float]
    cost: Cost
    result: SampleResult

    @property
    def nfe_per_sample(self) -> float:
        """The mean NFE the sampler spent per sample (rows evaluated, RESULTS §9)."""
        return float(self.result.nfe.double().mean())


def crn_sample(
    task: Task,
    actions: ActionFn | None = None,
    *,
    n: int,
    seed: int,
    guided: bool = False,
    renoise_budget: int = 0,
    device: torch.device | str = "cpu",
    base_grid: bool = False,
) -> SampleResult:
    """``n`` trajectories of the common-random-numbers protocol (no scoring).

    Sample ``b`` uses noise seed ``seed + b``; labels come from :func:`eval_labels`. Arguments as
    in :func:`evaluate_sampler`.

    Raises:
        ValueError: ``guided`` on a task without a guide.
    """
    if guided and task.guide is None:
        raise ValueError(f"task {task.name!r} has no guidance source; guided must be False")
    labels = eval_labels(task, n, seed)
    if labels is not None:
        labels = labels.to(device)
    return sample(
        task.denoiser,
        task.base_sigmas(device) if base_grid else task.sigmas(device),
        noise=PerSampleNoise(eval_seeds(n, seed), device=device, dtype=task.dtype),
        data_shape=task.data_shape,
        labels=labels,
        guide=task.guide if guided else None,
        actions=actions,
        renoise_budget=renoise_budget,
        dtype=task.dtype,
        advance=task.schedule_factor if base_grid else 1,
    )


def evaluate_sampler(
    task: Task,
    actions: ActionFn | None = None,
    *,
    n: int,
    seed: int,
    guided: bool = False,
    renoise_budget: int = 0,
    device: torch.device | str = "cpu",
    category: str = "evaluation",
    base_grid: bool = False,
) -> SamplerEvaluation:
    """Sample ``n`` trajectories under the common-random-numbers protocol and score them.

    Sample ``b`` uses noise seed ``seed + b``; labels come from :func:`eval_labels`; metrics use
    reference data seeded :func:`reference_seed` ``(seed)``. Learned policies and grid points are
    evaluated alike.

    Args:
        task: the task (its denoiser and guide must be on ``device``).
        actions: ``f(x, step_index, budget, labels) -> Knobs`` (a schedule or a policy); ``None``
            for the default sampler.
        n: samples, ``>= 2``.
        seed: protocol seed.
        guided: pass the task's guide to the sampler (needed for any ``w != 1``).
        renoise_budget: renoise transitions allowed per sample.
        device: where to sample.
        category: the :class:`~diffgym.agents.cost.Cost` category of the sampling time
            (``"evaluation"`` for a method's evaluation, ``"grid_point"`` for a grid point).
        base_grid: walk the step knob's base grid (:meth:`~diffgym.envs.tasks.Task.base_sigmas`,
            neutral advance ``schedule_factor``), as a policy trained with the step knob does
            (its action function reads base-grid step indices); ``False``: the task's schedule
            (knob tables of length N). The same samples either way when no step is taken off
            neutral.

    Raises:
        ValueError: ``n < 2``; ``guided`` on a task without a guide.
    """
    _check_n(n)
    with Stopwatch(device) as sampling:
        result = crn_sample(
            task, actions, n=n, seed=seed, guided=guided, renoise_budget=renoise_budget,
            device=device, base_grid=base_grid,
        )
    with Stopwatch() as scoring:
        metrics = task_metrics(task, result.x, result.labels, seed=reference_seed(seed))
    cost = Cost(
        nfe=int(result.nfe.sum()),
        samples=n,
        seconds={category: sampling.seconds, "metrics": scoring.seconds},
    )
    return SamplerEvaluation(
        metrics={k: float(v) for k, v in metrics.items()}, cost=cost, result=result
    )


@dataclass(frozen=True)
class TrainingEvaluator:
    """The protocol's evaluation of a policy during training, injected into
    :class:`~diffgym.agents.train.TrainingRun` (so training needs nothing from benchmarks).

    A call samples ``n`` trajectories with the policy as trained (stochastic, temperature 1) on
    seed ``TRAIN_EVAL_SEED_OFFSET + train_seed`` and scores them against reference data drawn
    with :data:`TRAIN_EVAL_REFERENCE_SEED`.
    """

    def __call__(
        self, policy: Any, task: Task, *, n: int, train_seed: int, device: str
    ) -> tuple[dict[str, float], Cost]:
        """``(metrics (with "nfe_per_sample"), cost)`` of one evaluation."""
        sampler = PolicySampler(policy, task, device=device)
        with Stopwatch(device) as sampling:
            result = sampler.sample(n, seed=TRAIN_EVAL_SEED_OFFSET + int(train_seed))
        with Stopwatch() as scoring:
            metrics = task_metrics(task, result.x, result.labels, seed=TRAIN_EVAL_REFERENCE_SEED)
        out = {k: float(v) for k, v in metrics.items()}
        out["nfe_per_sample"] = float(result.nfe.double().mean())
        cost = Cost(
            nfe=int(result.nfe.sum()),
            samples=n,
            seconds={"evaluation": sampling.seconds, "metrics": scoring.seconds},
        )
        return out, cost


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as ints; ``ValueError`` unless there are at least two, distinct and >= 0 (a
    spread over seeds needs two)."""
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"give at least two distinct seeds >= 0 (no repeats), got {seeds}")
    return seeds


def noise_floor(
    task: Task, n: int, seeds: Sequence[int], *, sample_seeds: Sequence[int] | None = None
) -> dict[str, Any]:
    """The metrics' noise floor: ``n`` *real* samples scored like an evaluation.

    For each protocol seed ``s`` in ``seeds`` the "samples" are real data drawn with sample seed
    ``s + NOISE_FLOOR_SAMPLE_OFFSET`` (or the matching entry of ``sample_seeds``), scored against
    the reference set of ``s`` (:func:`reference_seed`). A sampler whose samples were real data
    would score these values; differences between samplers smaller than their spread cannot be
    read from unpaired means. To match a comparison, pass its evaluation seeds
    (:func:`eval_seed` ``(k)``).

    Returns:
        ``{"per_seed": [metrics], "summary": {metric: {"mean", "std"}}}``.

    Raises:
        ValueError: ``n < 2``, fewer than two distinct seeds >= 0, ``sample_seeds`` of another
            length.
    """
    _check_n(n)
    seeds = check_seeds(seeds)
    if sample_seeds is None:
        sample_seeds = [s + NOISE_FLOOR_SAMPLE_OFFSET for s in seeds]
    sample_seeds = [int(s) for s in sample_seeds]
    if len(sample_seeds) != len(seeds):
        raise ValueError(
            f"sample_seeds must have one entry per seed ({len(seeds)}), got {len(sample_seeds)}"
        )
    per_seed = []
    for s, k in zip(seeds, sample_seeds):
        x, labels = task.sample_data(n, torch.Generator().manual_seed(k))
        if task.num_classes == 0:
            labels = None
        per_seed.append(task_metrics(task, x, labels, seed=reference_seed(s)))
    summary = {
        m: {"mean": statistics.fmean(r[m] for r in per_seed),
            "std": statistics.stdev(r[m] for r in per_seed)}
        for m in per_seed[0]
    }
    return {"per_seed": per_seed, "summary": summary}


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------


def _hash_tensor(h: Any, name: str, t: torch.Tensor | None) -> None:
    h.update(name.encode())
    if t is None:
        h.update(b"none")
        return
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())


def _hash_mixture(h: Any, name: str, m: GaussianMixture | FullCovGaussianMixture) -> None:
    # isotropic mixtures hash exactly as before; full-covariance ones hash covs instead of stds
    for attr in ("means", "stds", "covs", "weights", "component_labels"):
        if hasattr(m, attr):
            _hash_tensor(h, f"{name}.{attr}", getattr(m, attr))


def _hash_module(h: Any, name: str, module: torch.nn.Module | None) -> None:
    if module is None:
        h.update(f"{name}:none".encode())
        return
    for sub_name, sub in module.named_modules(prefix=name):
        h.update(type(sub).__qualname__.encode())
        for attr, value in sorted(vars(sub).items()):
            if isinstance(value, (GaussianMixture, FullCovGaussianMixture)):
                _hash_mixture(h, f"{sub_name}.{attr}", value)
    for key, value in sorted(module.state_dict().items()):
        _hash_tensor(h, f"{name}.{key}", value)


def task_fingerprint(task: Task) -> dict[str, Any]:
    """What a result depends on in ``task``: its name, guide kind, schedule, dtype, extra
    settings, and a content hash of the denoiser, guide, target, label distribution, fixed
    reference set, when it has one (so a user-defined mixture gets its own keys), and the digits
    classifier's weights for a task scored with the digits metrics (a retrained classifier gets
    new keys). Action menus are not part of it, nor is the device: the kind of device that draws
    the noise enters each :func:`point_key` instead."""
    h = hashlib.sha256()
    _hash_module(h, "denoiser", task.denoiser)
    _hash_module(h, "guide", task.guide)
    if task.target is not None:
        _hash_mixture(h, "target", task.target)
    _hash_tensor(h, "label_probs", task.label_probs)
    if task.reference is not None:  # (absent otherwise, so other tasks keep their keys)
        _hash_tensor(h, "reference_x", task.reference[0])
        _hash_tensor(h, "reference_labels", task.reference[1])
    if task.metric_suite == "digits":  # (absent otherwise, so other tasks keep their keys)
        from diffgym.benchmarks.digits_classifier import digits_classifier_sha256

        h.update(b"digits_classifier")
        h.update(digits_classifier_sha256().encode())
    return {
        "name": task.name,
        "guide_kind": task.guide_kind,
        "num_steps": task.num_steps,
        "sigma_min": task.sigma_min,
        "sigma_max": task.sigma_max,
        "rho": task.rho,
        "dtype": str(task.dtype),
        "extra": json.loads(json.dumps(task.extra, sort_keys=True, default=str)),
        "content_sha256": h.hexdigest(),
    }


def point_key(
    fingerprint: Mapping[str, Any],
    family: str,
    params: Mapping[str, float],
    *,
    n: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> str:
    """A stable 16-hex-digit key of a fixed sampler's evaluation: hash of the protocol version,
    task fingerprint, family, parameters, ``n``, ``seed``, the kind of device that draws the
    noise and the per-sample noise generator's version (:func:`~diffgym.envs.noise.
    noise_key_fields`: none for version 1, so keys written before versions existed still match).

    The device kind is part of the key because results are reproducible bit for bit only on one
    kind of device: the per-sample noise is the same numbers everywhere, but the denoiser's
    arithmetic rounds differently on a GPU. A cache never mixes the two. (CPU keys carry no
    device field.)
    """
    blob: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "task": dict(fingerprint),
        "family": family,
        "params": {k: float(v) for k, v in params.items()},
        "n": int(n),
        "seed": int(seed),
        **noise_key_fields(),
    }
    kind = torch.device(device).type
    if kind != "cpu":
        blob["noise_device"] = kind
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def finite_or_none(obj: Any) -> Any:
    """JSON-ready copy: non-finite floats become ``None`` (strict JSON has no NaN); numpy
    scalars, tuples and paths become plain values."""
    if isinstance(obj, (float, np.floating)):
        obj = float(obj)
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def plain_values(value: Any) -> Any:
    """JSON-ready task overrides (tensors and arrays as nested lists, tuples as lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_heldout_seed(task: str | None, seed: Any, heldout: bool, *, what: str = "seed",
                       how: str = "heldout=True (--heldout)") -> None:
    """Held-out discipline (library and command line alike): a held-out seed of a procedural
    task (:data:`~diffgym.envs.tasks.HELDOUT_SEEDS`) needs ``heldout``.

    Raises:
        ValueError: naming the seed (as ``what``), the ranges, and what to pass (``how``).
    """
    from diffgym.envs.tasks import DEV_SEEDS, HELDOUT_SEEDS, PROCEDURAL_TASKS

    if task in PROCEDURAL_TASKS and seed in HELDOUT_SEEDS and not heldout:
        raise ValueError(
            f"{what} {seed} is a held-out seed of {task} ({HELDOUT_SEEDS.start}-"
            f"{HELDOUT_SEEDS.stop - 1}); develop and tune on seeds {DEV_SEEDS.start}-"
            f"{DEV_SEEDS.stop - 1}, and pass {how} only for the final evaluation"
        )
