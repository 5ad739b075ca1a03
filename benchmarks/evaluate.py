"""Task-level evaluation: the right metrics for each task, on fresh reference data."""

from __future__ import annotations

import torch

from diffgym.envs.tasks import Task

__all__ = ["task_metrics", "METRIC_DIRECTIONS"]

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
}
"""Whether a larger (``"max"``) or smaller (``"min"``) value of each metric is better."""


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
    W2 and MMD; ``digits``: FD-digits, KID, k-NN precision/recall, class TV, label accuracy.
    The reference set (``num_reference`` samples, default ``N``) is drawn with ``seed``.
    """
    if tuple(x.shape[1:]) != task.data_shape:
        raise ValueError(
            f"samples must have shape (N, {', '.join(map(str, task.data_shape))}), "
            f"got {tuple(x.shape)}"
        )
    from diffgym.benchmarks import metrics

    gen = torch.Generator().manual_seed(seed)
    n_ref = int(num_reference or x.shape[0])
    if task.target is not None:
        ref, _ = task.sample_data(n_ref, gen)
        x64 = x.detach().to("cpu", torch.float64)
        return metrics.mixture_metrics(x64, task.target, ref.to(torch.float64), gen)
    if task.name == "digits":
        ref, _ = task.sample_data(n_ref, gen)
        return metrics.digits_metrics(
            x.detach().cpu().float(),
            None if labels is None else labels.detach().cpu(),
            ref,
            target_probs=task.label_probs,
            generator=gen,
        )
    if task.name == "user":  # bring-your-own model and data: distribution distances
        ref, _ = task.sample_data(n_ref, gen)
        xf, rf = x.detach().cpu().float().flatten(1), ref.float().flatten(1)
        return {
            "sw2": metrics.sliced_wasserstein(xf, rf, generator=gen),
            "mmd": metrics.mmd(xf, rf),
            **metrics.precision_recall(rf, xf),
        }
    raise ValueError(f"no built-in metrics for task {task.name!r}")
