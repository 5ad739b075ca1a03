"""Training and loading of the shipped MLP denoisers of the mixture tasks ``gmm2d-net`` and
``cmix`` (design §2), with the one EDM training loop of :mod:`diffgym.envs.train_denoiser`."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffgym.envs.io import atomic_write
from diffgym.envs.networks import MIXTURE_NET_DEFAULTS, EDMPrecond, build_mixture_denoiser
from diffgym.envs.train_denoiser import (
    _CACHE,
    _WEIGHT_FILES,
    EVAL_REPEATS,
    EVAL_SEED_OFFSET,
    LR_FINAL_FRACTION,
    P_MEAN,
    P_STD,
    WARMUP_FRACTION,
    _eval_loss,
    _fit,
    default_assets_dir,
    digits_sigma_data,
)

__all__ = [
    "MIXTURE_NETS",
    "MixtureNetSpec",
    "load_mixture_denoiser",
    "mixture_files",
    "mixture_target_sha256",
    "mixture_training_data",
    "train_mixture_denoiser",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Mixture tasks (gmm2d-net, cmix)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixtureNetSpec:
    """How the shipped network of a mixture task is trained (the defaults of
    :func:`train_mixture_denoiser`).

    Attributes:
        prefix: file prefix in the assets folder (``{prefix}_denoiser.pt``, ``{prefix}_guide.pt``,
            ``{prefix}_denoiser.json``).
        target: builds the task's exact data distribution.
        network: :class:`~diffgym.envs.networks.MixtureMLP` keyword arguments.
        num_train: size of the fixed training set drawn from the target.
        data_seed: seed of the training set's draw.
        steps, batch_size, lr, label_dropout, guide_fraction: training defaults (see
            :func:`train_mixture_denoiser`).
    """

    prefix: str
    target: Callable[[], Any]
    network: Mapping[str, Any]
    num_train: int
    data_seed: int
    steps: int
    batch_size: int
    lr: float
    label_dropout: float
    guide_fraction: float


def _gmm2d_target() -> Any:
    from diffgym.envs.tasks import gmm2d_target

    return gmm2d_target()


def _cmix_target() -> Any:
    from diffgym.envs.tasks import cmix_mixture

    return cmix_mixture()


MIXTURE_NETS: dict[str, MixtureNetSpec] = {
    "gmm2d-net": MixtureNetSpec(
        prefix="gmm2d_net",
        target=_gmm2d_target,
        network={"dim": 2, "num_classes": 0, "hidden": 64, "num_blocks": 2, "emb_channels": 32},
        num_train=8192,
        data_seed=1,
        steps=2000,
        batch_size=256,
        lr=2e-3,
        label_dropout=0.0,
        guide_fraction=0.25,
    ),
    "cmix": MixtureNetSpec(
        prefix="cmix",
        target=_cmix_target,
        network={"dim": 32, "num_classes": 10, "hidden": 128, "num_blocks": 3,
                 "emb_channels": 64},
        num_train=30_000,
        data_seed=1,
        steps=3000,
        batch_size=256,
        lr=2e-3,
        label_dropout=0.1,
        guide_fraction=0.05,
    ),
}
"""The mixture tasks with a shipped network, by task name."""


def _mixture_spec(task: str) -> MixtureNetSpec:
    if task not in MIXTURE_NETS:
        raise ValueError(
            f"no shipped network for task {task!r}; allowed: {', '.join(sorted(MIXTURE_NETS))}"
        )
    return MIXTURE_NETS[task]


def mixture_training_data(task: str) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """The fixed training set of ``task``'s network: ``(x (N, d) float32, labels (N,) int64 or
    None when unconditional, sha256 of both)``, drawn from the exact target with
    ``spec.data_seed``.

    Raises:
        ValueError: ``task`` has no shipped network.
    """
    spec = _mixture_spec(task)
    target = spec.target()
    x, labels = target.sample(spec.num_train, torch.Generator().manual_seed(spec.data_seed))
    digest = hashlib.sha256(x.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()
    return x, (labels if target.num_classes > 0 else None), digest


TARGET_DIGITS = 6
"""Decimals, relative to each array's largest magnitude, of the numbers that
:func:`mixture_target_sha256` hashes: far coarser than a platform's rounding (about 1e-16), far
finer than any change of the target."""


def mixture_target_sha256(task: str) -> str:
    """sha256 of what ``task``'s training set is drawn from: the target's class, weights, means,
    spreads (``covs`` or ``stds``) and component labels, each array to :data:`TARGET_DIGITS`
    decimals of its largest magnitude, with the set's size and seed.

    Unlike the draw's own hash (:func:`mixture_training_data`, recorded as ``data_sha256``), it is
    the same on every platform. A full-covariance target samples through an eigendecomposition,
    and within a repeated eigenvalue (``cmix``'s isotropic floor) the eigenvectors that LAPACK
    returns depend on the build and the CPU: the same target and seed then draw other samples of
    the same distribution.
    """
    spec = _mixture_spec(task)
    target = spec.target()
    parts = [type(target).__name__, f"n={spec.num_train}", f"seed={spec.data_seed}"]
    for name in ("weights", "means", "covs", "stds", "component_labels"):
        value = getattr(target, name, None)
        if value is None:
            continue
        flat = value.detach().to("cpu", torch.float64).reshape(-1)
        scale = float(flat.abs().max()) or 1.0
        digits = TARGET_DIGITS  # + 0.0 below turns a rounded -0.0 into 0.0
        cells = (f"{round(v / scale, digits) + 0.0:.{digits}f}" for v in flat.tolist())
        parts.append(f"{name}/{scale:.{digits}e}:" + ",".join(cells))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def mixture_files(task: str) -> dict[str, str]:
    """``{"model": ..., "guide": ..., "config": ...}`` file names of ``task``'s network."""
    prefix = _mixture_spec(task).prefix
    return {
        "model": f"{prefix}_denoiser.pt",
        "guide": f"{prefix}_guide.pt",
        "config": f"{prefix}_denoiser.json",
    }


def train_mixture_denoiser(
    task: str,
    out_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    label_dropout: float | None = None,
    guide_fraction: float | None = None,
    ema_halflife_kimg: float = 50.0,
    ema_rampup_ratio: float = 0.05,
    network: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the network of a mixture task (``gmm2d-net`` or ``cmix``) and write its files.

    The same EDM recipe as :func:`train_digits_denoiser` (loss, Adam, learning-rate schedule,
    EMA, an early EMA snapshot as the autoguidance guide), on the fixed training set of
    :func:`mixture_training_data`. Unset arguments take the task's :data:`MIXTURE_NETS` defaults.
    Writes ``{prefix}_denoiser.pt``, ``{prefix}_guide.pt`` and ``{prefix}_denoiser.json`` (last),
    each atomically, into ``out_dir`` (the package assets folder when ``None``).

    Returns:
        The json dict (config, training hyper-parameters, seed, data hash, snapshot steps, final
        training loss, held-out-noise losses of model and guide, wall-clock).

    Raises:
        ValueError: unknown ``task``; non-positive ``steps`` or ``lr``; ``batch_size`` outside
            ``[1, N]``; ``label_dropout`` outside ``[0, 1)`` (or non-zero on an unconditional
            task); ``guide_fraction`` outside ``(0, 1)``; a ``network`` that changes ``dim`` or
            ``num_classes``.
    """
    spec = _mixture_spec(task)
    steps = spec.steps if steps is None else steps
    batch_size = spec.batch_size if batch_size is None else batch_size
    lr = spec.lr if lr is None else lr
    label_dropout = spec.label_dropout if label_dropout is None else label_dropout
    guide_fraction = spec.guide_fraction if guide_fraction is None else guide_fraction
    x, labels, sha = mixture_training_data(task)
    n = x.shape[0]
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0.0 <= label_dropout < 1.0 or (labels is None and label_dropout != 0.0):
        raise ValueError(
            f"label_dropout must be in [0, 1) (0 on an unconditional task), got {label_dropout}"
        )
    if not 0.0 < guide_fraction < 1.0:
        raise ValueError(f"guide_fraction must be in (0, 1), got {guide_fraction}")
    net_cfg = {**MIXTURE_NET_DEFAULTS, **dict(spec.network), **dict(network or {})}
    for key in ("dim", "num_classes"):
        if net_cfg[key] != spec.network[key]:
            raise ValueError(
                f"network {key} must be {spec.network[key]} for {task}, got {net_cfg[key]}"
            )
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_assets_dir()
    out.mkdir(parents=True, exist_ok=True)
    files = mixture_files(task)

    sigma_data = digits_sigma_data(x)
    config = {
        "network": net_cfg,
        "sigma_data": sigma_data,
        "sigma_min": 0.002,
        "sigma_max": 80.0,
        "label_dropout_supported": labels is not None and label_dropout > 0,
    }
    guide_step = max(1, round(guide_fraction * steps))
    ema, guide_state, recent = _fit(
        lambda: build_mixture_denoiser(config),
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
        desc=f"train {task} denoiser",
    )
    train_s = time.perf_counter() - t_start
    guide = copy.deepcopy(ema)
    guide.load_state_dict(guide_state)
    # held-out data: a fresh draw from the target (seed + EVAL_SEED_OFFSET)
    held_x, held_labels = spec.target().sample(
        n, torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    )
    held_labels = held_labels if labels is not None else None
    eval_model = _eval_loss(ema, held_x, held_labels, seed + EVAL_SEED_OFFSET)
    eval_guide = _eval_loss(guide, held_x, held_labels, seed + EVAL_SEED_OFFSET)

    meta: dict[str, Any] = {
        "format": 1,
        "task": task,
        "config": config,
        "sigma_data": sigma_data,
        "sigma_data_definition": "sqrt(mean over coordinates of per-coordinate variance of the "
        "training set)",
        "training": {
            "loss": "EDM (Karras et al. 2022): ln sigma ~ N(-1.2, 1.2^2), "
            "lambda = (sigma^2 + sd^2) / (sigma sd)^2, mean over coordinates",
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
        "data": f"{n} samples of the exact {task} target drawn with seed {spec.data_seed}",
        "data_sha256": sha,
        "target_sha256": mixture_target_sha256(task),
        "num_params": sum(p.numel() for p in ema.parameters()),
        "snapshots": {
            "model": {"file": files["model"], "step": steps},
            "guide": {"file": files["guide"], "step": guide_step},
        },
        "final_train_loss": sum(recent) / len(recent),
        "final_train_loss_definition": f"mean EDM loss of the raw weights over the last "
        f"{len(recent)} steps",
        "eval_loss": {"model": eval_model, "guide": eval_guide},
        "eval_loss_definition": f"EDM loss of the snapshot on {n} fresh target samples (seed + "
        f"{EVAL_SEED_OFFSET}), {EVAL_REPEATS} fixed noise draws each, true labels",
        "train_wall_clock_s": train_s,
    }
    atomic_write(out / files["model"], lambda p: torch.save(ema.state_dict(), p))
    atomic_write(out / files["guide"], lambda p: torch.save(guide_state, p))
    meta["wall_clock_s"] = time.perf_counter() - t_start
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(out / files["config"], lambda p: p.write_text(text))
    logger.info(
        "trained %s denoiser in %.1f s: eval loss model %.4f, guide %.4f -> %s",
        task,
        meta["wall_clock_s"],
        eval_model,
        eval_guide,
        out,
    )
    return meta


def load_mixture_denoiser(
    task: str,
    which: str = "model",
    *,
    device: str | torch.device = "cpu",
    assets_dir: str | os.PathLike | None = None,
) -> EDMPrecond:
    """Load the shipped (or a freshly trained) network of a mixture task; never trains.

    Eval mode, ``requires_grad=False``, cached per ``(task, which, device, folder, file times)``
    (callers share one instance and must not modify it).

    Args:
        task: ``"gmm2d-net"`` or ``"cmix"``.
        which: ``"model"`` (final EMA) or ``"guide"`` (early EMA snapshot, for autoguidance).
        device: where to put the weights.
        assets_dir: folder with the three files; the package assets folder when ``None``.

    Raises:
        ValueError: unknown ``task`` or ``which``; the json's data hash differs from
            :func:`mixture_training_data`'s.
        FileNotFoundError: the json or weight file is missing.
    """
    files = mixture_files(task)
    if which not in _WEIGHT_FILES:
        raise ValueError(f"unknown denoiser {which!r}; allowed: {sorted(_WEIGHT_FILES)}")
    folder = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    cfg_path, weight_path = folder / files["config"], folder / files[which]
    for path in (cfg_path, weight_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; train the {task} denoiser with "
                f"`diffgym train-denoiser {task}` (or pass assets_dir=...)"
            )
    device = torch.device(device)
    key = (
        task,
        which,
        str(device),
        str(folder.resolve()),
        cfg_path.stat().st_mtime_ns,
        weight_path.stat().st_mtime_ns,
    )
    if key in _CACHE:
        return _CACHE[key]
    meta = json.loads(cfg_path.read_text())
    # The target's hash where the json has one (the same on every platform); the draw's own
    # hash in a json written before it (it matches only where the draw is bit-identical).
    field, check = (
        ("target_sha256", mixture_target_sha256) if "target_sha256" in meta
        else ("data_sha256", lambda t: mixture_training_data(t)[2])
    )
    if (field, task) not in _SHA_CACHE:
        _SHA_CACHE[(field, task)] = check(task)
    sha = _SHA_CACHE[(field, task)]
    if meta.get(field) != sha:
        raise ValueError(
            f"{cfg_path} was trained on data with {field} {meta.get(field)!r}, but the {task} "
            f"target gives {sha!r}; retrain with `diffgym train-denoiser {task}`"
        )
    denoiser = build_mixture_denoiser(meta["config"])
    state = torch.load(weight_path, map_location=device, weights_only=True)
    denoiser.load_state_dict(state)
    denoiser.to(device).eval().requires_grad_(False)
    _CACHE[key] = denoiser
    return denoiser


_SHA_CACHE: dict[tuple[str, str], str] = {}
