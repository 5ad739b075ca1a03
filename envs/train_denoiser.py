"""Training and loading of the shipped denoisers: the class-conditional ``digits`` U-Net and the
MLPs of the mixture tasks ``gmm2d-net`` and ``cmix`` (:func:`train_mixture_denoiser`), all with
one EDM training loop.

Training follows Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models" (EDM, arXiv 2206.00364, §5 and Table 1): ``ln sigma ~ N(P_mean, P_std^2)`` with
``P_mean = -1.2``, ``P_std = 1.2``, loss weight ``lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2``
on the denoiser output ``D``, Adam with a learning-rate warm-up and an exponential moving average
(EMA) of the weights whose half-life ramps up with the number of images seen (EDM
``training_loop.py``). The shipped weights are the EMA.

Two snapshots of the same run are written: the final EMA (``digits_denoiser.pt``, the "model") and
an early EMA (``digits_guide.pt``, the "guide"), a deliberately weaker denoiser for autoguidance
(Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself", arXiv 2406.02507).
``digits_denoiser.json`` records everything needed to rebuild and audit them.

``sigma_data`` is computed from the data as the root mean per-pixel variance (the same definition
as :class:`~diffgym.envs.denoisers.GMMDenoiser`): 0.5416 for the ``[-1, 1]`` scaled digits, close to
EDM's 0.5 for images. The global standard deviation (0.75) is dominated by the background/ink
contrast of the mean image, which the network's bias handles, so it would over-scale ``c_in``.

Reproducibility: a run is bitwise repeatable for a fixed seed and torch intra-op thread count
(recorded in the json; different thread counts differ by ~1e-6 after a few steps). The shipped
files took 3.6 minutes with one thread on a shared 2-core machine; on a loaded machine two
threads can be more than 10x slower than one, so callers may want ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from diffgym.envs.data import DIGITS_CLASSES, DIGITS_SHAPE, load_digits_data
from diffgym.envs.io import atomic_write
from diffgym.envs.networks import (
    DIGITS_NET_DEFAULTS,
    EDMPrecond,
    build_digits_denoiser,
)

__all__ = [
    "train_digits_denoiser",
    "load_digits_denoiser",
    "edm_loss",
    "ema_beta",
    "learning_rate",
    "default_assets_dir",
    "MODEL_FILE",
    "GUIDE_FILE",
    "CONFIG_FILE",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "digits_denoiser.pt"
GUIDE_FILE = "digits_guide.pt"
CONFIG_FILE = "digits_denoiser.json"
_WEIGHT_FILES = {"model": MODEL_FILE, "guide": GUIDE_FILE}

#: EDM training noise distribution ``ln sigma ~ N(P_MEAN, P_STD^2)`` (Karras et al. 2022, Table 1).
P_MEAN = -1.2
P_STD = 1.2
#: Fraction of the steps with a linear learning-rate warm-up.
WARMUP_FRACTION = 0.05
#: Final learning rate of the cosine decay, as a fraction of ``lr``.
LR_FINAL_FRACTION = 0.1
#: Noise draws per image for the held-out-noise evaluation recorded in the json.
EVAL_REPEATS = 4
#: Seed offset of the held-out evaluation noise (independent of the training stream).
EVAL_SEED_OFFSET = 10_000


def default_assets_dir() -> Path:
    """The package's asset folder ``diffgym/envs/assets`` (where the shipped weights live)."""
    return Path(__file__).resolve().parent / "assets"


def digits_sigma_data(x: torch.Tensor) -> float:
    """Root mean per-pixel variance of ``x (N, *data_shape)``: the ``sigma_data`` of EDM."""
    return float(x.double().var(dim=0, unbiased=False).mean().sqrt())


def learning_rate(step: int, *, steps: int, lr: float) -> float:
    """Linear warm-up over ``WARMUP_FRACTION`` of the steps, then cosine decay to
    ``LR_FINAL_FRACTION * lr`` at the last step (``step`` counts from 0)."""
    warmup = max(1, round(WARMUP_FRACTION * steps))
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - 1 - warmup)
    return lr * (LR_FINAL_FRACTION + (1 - LR_FINAL_FRACTION) * 0.5 * (1 + math.cos(math.pi * t)))


def ema_beta(nimg: int, batch_size: int, *, halflife_kimg: float, rampup_ratio: float) -> float:
    """EMA decay per step after ``nimg`` images (EDM ``training_loop.py``): the half-life is
    ``min(halflife_kimg * 1000, rampup_ratio * nimg)`` images."""
    halflife = min(halflife_kimg * 1000, rampup_ratio * nimg)
    return 0.5 ** (batch_size / max(halflife, 1e-8))


def edm_loss(
    denoiser: EDMPrecond,
    y: torch.Tensor,
    labels: torch.Tensor | None,
    log_sigma_noise: torch.Tensor,
    eps: torch.Tensor,
) -> torch.Tensor:
    """EDM training loss per sample (Karras et al. 2022, Eq. 2 and Table 1): ``(B,)``.

    ``lambda(sigma) * mean_pixels |D(y + sigma eps; sigma, labels) - y|^2`` with
    ``sigma = exp(P_MEAN + P_STD * log_sigma_noise)``.

    Args:
        denoiser: the preconditioned network; called via ``precondition`` so that ``labels`` may
            hold the null index ``num_classes`` (label dropout).
        y: ``(B, *data_shape)`` clean data.
        labels: ``(B,)`` int64 labels in ``[0, num_classes]`` (``None``: unconditional).
        log_sigma_noise: ``(B,)`` standard normal draws for the noise level.
        eps: ``(B, *data_shape)`` standard normal noise.
    """
    sigma = torch.exp(P_MEAN + P_STD * log_sigma_noise)  # (B,)
    sd = denoiser.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2  # (B,)
    s = sigma.reshape(-1, *([1] * (y.ndim - 1)))
    D_yn = denoiser.precondition(y + s * eps, sigma, labels)
    return weight * (D_yn - y).square().flatten(1).mean(1)


@torch.no_grad()
def _eval_loss(
    denoiser: EDMPrecond, x: torch.Tensor, labels: torch.Tensor | None, seed: int
) -> float:
    """Mean EDM loss over ``EVAL_REPEATS`` fixed noise draws per sample (conditional labels;
    ``None`` on an unconditional network)."""
    g = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(EVAL_REPEATS):
        z = torch.randn(x.shape[0], generator=g)
        eps = torch.randn(x.shape, generator=g)
        total += float(edm_loss(denoiser, x, labels, z, eps).sum())
        count += x.shape[0]
    return total / count


def _fit(
    build: Callable[[], EDMPrecond],
    x: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    label_dropout: float,
    guide_step: int,
    ema_halflife_kimg: float,
    ema_rampup_ratio: float,
    progress: bool,
    desc: str,
) -> tuple[EDMPrecond, dict[str, torch.Tensor], list[float]]:
    """The EDM training loop shared by every shipped network.

    ``build()`` runs under ``torch.manual_seed(seed)`` inside a forked RNG (the global state is
    left as it was); batches are epoch permutations of ``x (N, *data_shape)``, labels ``(N,)``
    (``None``: unconditional) are replaced by the null index ``num_classes`` with probability
    ``label_dropout``; Adam with :func:`learning_rate`, EMA with :func:`ema_beta`.

    Returns:
        ``(ema, guide_state, recent)``: the final EMA network, the EMA state dict after
        ``guide_step`` steps and the training losses of the last (up to) 100 steps.
    """
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build()
        net.train()
        ema = copy.deepcopy(net).eval().requires_grad_(False)
        opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)

        perm = torch.randperm(n, generator=g)
        pos = 0
        guide_state: dict[str, torch.Tensor] | None = None
        recent: list[float] = []
        bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
        for step in bar:
            # Batch: epoch permutations, label dropout, EDM noise
            if pos + batch_size > n:
                perm, pos = torch.randperm(n, generator=g), 0
            idx = perm[pos : pos + batch_size]
            pos += batch_size
            y = x[idx]
            lab = None
            if labels is not None:
                lab = labels[idx].clone()
                drop = torch.rand(lab.shape, generator=g) < label_dropout
                lab[drop] = net.num_classes
            z = torch.randn((y.shape[0],), generator=g)
            eps = torch.randn(y.shape, generator=g)
            # Adam step on the EDM loss
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, steps=steps, lr=lr)
            loss = edm_loss(net, y, lab, z, eps).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # EMA with ramped-up half-life (EDM training_loop.py)
            beta = ema_beta(
                (step + 1) * batch_size,
                batch_size,
                halflife_kimg=ema_halflife_kimg,
                rampup_ratio=ema_rampup_ratio,
            )
            with torch.no_grad():
                for p_ema, p_net in zip(ema.parameters(), net.parameters(), strict=True):
                    p_ema.lerp_(p_net, 1.0 - beta)
            recent.append(float(loss.detach()))
            if len(recent) > 100:
                recent.pop(0)
            if step + 1 == guide_step:
                guide_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
            if progress and (step % 50 == 0 or step + 1 == steps):
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
        bar.close()
    assert guide_state is not None
    return ema, guide_state, recent


def train_digits_denoiser(
    out_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    steps: int = 5000,
    batch_size: int = 128,
    lr: float = 2e-3,
    label_dropout: float = 0.1,
    guide_fraction: float = 0.05,
    ema_halflife_kimg: float = 50.0,
    ema_rampup_ratio: float = 0.05,
    network: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the class-conditional ``digits`` denoiser with the EDM loss and write its files.

    Trains on all 1797 digits of :func:`~diffgym.envs.data.load_digits_data`. Everything random
    (initialisation, batches, noise, label dropout) derives from ``seed``; the global RNG state is
    left as it was. Writes, each atomically (temporary file, then ``os.replace``), into ``out_dir``:
    ``digits_denoiser.pt`` (final EMA state dict), ``digits_guide.pt`` (EMA state dict after
    ``round(guide_fraction * steps)`` steps, for autoguidance) and ``digits_denoiser.json`` (written
    last). Parameters follow EDM where it has one: Adam, EMA half-life ramp-up
    ``min(ema_halflife_kimg * 1000, ema_rampup_ratio * images_seen)``.

    Args:
        out_dir: destination folder (created); the package assets folder when ``None``.
        seed: seed of all randomness.
        steps: optimiser steps.
        batch_size: images per step (drawn as epoch permutations).
        lr: peak Adam learning rate (linear warm-up over 5% of steps, cosine decay to 10%).
        label_dropout: probability of replacing a label by the null label (classifier-free
            guidance; Ho & Salimans 2022).
        guide_fraction: fraction of ``steps`` at which the guide snapshot is taken, in ``(0, 1)``.
        ema_halflife_kimg: EMA half-life in thousands of images.
        ema_rampup_ratio: EMA half-life ramp-up as a fraction of images seen.
        network: :class:`~diffgym.envs.networks.DigitsNet` keyword arguments overriding
            :data:`~diffgym.envs.networks.DIGITS_NET_DEFAULTS`.
        progress: show a tqdm progress bar.

    Returns:
        The json dict: ``config`` (for :func:`~diffgym.envs.networks.build_digits_denoiser`),
        ``sigma_data``, ``training`` hyper-parameters, ``seed``, ``data_sha256``, snapshot steps,
        final training loss, held-out-noise losses of model and guide, ``num_params``,
        ``wall_clock_s``.

    Raises:
        ValueError: non-positive ``steps`` or ``lr``, ``batch_size`` outside ``[1, 1797]``,
            ``label_dropout`` outside ``[0, 1)``, ``guide_fraction`` outside ``(0, 1)``, a
            ``network`` without 10 classes and 1 input channel.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x, labels, sha = load_digits_data()
    n = x.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0.0 <= label_dropout < 1.0:
        raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
    if not 0.0 < guide_fraction < 1.0:
        raise ValueError(f"guide_fraction must be in (0, 1), got {guide_fraction}")
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_assets_dir()
    out.mkdir(parents=True, exist_ok=True)

    sigma_data = digits_sigma_data(x)
    net_cfg = {**DIGITS_NET_DEFAULTS, **dict(network or {})}
    net_cfg["channel_mult"] = list(net_cfg["channel_mult"])
    if (net_cfg["num_classes"], net_cfg["in_channels"]) != (DIGITS_CLASSES, DIGITS_SHAPE[0]):
        raise ValueError(
            f"network must have num_classes={DIGITS_CLASSES} and in_channels={DIGITS_SHAPE[0]} "
            f"for digits, got {net_cfg['num_classes']} and {net_cfg['in_channels']}"
        )
    config = {
        "network": net_cfg,
        "sigma_data": sigma_data,
        "sigma_min": 0.002,
        "sigma_max": 80.0,
        "label_dropout_supported": label_dropout > 0,
    }
    guide_step = max(1, round(guide_fraction * steps))

    ema, guide_state, recent = _fit(
        lambda: build_digits_denoiser(config),
        x,
        labels,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        label_dropout=label_dropout,
        guide_step=guide_step,
        ema_halflife_kimg=ema_halflife_kimg,
        ema_rampup_ratio=ema_rampup_ratio,
        progress=progress,
        desc="train digits denoiser",
    )
    train_s = time.perf_counter() - t_start

    guide = copy.deepcopy(ema)
    guide.load_state_dict(guide_state)
    eval_model = _eval_loss(ema, x, labels, seed + EVAL_SEED_OFFSET)
    eval_guide = _eval_loss(guide, x, labels, seed + EVAL_SEED_OFFSET)

    meta: dict[str, Any] = {
        "format": 1,
        "task": "digits",
        "config": config,
        "sigma_data": sigma_data,
        "sigma_data_definition": "sqrt(mean over pixels of per-pixel variance of the data)",
        "training": {
            "loss": "EDM (Karras et al. 2022): ln sigma ~ N(-1.2, 1.2^2), "
            "lambda = (sigma^2 + sd^2) / (sigma sd)^2, mean over pixels",
            "P_mean": P_MEAN,
            "P_std": P_STD,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "lr_schedule": f"linear warm-up over {WARMUP_FRACTION} of the steps, cosine decay "
            f"to {LR_FINAL_FRACTION} lr",
            "optimizer": "Adam(betas=(0.9, 0.999), eps=1e-8)",
            "label_dropout": label_dropout,
            "ema_halflife_kimg": ema_halflife_kimg,
            "ema_rampup_ratio": ema_rampup_ratio,
            "guide_fraction": guide_fraction,
            "torch_version": torch.__version__,
            "num_threads": torch.get_num_threads(),
        },
        "seed": seed,
        "data": "sklearn load_digits, 1797 images, scaled to [-1, 1]",
        "data_sha256": sha,
        "num_params": sum(p.numel() for p in ema.parameters()),
        "snapshots": {
            "model": {"file": MODEL_FILE, "step": steps},
            "guide": {"file": GUIDE_FILE, "step": guide_step},
        },
        "final_train_loss": sum(recent) / len(recent),
        "final_train_loss_definition": f"mean EDM loss of the raw weights over the last "
        f"{len(recent)} steps",
        "eval_loss": {"model": eval_model, "guide": eval_guide},
        "eval_loss_definition": f"EDM loss of the snapshot on all images, {EVAL_REPEATS} "
        f"fixed noise draws each (seed + {EVAL_SEED_OFFSET}), true labels",
        "train_wall_clock_s": train_s,
    }
    atomic_write(out / MODEL_FILE, lambda p: torch.save(ema.state_dict(), p))
    atomic_write(out / GUIDE_FILE, lambda p: torch.save(guide_state, p))
    meta["wall_clock_s"] = time.perf_counter() - t_start
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(out / CONFIG_FILE, lambda p: p.write_text(text))
    logger.info(
        "trained digits denoiser in %.1f s: eval loss model %.4f, guide %.4f -> %s",
        meta["wall_clock_s"],
        eval_model,
        eval_guide,
        out,
    )
    return meta


_CACHE: dict[tuple[Any, ...], EDMPrecond] = {}


def load_digits_denoiser(
    which: str = "model",
    *,
    device: str | torch.device = "cpu",
    assets_dir: str | os.PathLike | None = None,
) -> EDMPrecond:
    """Load the shipped (or a freshly trained) ``digits`` denoiser; never trains.

    The returned module is in eval mode with ``requires_grad=False``; it is cached per
    ``(which, device, folder, file times)``, so callers share one instance and must not modify it.

    Args:
        which: ``"model"`` (final EMA) or ``"guide"`` (early EMA snapshot, for autoguidance).
        device: where to put the weights.
        assets_dir: folder with the three files; the package assets folder when ``None``.

    Returns:
        An :class:`~diffgym.envs.networks.EDMPrecond` with ``data_shape=(1, 8, 8)``,
        ``num_classes=10``, ``label_dropout_supported=True``.

    Raises:
        ValueError: ``which`` not in ``{"model", "guide"}``; the json's data hash differs from
            :func:`~diffgym.envs.data.load_digits_data`'s.
        FileNotFoundError: the json or weight file is missing.
    """
    if which not in _WEIGHT_FILES:
        raise ValueError(f"unknown denoiser {which!r}; allowed: {sorted(_WEIGHT_FILES)}")
    folder = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    cfg_path, weight_path = folder / CONFIG_FILE, folder / _WEIGHT_FILES[which]
    for path in (cfg_path, weight_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; train the digits denoiser with "
                f"`diffgym train-denoiser digits` (or pass assets_dir=...)"
            )
    device = torch.device(device)
    key = (
        which,
        str(device),
        str(folder.resolve()),
        cfg_path.stat().st_mtime_ns,
        weight_path.stat().st_mtime_ns,
    )
    if key in _CACHE:
        return _CACHE[key]
    meta = json.loads(cfg_path.read_text())
    _, _, sha = load_digits_data()
    if meta.get("data_sha256") != sha:
        raise ValueError(
            f"{cfg_path} was trained on data with sha256 {meta.get('data_sha256')!r}, but "
            f"load_digits_data() gives {sha!r}; retrain with `diffgym train-denoiser digits`"
        )
    denoiser = build_digits_denoiser(meta["config"])
    state = torch.load(weight_path, map_location=device, weights_only=True)
    denoiser.load_state_dict(state)
    denoiser.to(device).eval().requires_grad_(False)
    _CACHE[key] = denoiser
    return denoiser
