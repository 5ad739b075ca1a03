"""The project's digits feature classifier: the feature space of FD-digits, KID and k-NN P/R.

Inception weights cannot be downloaded here (design §6), so the digits metrics are computed in the
penultimate layer of a small CNN trained by the project on scikit-learn's bundled 8x8 digits. The
trained weights ship with the package (``benchmarks/assets/digits_classifier.pt`` plus a JSON
record of its config, seed, data hash and held-out accuracy); retrain them with::

    diffgym --threads 1 train-classifier digits

The Fréchet distance in this feature space is called "FD-digits", never FID.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from diffgym.envs.data import DIGITS_CLASSES, DIGITS_SHAPE, load_digits_data
from diffgym.envs.io import atomic_write

__all__ = [
    "ASSETS_DIR",
    "CLASSIFIER_FILE",
    "METADATA_FILE",
    "DigitsClassifier",
    "DigitsClassifierConfig",
    "digits_classifier_sha256",
    "digits_split",
    "load_digits_classifier",
    "load_digits_classifier_metadata",
    "train_digits_classifier",
]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
CLASSIFIER_FILE = "digits_classifier.pt"
METADATA_FILE = "digits_classifier.json"
BACKGROUND = -1.0  # pixel value of an empty cell in the [-1, 1] scaling of the digits
TRAIN_COMMAND = "diffgym train-classifier digits"


@dataclass(frozen=True)
class DigitsClassifierConfig:
    """Architecture, split and training settings of the digits classifier.

    Attributes:
        channels: widths of the two convolution stages (8x8 -> 4x4 -> 2x2).
        feature_dim: width of the penultimate layer, the metric feature space.
        holdout_fraction: fraction of every class held out for evaluation (stratified split).
        split_seed: seed of the split; fixed so every trained classifier sees the same split.
        epochs, batch_size, lr, weight_decay: AdamW training with a one-cycle schedule (10% warm-up
            to ``lr``, then cosine decay).
        max_shift: augmentation, random translation by up to this many pixels per axis.
        noise_std_max: augmentation, additive Gaussian noise with a per-image std drawn from
            ``U(0, noise_std_max)`` (robustness to slightly noisy sampler outputs).
    """

    channels: tuple[int, int] = (32, 64)
    feature_dim: int = 64
    holdout_fraction: float = 0.2
    split_seed: int = 0
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_shift: int = 1
    noise_std_max: float = 0.15

    def __post_init__(self) -> None:
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"channels must be two positive ints, got {self.channels}")
        if self.feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {self.feature_dim}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}"
            )
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(
                f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}"
            )
        if self.max_shift < 0 or self.noise_std_max < 0:
            raise ValueError(
                f"max_shift and noise_std_max must be >= 0, got {self.max_shift} and "
                f"{self.noise_std_max}"
            )


class DigitsClassifier(nn.Module):
    """Small CNN for ``(1, 8, 8)`` digits in ``[-1, 1]``.

    ``conv-conv-pool (4x4) - conv-pool (2x2) - linear (feature_dim) - linear (10)``, SiLU
    activations (smooth, so no feature dimension is identically zero).

    Args:
        channels: widths of the two convolution stages.
        feature_dim: width of the penultimate layer returned by :meth:`features`.
        num_classes: number of output logits.
    """

    def __init__(
        self,
        *,
        channels: tuple[int, int] = (32, 64),
        feature_dim: int = 64,
        num_classes: int = DIGITS_CLASSES,
    ) -> None:
        super().__init__()
        c0, c1 = channels
        self.data_shape = DIGITS_SHAPE
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(1, c0, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(c0, c0, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(c0, c1, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),  # 2x2
            nn.Flatten(),
            nn.Linear(c1 * 4, feature_dim),
            nn.SiLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.data_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, 1, 8, 8), got {shape}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features: ``(B, 1, 8, 8)`` -> ``(B, feature_dim)``."""
        self._check(x)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits: ``(B, 1, 8, 8)`` -> ``(B, num_classes)``."""
        return self.head(self.features(x))


def digits_split(
    labels: torch.Tensor, *, holdout_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified train/held-out split of the digits.

    Every class contributes ``round(holdout_fraction * n_class)`` images to the held-out set,
    chosen by a permutation drawn from ``torch.Generator().manual_seed(seed)``.

    Args:
        labels: ``(N,)`` int64 class labels.
        holdout_fraction: in ``(0, 1)``.
        seed: seed of the split.

    Returns:
        ``(train_idx, holdout_idx)``: sorted int64 index tensors partitioning ``range(N)``.

    Raises:
        ValueError: ``labels`` not 1-D or ``holdout_fraction`` outside ``(0, 1)``.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    holdout = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).squeeze(1)
        perm = idx[torch.randperm(idx.numel(), generator=gen)]
        holdout.append(perm[: round(holdout_fraction * idx.numel())])
    holdout_idx = torch.sort(torch.cat(holdout)).values
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[holdout_idx] = False
    return torch.nonzero(mask).squeeze(1), holdout_idx


def _augment(
    x: torch.Tensor, max_shift: int, noise_std_max: float, gen: torch.Generator
) -> torch.Tensor:
    """Random integer translation (background-padded) plus per-image Gaussian noise."""
    b, _, h, w = x.shape
    if max_shift > 0:
        padded = F.pad(x, (max_shift,) * 4, value=BACKGROUND)
        dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, h, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, w)
        x = padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
    if noise_std_max > 0:
        std = noise_std_max * torch.rand((b, 1, 1, 1), generator=gen)
        x = x + std * torch.randn(x.shape, generator=gen)
    return x


@torch.no_grad()
def _accuracy(model: DigitsClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(x).argmax(-1) == labels).double().mean())


def train_digits_classifier(
    out_dir: str | os.PathLike[str] = ASSETS_DIR,
    *,
    seed: int = 0,
    config: DigitsClassifierConfig | None = None,
) -> dict[str, Any]:
    """Train the digits classifier on the fixed stratified split and write it to ``out_dir``.

    Training uses AdamW with a one-cycle learning-rate schedule, random translations and
    Gaussian-noise augmentation (see :class:`DigitsClassifierConfig`); all randomness derives from
    ``seed``, and the global RNG state is left as it was. Writes ``digits_classifier.pt``
    (``state_dict`` + config) and ``digits_classifier.json`` atomically (temporary file +
    ``os.replace``).

    Args:
        out_dir: destination folder (created if missing); the shipped asset folder by default.
        seed: seed of the initialisation, batch order and augmentation.
        config: settings; :class:`DigitsClassifierConfig` defaults when ``None``.

    Returns:
        The metadata written to the JSON file: ``config``, ``seed``, ``data_sha256``,
        ``heldout_accuracy``, ``train_accuracy``, ``n_train``, ``n_heldout``, ``train_seconds``,
        ``torch_version``.
    """
    cfg = config or DigitsClassifierConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x, labels, sha = load_digits_data()
    train_idx, hold_idx = digits_split(
        labels, holdout_fraction=cfg.holdout_fraction, seed=cfg.split_seed
    )
    x_tr, y_tr = x[train_idx], labels[train_idx]
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # parameter initialisation only; restored on exit
        model = DigitsClassifier(channels=cfg.channels, feature_dim=cfg.feature_dim)
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.1
    )
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(train_idx), generator=gen)
        for batch in perm.split(cfg.batch_size):
            xb = _augment(x_tr[batch], cfg.max_shift, cfg.noise_std_max, gen)
            loss = F.cross_entropy(model(xb), y_tr[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    seconds = time.perf_counter() - start
    config = {**asdict(cfg), "channels": list(cfg.channels)}  # as it reads back from JSON
    meta = {
        "config": config,
        "seed": seed,
        "data_sha256": sha,
        "heldout_accuracy": _accuracy(model, x[hold_idx], labels[hold_idx]),
        "train_accuracy": _accuracy(model, x_tr, y_tr),
        "n_train": len(train_idx),
        "n_heldout": len(hold_idx),
        "train_seconds": round(seconds, 2),
        "torch_version": torch.__version__,
    }
    payload = {"state_dict": model.state_dict(), "config": config}
    atomic_write(out / CLASSIFIER_FILE, lambda p: torch.save(payload, p))

    def write_json(p: str) -> None:
        with open(p, "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")

    atomic_write(out / METADATA_FILE, write_json)
    return meta


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"digits classifier file {path} not found; train it with `{TRAIN_COMMAND}` "
        f"(or diffgym.benchmarks.digits_classifier.train_digits_classifier(out_dir))"
    )


def load_digits_classifier(
    device: torch.device | str = "cpu", *, path: str | os.PathLike[str] | None = None
) -> DigitsClassifier:
    """Load the trained digits classifier in eval mode with gradients disabled.

    Args:
        device: where to put the model.
        path: a ``digits_classifier.pt`` file; the shipped one when ``None``.

    Raises:
        FileNotFoundError: the file is missing (the message says how to train it).
    """
    file = Path(path) if path is not None else ASSETS_DIR / CLASSIFIER_FILE
    if not file.is_file():
        raise _missing(file)
    payload = torch.load(file, map_location="cpu", weights_only=True)
    cfg = payload["config"]
    model = DigitsClassifier(channels=tuple(cfg["channels"]), feature_dim=cfg["feature_dim"])
    model.load_state_dict(payload["state_dict"])
    return model.eval().requires_grad_(False).to(device)


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digits_classifier_sha256(path: str | os.PathLike[str] | None = None) -> str:
    """SHA-256 of the classifier's weights file (the shipped one when ``path`` is ``None``),
    cached per file version (path, modification time, size). Part of the fingerprint of every
    task scored with the digits metrics (``Task.metric_suite == "digits"``), so a retrained
    classifier never reuses cached values. The hash is cached for the life of the process: a file
    replaced in place by one of the same size with its old modification time kept (``cp -p``)
    keeps the old hash until the process restarts.

    Raises:
        FileNotFoundError: the file is missing (the message says how to train it).
    """
    file = Path(path) if path is not None else ASSETS_DIR / CLASSIFIER_FILE
    if not file.is_file():
        raise _missing(file)
    st = file.stat()
    return _file_sha256(str(file.resolve()), st.st_mtime_ns, st.st_size)


def load_digits_classifier_metadata(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The JSON record written with the classifier (config, seed, data hash, accuracy, time).

    Raises:
        FileNotFoundError: the file is missing (the message says how to train it).
    """
    file = Path(path) if path is not None else ASSETS_DIR / METADATA_FILE
    if not file.is_file():
        raise _missing(file)
    with open(file) as f:
        return json.load(f)
