"""Plots of samples (matplotlib, Agg backend; nothing is shown on screen)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

from diffgym.envs.io import atomic_write
from diffgym.envs.tasks import Task

__all__ = ["save_samples_png"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_samples_png(
    task: Task,
    panels: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    path: str | os.PathLike,
    *,
    max_points: int = 4000,
    grid: int = 10,
) -> None:
    """One panel per entry of ``panels`` (title -> ``(x, labels)``), written atomically.

    2-D tasks: a scatter over the target's modes; other vector tasks (e.g. ``cmix``): the same
    scatter in the plane of the two principal directions of the target's component means (of the
    first panel's samples without a target), coloured by label; image tasks: a ``grid x grid``
    image grid (one row per label when labels are given).
    """
    plt = _pyplot()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    basis = None
    if len(task.data_shape) == 1 and task.data_shape[0] > 2:
        first = next(iter(panels.values()))[0]
        basis = _principal_plane(task, first.detach().cpu().float())
    for ax, (title, (x, labels)) in zip(axes[0], panels.items()):
        x = x.detach().cpu().float()
        if basis is not None:
            center, axes2 = basis
            pts = (x[:max_points] - center) @ axes2
            if labels is None:
                ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
            else:
                ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4, c=labels[:max_points].cpu(),
                           cmap="tab10")
            if task.target is not None:
                mu = (task.target.means.reshape(-1, x.shape[1]).cpu().float() - center) @ axes2
                ax.scatter(mu[:, 0], mu[:, 1], s=12, c="red", marker="x", linewidths=0.8)
            ax.set_xlabel("PC 1", fontsize=8)
            ax.set_ylabel("PC 2", fontsize=8)
        elif len(task.data_shape) == 1 and task.data_shape[0] == 2:
            pts = x[:max_points]
            ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
            if task.target is not None:
                mu = task.target.means.reshape(-1, 2)
                ax.scatter(mu[:, 0], mu[:, 1], s=12, c="red", marker="x", linewidths=0.8)
            ax.set_xlim(-6, 6)
            ax.set_ylim(-6, 6)
            ax.set_aspect("equal")
        else:
            ax.imshow(_image_grid(x, labels, grid), cmap="gray", vmin=-1, vmax=1)
            ax.axis("off")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def _principal_plane(task: Task, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(center (D,), axes (D, 2))``: the mean and two principal directions of the target's
    component means (of ``x (N, D)`` when the task has no target)."""
    ref = x if task.target is None else task.target.means.reshape(-1, x.shape[1]).cpu().float()
    if ref.shape[0] < 3:
        ref = x
    center = ref.mean(dim=0)
    _, _, v = torch.linalg.svd(ref - center, full_matrices=False)
    return center, v[:2].T


def _image_grid(x: torch.Tensor, labels: torch.Tensor | None, grid: int) -> torch.Tensor:
    """``(N, C, H, W)`` -> a ``(grid*H, grid*W)`` mosaic (first channel); rows = labels if given."""
    _, _, h, w = x.shape
    tiles = torch.full((grid, grid, h, w), -1.0)
    if labels is not None:
        labels = labels.cpu()
        for r in range(min(grid, int(labels.max()) + 1)):
            idx = torch.nonzero(labels == r).squeeze(1)[:grid]
            tiles[r, : len(idx)] = x[idx, 0]
    else:
        k = min(grid * grid, x.shape[0])
        tiles.view(-1, h, w)[:k] = x[:k, 0]
    side_h, side_w = grid * h, grid * w
    out = tiles.permute(0, 2, 1, 3).reshape(side_h, side_w).clamp(-1, 1)
    assert math.prod(out.shape) == side_h * side_w
    return out
