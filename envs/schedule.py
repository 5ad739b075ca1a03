"""Noise schedules."""

from __future__ import annotations

import math

import torch

__all__ = ["edm_sigmas"]


def edm_sigmas(
    num_steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """EDM time steps (Karras et al. 2022, eq. 5), with ``sigma_N = 0`` appended.

    ``sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`` for
    ``i = 0..N-1``. With ``N = 1`` the single level is ``sigma_max``.

    Returns:
        ``(num_steps + 1,)`` tensor, decreasing, ending in 0.

    Raises:
        TypeError: ``num_steps`` is not an int.
        ValueError: ``num_steps < 1``, ``sigma_min <= 0``, ``sigma_max <= sigma_min``, ``rho <= 0``
            or a non-finite value.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise TypeError(f"num_steps must be an int >= 1, got {num_steps!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max), ("rho", rho)):
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value}")
    if sigma_min <= 0:
        raise ValueError(f"sigma_min must be > 0, got {sigma_min}")
    if sigma_max <= sigma_min:
        raise ValueError(f"sigma_max must be > sigma_min={sigma_min}, got {sigma_max}")
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if num_steps == 1:
        steps = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        i = torch.arange(num_steps, dtype=torch.float64)
        lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
        steps = (hi + i / (num_steps - 1) * (lo - hi)) ** rho
    return torch.cat([steps, torch.zeros(1, dtype=torch.float64)]).to(device=device, dtype=dtype)
