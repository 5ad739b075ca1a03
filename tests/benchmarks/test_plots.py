"""Sample plots: every kind of task gets a picture (2-D scatter, image grid, projected vectors)."""

from __future__ import annotations

import torch

from diffgym.benchmarks.plots import _principal_plane, save_samples_png
from diffgym.envs import make_task


def test_high_dimensional_vectors_are_plotted_in_the_plane_of_the_means(tmp_path):
    task = make_task("cmix")  # 32-d vectors: neither 2-D points nor images
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, task.data_shape[0], generator=gen)
    labels = torch.randint(0, task.num_classes, (300,), generator=gen)
    path = tmp_path / "samples.png"
    save_samples_png(task, {"default": (x, labels), "other": (2 * x, None)}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    center, axes = _principal_plane(task, x)
    assert axes.shape == (task.data_shape[0], 2)
    torch.testing.assert_close(axes.T @ axes, torch.eye(2), atol=1e-5, rtol=0)
    means = task.target.means.reshape(-1, task.data_shape[0]).float()
    # the plane holds the largest spread of the means: more than a random plane does
    spread = ((means - center) @ axes).var(dim=0).sum()
    rand = torch.linalg.qr(torch.randn(task.data_shape[0], 2, generator=gen)).Q
    assert spread > ((means - center) @ rand).var(dim=0).sum()
