"""Fixtures of the reward tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def image_mixture_task():
    """A small conditional *image* task with an exact denoiser: 6 Gaussian components over
    ``(1, 4, 4)`` "images", two per class (3 classes), one churn knob, 6 steps."""
    from diffgym.envs import GaussianMixture, GMMDenoiser, Task

    g = torch.Generator().manual_seed(0)
    mix = GaussianMixture(
        torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64), 0.1,
        component_labels=[0, 0, 1, 1, 2, 2],
    )

    def draw(n, generator=None, class_labels=None):
        return mix.sample(n, generator, class_labels)

    return Task(
        name="image-mixture", denoiser=GMMDenoiser(mix), guide=None, guide_kind="none",
        data=draw, label_probs=mix.label_probs().float(), target=mix, feature_kind="image",
        churn_levels=(0.0, 0.5), num_steps=6,
    )
