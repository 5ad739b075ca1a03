"""Fixtures for the agent tests: small envs and a tiny image task that needs no shipped weights."""

from __future__ import annotations

import pytest
import torch

from diffgym.envs import DiffusionSamplingEnv, GaussianMixture, GMMDenoiser, UncondBranch
from diffgym.envs.tasks import Task


def tiny_image_task(num_steps: int = 6) -> Task:
    """A class-conditional Gaussian mixture over ``(1, 8, 8)`` images (one mode per class) with
    classifier-free guidance: exercises the CNN features and the image PNG without digits'
    network."""
    gen = torch.Generator().manual_seed(0)
    means = torch.rand((10, 1, 8, 8), generator=gen, dtype=torch.float64) * 2 - 1
    mixture = GaussianMixture(means, 0.2, component_labels=torch.arange(10))
    model = GMMDenoiser(mixture)

    def draw(n, generator=None, class_labels=None):
        return mixture.sample(n, generator, class_labels)

    return Task(
        name="tiny-image",
        denoiser=model,
        guide=UncondBranch(model),
        guide_kind="cfg",
        data=draw,
        label_probs=mixture.label_probs(),
        num_steps=num_steps,
        churn_levels=(0.0, 0.25),
        guidance_levels=(1.0, 2.0, 3.0),
        feature_kind="image",
    )


@pytest.fixture
def image_task() -> Task:
    return tiny_image_task()


@pytest.fixture
def gmm_env() -> DiffusionSamplingEnv:
    """``gmm2d`` with 8 sub-envs (churn x guidance menus, 18 steps)."""
    return DiffusionSamplingEnv("gmm2d", 8)
