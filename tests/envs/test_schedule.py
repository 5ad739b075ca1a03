"""``edm_sigmas``: the EDM time-step discretisation (Karras et al. 2022, eq. 5)."""

from __future__ import annotations

import math

import pytest
import torch

from diffgym.envs import edm_sigmas


def karras_reference(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """Eq. 5 of the EDM paper, written out in plain Python floats."""
    out = []
    for i in range(n):
        frac = i / (n - 1)
        base = sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
        out.append(base**rho)
    return out + [0.0]


@pytest.mark.parametrize(
    "n, sigma_min, sigma_max, rho",
    [(18, 0.002, 80.0, 7.0), (2, 0.002, 80.0, 7.0), (40, 0.01, 10.0, 3.0), (7, 0.5, 1.0, 1.0)],
)
def test_matches_edm_formula(n, sigma_min, sigma_max, rho):
    sigmas = edm_sigmas(n, sigma_min, sigma_max, rho)
    assert sigmas.dtype == torch.float64
    assert sigmas.shape == (n + 1,)
    expected = torch.tensor(karras_reference(n, sigma_min, sigma_max, rho), dtype=torch.float64)
    torch.testing.assert_close(sigmas, expected, rtol=1e-12, atol=0.0)
    assert sigmas[-1].item() == 0.0
    assert sigmas[0].item() == pytest.approx(sigma_max, rel=1e-12)
    assert sigmas[-2].item() == pytest.approx(sigma_min, rel=1e-12)
    assert bool((sigmas[1:] < sigmas[:-1]).all()), "schedule must be strictly decreasing"


def test_defaults_are_edm():
    sigmas = edm_sigmas(18)
    assert sigmas[0].item() == pytest.approx(80.0, rel=1e-12)
    assert sigmas[-2].item() == pytest.approx(0.002, rel=1e-12)
    # EDM's CIFAR-10 schedule, second level, computed by hand:
    hi, lo = 80.0 ** (1 / 7), 0.002 ** (1 / 7)
    assert sigmas[1].item() == pytest.approx((hi + (lo - hi) / 17) ** 7, rel=1e-12)


def test_single_step():
    sigmas = edm_sigmas(1, sigma_min=0.01, sigma_max=5.0)
    assert sigmas.tolist() == [5.0, 0.0]


def test_device_and_dtype(device):
    sigmas = edm_sigmas(5, device=device, dtype=torch.float32)
    assert sigmas.device.type == device.type
    assert sigmas.dtype == torch.float32
    ref = torch.tensor(karras_reference(5, 0.002, 80.0, 7.0), dtype=torch.float32)
    torch.testing.assert_close(sigmas.cpu(), ref)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_steps=0), r"num_steps must be >= 1, got 0"),
        (dict(num_steps=-3), r"num_steps must be >= 1, got -3"),
        (dict(num_steps=5, sigma_min=0.0), r"sigma_min must be > 0, got 0"),
        (dict(num_steps=5, sigma_min=-1.0), r"sigma_min must be > 0, got -1"),
        (dict(num_steps=5, sigma_min=1.0, sigma_max=1.0), r"sigma_max must be > sigma_min=1.0"),
        (dict(num_steps=5, sigma_min=1.0, sigma_max=0.5), r"sigma_max .* got 0.5"),
        (dict(num_steps=5, rho=0.0), r"rho must be > 0, got 0"),
        (dict(num_steps=5, rho=-7.0), r"rho must be > 0, got -7"),
        (dict(num_steps=5, sigma_max=math.inf), r"sigma_max must be finite"),
        (dict(num_steps=5, rho=math.nan), r"rho must be finite"),
    ],
)
def test_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        edm_sigmas(**kwargs)


@pytest.mark.parametrize("num_steps", [2.0, 18.5, "18", True, None])
def test_non_int_num_steps(num_steps):
    with pytest.raises(TypeError, match=r"num_steps must be an int"):
        edm_sigmas(num_steps)
