"""Task-level evaluation: the right metrics for each task, on fresh reference data."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from diffgym.envs.tasks import Task

__all__ = [
    "task_metrics",
    "measured_metrics",
    "with_fid",
    "add_fid_argument",
    "METRIC_DIRECTIONS",
    "FID_WEIGHTS_KEY",
    "INCEPTION_METRICS",
]

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


_MIXTURE_METRICS = ("logp", "mode_tv", "mode_recall", "sw2", "mmd")
_DIGITS_METRICS = ("fd_digits", "kid", "precision", "recall", "class_tv", "label_accuracy")
_USER_METRICS = ("sw2", "mmd", "precision", "recall")
# labelled mixtures (cmix): class-conditional log density, Bayes-classifier accuracy, per-class
# mode masses, class-conditional SW2, and distances to a label-matched reference
_COND_MIXTURE_METRICS = (
    "logp", "bayes_accuracy", "mode_tv", "class_sw2", "sw2", "mmd", "precision", "recall"
)
INCEPTION_METRICS = ("fid", "kid_inception", "precision_inception", "recall_inception")


def measured_metrics(task: Task) -> tuple[str, ...]:
    """The names :func:`task_metrics` reports for ``task`` (known before anything is sampled)."""
    if task.target is not None and task.num_classes > 0:
        names = _COND_MIXTURE_METRICS
    elif task.target is not None:
        names = _MIXTURE_METRICS
    elif task.name == "digits":
        names = _DIGITS_METRICS
    elif task.name == "user":
        names = _USER_METRICS
    else:
        raise ValueError(f"no built-in metrics for task {task.name!r}")
    return names + (INCEPTION_METRICS if FID_WEIGHTS_KEY in task.extra else ())


def with_fid(task: Task, weights: str | os.PathLike) -> Task:
    """Switch FID on for ``task``: its evaluations add Inception FID, KID and precision/recall.

    The resolved weights path is stored in ``task.extra`` (so it is part of the task's grid
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


def add_fid_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--fid-weights PATH`` (optional Inception FID, KID, precision and recall)."""
    parser.add_argument(
        "--fid-weights",
        type=Path,
        default=None,
        metavar="PATH",
        help="local FID Inception-v3 state dict (pt_inception-2015-12-05-6726825d.pth): adds "
        "fid, kid_inception, precision_inception, recall_inception on image tasks "
        "(needs diffgym[fid])",
    )


def task_metrics(
    task: Task,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    num_reference: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of samples ``x (N, *data_shape)`` for ``task`` against fresh real data.

    Mixture tasks (``task.target`` set): exact log density, mode-mass TV, mode recall, sliced
    W2 and MMD; labelled mixtures (``cmix``) the class-conditional suite of
    :func:`~diffgym.benchmarks.metrics.conditional_mixture_metrics` against a reference drawn
    with the samples' labels; ``digits``: FD-digits, KID, k-NN precision/recall, class TV,
    label accuracy; user tasks: sliced W2, MMD and precision/recall on pixels. Tasks passed through
    :func:`with_fid` also get ``fid``, ``kid_inception``, ``precision_inception`` and
    ``recall_inception`` (:func:`diffgym.benchmarks.fid.inception_metrics`). The reference set
    (``num_reference`` samples, default ``N``) is drawn with ``seed``.
    """
    if tuple(x.shape[1:]) != task.data_shape:
        raise ValueError(
            f"samples must have shape (N, {', '.join(map(str, task.data_shape))}), "
            f"got {tuple(x.shape)}"
        )
    gen = torch.Generator().manual_seed(seed)
    n_ref = int(num_reference or x.shape[0])
    ref, _ = task.sample_data(n_ref, gen)  # the generator's first draw: the reference set
    out = _builtin_metrics(task, x, labels, ref, gen)
    weights = task.extra.get(FID_WEIGHTS_KEY)
    if weights is not None:
        from diffgym.benchmarks.fid import inception_metrics

        out.update(
            inception_metrics(x.detach().cpu(), ref, weights, device=x.device, seed=seed)
        )
    return out


def _builtin_metrics(
    task: Task,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    ref: torch.Tensor,
    gen: torch.Generator,
) -> dict[str, float]:
    from diffgym.benchmarks import metrics

    if task.target is not None and task.num_classes > 0:  # labelled mixture (cmix)
        if labels is None:
            raise ValueError(f"task {task.name!r} is conditional: its metrics need the labels")
        lab = labels.detach().cpu().long()
        # the reference has the samples' own labels: class-conditional distances compare like
        ref_c, ref_lab = task.target.sample(lab.shape[0], gen, lab, dtype=torch.float64)
        x64 = x.detach().to("cpu", torch.float64)
        return metrics.conditional_mixture_metrics(x64, lab, task.target, ref_c, ref_lab, gen)
    if task.target is not None:
        x64 = x.detach().to("cpu", torch.float64)
        return metrics.mixture_metrics(x64, task.target, ref.to(torch.float64), gen)
    if task.name == "digits":
        return metrics.digits_metrics(
            x.detach().cpu().float(),
            None if labels is None else labels.detach().cpu(),
            ref,
            target_probs=task.label_probs,
            generator=gen,
        )
    if task.name == "user":  # bring-your-own model and data: distribution distances
        xf, rf = x.detach().cpu().float().flatten(1), ref.float().flatten(1)
        return {
            "sw2": metrics.sliced_wasserstein(xf, rf, generator=gen),
            "mmd": metrics.mmd(xf, rf),
            **metrics.precision_recall(rf, xf),
        }
    raise ValueError(f"no built-in metrics for task {task.name!r}")
