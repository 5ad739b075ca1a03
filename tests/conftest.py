"""Shared fixtures: the ``device`` matrix (CUDA cases skip when absent) and seeded generators."""

from __future__ import annotations

import pytest
import torch

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """The device a test runs on: CPU always, CUDA when available (skipped otherwise)."""
    return torch.device(request.param)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator seeded with 0 (fresh for every test)."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def make_generator():
    """Factory of seeded generators: ``make_generator(seed, device="cpu")``."""

    def make(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(seed)

    return make
