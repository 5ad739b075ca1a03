"""The mode-TV inference guard with an allowance in standard errors (``--inference-guard-se``,
RESULTS §52).

The plain guard (:func:`~diffgym.benchmarks.runs.choose_inference`) compares two noisy numbers
on the search seed: a learned candidate's mode TV and the default sampler's. Both are drawn with
the same per-sample noise seeds (sample ``b`` uses seed ``seed + b``), so their difference can
be resampled *paired*: the bootstrap draws sample indices, each carrying the mode the default
sampler's sample ``b`` fell in and the mode the candidate's sample ``b`` fell in. Its standard
deviation is the standard error of the difference, whatever the two samplers share (a
deterministic sampler next to the default shares most modes and gets a small error; a policy that
adds churn shares few and gets about the two-sample error). The guard then lets a candidate be at
most ``z`` such errors worse than the default sampler.

The per-sample modes travel in the evaluation records as text (:func:`encode_modes`), so cached
search-seed evaluations keep them.
"""

from __future__ import annotations

import base64
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "MODES_FIELD",
    "check_guard_se",
    "check_paired_task",
    "decode_modes",
    "encode_modes",
    "guard_allowance",
    "has_modes",
    "paired_tv_difference",
    "record_modes",
]

MODES_FIELD = "modes"
"""The key of an evaluation record's per-sample modes (:func:`encode_modes`)."""
BOOTSTRAP_RESAMPLES = 2000
"""Bootstrap draws of :func:`paired_tv_difference` (its own fixed seed: a deterministic error)."""
GUARD_SE_METRIC = "mode_tv"
"""The one guard metric the allowance is defined for."""
_MAX_MODES = 256  # one byte per sample


def check_guard_se(value: Any, guard: str | None) -> float:
    """The guard's allowance in standard errors: a finite number >= 0, as ``float``.

    Raises:
        ValueError: a bad value, or a value > 0 with a guard other than ``mode_tv`` (the
            message names the value and what is allowed).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"inference_guard_se must be a finite number >= 0, got {value!r}")
    if value > 0 and guard != GUARD_SE_METRIC:
        raise ValueError(f"inference_guard_se {value!r} needs --inference-guard "
                         f"{GUARD_SE_METRIC} (its standard error is paired over per-sample "
                         f"modes), got guard {guard!r}")
    return float(value)


def encode_modes(modes: torch.Tensor | np.ndarray) -> str:
    """Per-sample mode indices (ints in ``[0, 256)``) as base64 text, one byte per sample.

    Raises:
        ValueError: not one-dimensional, empty, or an index outside ``[0, 256)``.
    """
    a = np.asarray(modes.detach().cpu() if isinstance(modes, torch.Tensor) else modes)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"modes must be a non-empty 1-D array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= _MAX_MODES:
        raise ValueError(f"modes must be ints in [0, {_MAX_MODES}), got dtype {a.dtype} with "
                         f"range [{a.min()}, {a.max()}]")
    return base64.b64encode(a.astype(np.uint8).tobytes()).decode("ascii")


def decode_modes(text: str) -> np.ndarray:
    """:func:`encode_modes`'s indices back, as ``int64``."""
    return np.frombuffer(base64.b64decode(text.encode("ascii")), dtype=np.uint8).astype(np.int64)


def has_modes(task: Any) -> bool:
    """Whether ``task`` is scored with the ``mixture`` metrics, whose mode TV counts one mode per
    sample (the samples :func:`record_modes` can pair)."""
    return getattr(task, "metric_suite", None) == "mixture"


def check_paired_task(task: Any, guard_se: float) -> None:
    """Refuse ``guard_se > 0`` on a task without :func:`has_modes`.

    Raises:
        ValueError: naming the task and its metric suite.
    """
    if guard_se > 0 and not has_modes(task):
        raise ValueError(f"inference_guard_se needs a task scored with mixture metrics (one "
                         f"mode per sample); task {getattr(task, 'name', task)!r} has metric "
                         f"suite {getattr(task, 'metric_suite', None)!r}")


def record_modes(task: Any, x: torch.Tensor) -> dict[str, str]:
    """``{MODES_FIELD: text}``: the mode each sample of ``x`` falls in (the assignment mode TV
    counts, :func:`~diffgym.benchmarks.metrics.mode_assignment`), for a task with
    :func:`has_modes`; ``{}`` for any other task (no per-sample modes to pair)."""
    if not has_modes(task):
        return {}
    from diffgym.benchmarks.metrics import mode_assignment

    return {MODES_FIELD: encode_modes(mode_assignment(x.detach(), task.target))}


def _tv(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``0.5 * sum_k |counts_k / N - w_k|`` over the last axis."""
    return 0.5 * np.abs(counts / counts.sum(-1, keepdims=True) - weights).sum(-1)


def paired_tv_difference(
    candidate: np.ndarray, reference: np.ndarray, weights: np.ndarray | torch.Tensor, *,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
) -> tuple[float, float]:
    """``(TV(candidate) - TV(reference), its paired bootstrap standard error)`` for per-sample
    modes of two samplers drawn with the same noise seeds (entry ``b`` of each is sample ``b``).

    The bootstrap resamples sample indices (multinomially over the joint table of (reference
    mode, candidate mode) pairs, which is the same thing), with its own generator seeded
    ``seed``.

    Raises:
        ValueError: different lengths, fewer than 2 samples, a mode outside the weights, or
            weights that are not a finite non-negative vector with a positive sum.
    """
    c, r = np.asarray(candidate, dtype=np.int64), np.asarray(reference, dtype=np.int64)
    w = np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights,
                   dtype=np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be a finite non-negative vector with a positive sum, "
                         f"got {w}")
    w = w / w.sum()
    k = w.size
    if c.shape != r.shape or c.ndim != 1 or c.size < 2:
        raise ValueError(f"candidate and reference modes must be 1-D of one length >= 2 (the "
                         f"same samples), got shapes {c.shape} and {r.shape}")
    if min(c.min(), r.min()) < 0 or max(c.max(), r.max()) >= k:
        raise ValueError(f"modes must be in [0, {k}) for {k} weights, got range "
                         f"[{min(c.min(), r.min())}, {max(c.max(), r.max())}]")
    n = c.size
    joint = np.bincount(r * k + c, minlength=k * k).astype(np.float64)  # (reference, candidate)
    diff = float(_tv(joint.reshape(k, k).sum(0), w) - _tv(joint.reshape(k, k).sum(1), w))
    draws = np.random.default_rng(seed).multinomial(n, joint / n, size=resamples)
    draws = draws.reshape(resamples, k, k).astype(np.float64)
    boot = _tv(draws.sum(1), w) - _tv(draws.sum(2), w)
    return diff, float(boot.std(ddof=1))


def guard_allowance(record: Mapping[str, Any], reference: Mapping[str, Any],
                    weights: np.ndarray | torch.Tensor, z: float) -> float:
    """``z`` paired standard errors (:func:`paired_tv_difference`) of a candidate's search-seed
    evaluation ``record`` against the default sampler's ``reference`` (both with
    :data:`MODES_FIELD`): the slack the guard gives that candidate.

    Raises:
        ValueError: a record without per-sample modes (the message names which).
    """
    for name, rec in (("candidate", record), ("reference", reference)):
        if MODES_FIELD not in rec:
            raise ValueError(f"the {name}'s search-seed evaluation has no per-sample modes "
                             f"('{MODES_FIELD}'); inference_guard_se needs them")
    _, se = paired_tv_difference(decode_modes(record[MODES_FIELD]),
                                 decode_modes(reference[MODES_FIELD]), weights)
    return z * se
