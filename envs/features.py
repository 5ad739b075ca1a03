"""The one featurisation of sampler states, shared by env observations and IRL expert states.

Observation layout (flat, float32), for data of shape ``data_shape`` (``D = prod(data_shape)``) and
``C`` classes (design §3):

===========  ===========================================================
``[0, D)``   ``c_in(sigma_i) * x`` flattened, ``c_in = 1/sqrt(sigma^2 + sigma_data^2)``
``D``        ``c_noise(sigma_i) = ln(sigma_i)/4`` (``sigma`` floored at ``TERMINAL_SIGMA``)
``D + 1``    ``i / N`` (step fraction; with the step knob ``i / M`` on its base grid of ``M``)
``D + 2``    renoise budget left, as a fraction of the episode's budget (0 without renoise)
``D + 3..``  one-hot label (``C`` entries; none for an unconditional task)
===========  ===========================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from diffgym.envs.denoisers import c_in, c_noise

__all__ = [
    "C_NOISE_BOUND",
    "SCALED_X_BOUND",
    "TERMINAL_SIGMA",
    "featurize",
    "featurize_at_step",
    "label_features",
    "sigma_features",
    "obs_dim",
    "split_obs",
    "NUM_SCALAR_FEATURES",
]

TERMINAL_SIGMA = 1e-5
"""Floor of ``sigma`` inside ``c_noise`` so the terminal state (``sigma_N = 0``) stays finite."""

NUM_SCALAR_FEATURES = 3
"""``c_noise``, step fraction, budget fraction."""

SCALED_X_BOUND = 1e3
"""``c_in x`` is clipped to ``[-SCALED_X_BOUND, SCALED_X_BOUND]`` (it is O(1) by construction;
the bound only makes the observation ``Box`` finite)."""

C_NOISE_BOUND = 10.0
"""Bound of the ``c_noise`` feature in the observation ``Box`` (``|ln(sigma)/4| < 10`` for
``sigma`` in ``[TERMINAL_SIGMA, e^40]``)."""


def obs_dim(data_shape: Sequence[int], num_classes: int) -> int:
    """Length of the flat observation."""
    return int(math.prod(data_shape)) + NUM_SCALAR_FEATURES + int(num_classes)


def sigma_features(sigma: torch.Tensor, *, sigma_data: float) -> torch.Tensor:
    """The noise-level part of :func:`featurize`: ``(B,) -> (B, 2)``.

    Column 0 is ``c_in(sigma)`` (the scale of ``x``), column 1 the bounded ``c_noise(sigma)``
    feature. They depend on ``sigma`` alone, so a caller with a fixed schedule can tabulate them
    once per step index and pass the gathered rows to :func:`featurize` (``sigma_feats=``).
    """
    cn = c_noise(sigma.clamp_min(TERMINAL_SIGMA)).clamp_(-C_NOISE_BOUND, C_NOISE_BOUND)
    return torch.stack([c_in(sigma, sigma_data), cn], dim=1)


def featurize(
    x: torch.Tensor,
    sigma: torch.Tensor | None,
    step_frac: torch.Tensor,
    budget_frac: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    sigma_data: float,
    num_classes: int,
    sigma_feats: torch.Tensor | None = None,
    label_feats: torch.Tensor | None = None,
) -> torch.Tensor:
    """Featurise states: ``(B, *data_shape), (B,), (B,), (B,), (B,)|None -> (B, obs_dim)`` float32.

    Args:
        x: samples at noise level ``sigma``.
        sigma: ``(B,)`` noise level of each sample (0 at the terminal step); may be ``None`` when
            ``sigma_feats`` is given.
        step_frac: ``(B,)`` ``i / N``.
        budget_frac: ``(B,)`` renoise budget left over the episode's budget.
        labels: ``(B,)`` class labels (``None`` when ``num_classes == 0``).
        sigma_data: the denoiser's ``sigma_data``.
        num_classes: number of classes (0 = unconditional).
        sigma_feats: ``(B, 2)`` precomputed :func:`sigma_features` of ``sigma`` (in ``x``'s
            dtype), e.g. rows of a per-step table; computed from ``sigma`` when ``None``.
        label_feats: ``(B, C)`` precomputed one-hot columns of ``labels`` (:func:`label_features`),
            e.g. kept by a caller whose labels change only at reset; ``labels`` is then unused.
    """
    batch = x.shape[0]
    if sigma_feats is None:
        if sigma is None:
            raise ValueError("featurize needs sigma or sigma_feats")
        sigma_feats = sigma_features(sigma.to(x.dtype), sigma_data=sigma_data)
    scaled = (x.reshape(batch, -1) * sigma_feats[:, :1]).clamp_(-SCALED_X_BOUND, SCALED_X_BOUND)
    cols = [
        scaled,
        sigma_feats[:, 1:],
        step_frac.to(x.dtype)[:, None],
        budget_frac.to(x.dtype)[:, None],
    ]
    if num_classes > 0:
        if label_feats is None:
            if labels is None:
                raise ValueError(
                    f"labels are required for a conditional task (num_classes={num_classes})"
                )
            label_feats = label_features(labels, num_classes, x.dtype)
        cols.append(label_feats)
    return torch.cat(cols, dim=1).to(torch.float32)


def label_features(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """The one-hot label columns of :func:`featurize`: ``(B,) -> (B, num_classes)`` in ``dtype``
    (``one_hot`` checks the range, which costs a host read on a CPU)."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).to(dtype)


def featurize_at_step(x: torch.Tensor, c_in: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """:func:`featurize` of samples that are all at one step, ``(B, *data_shape) -> (B, obs_dim)``
    float32, with the per-step columns precomputed: ``c_in`` (0-dim: ``c_in(sigma_i)``) and
    ``tail`` (``(obs_dim - D,)``: the ``c_noise`` feature, ``i / N``, the budget fraction and
    the one-hot label, the same for every sample; or those rows already repeated, ``(B, obs_dim
    - D)``, which ``cat`` copies faster than a broadcast view). Equal to :func:`featurize` on
    those inputs."""
    batch = x.shape[0]
    flat = x if x.dim() == 2 else x.reshape(batch, -1)
    scaled = (flat * c_in).clamp_(-SCALED_X_BOUND, SCALED_X_BOUND)
    rows = tail if tail.dim() == 2 else tail.expand(batch, -1)
    return torch.cat([scaled, rows], dim=1).to(torch.float32)


def split_obs(
    obs: torch.Tensor, data_shape: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse layout: ``(B, obs_dim) -> (scaled x (B, *data_shape), conditioning (B, 3 + C))``."""
    d = int(math.prod(data_shape))
    return obs[:, :d].reshape(obs.shape[0], *data_shape), obs[:, d:]
