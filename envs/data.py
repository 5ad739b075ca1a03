"""Embedded, offline data sets."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch

__all__ = ["load_digits_data", "DIGITS_SHAPE", "DIGITS_CLASSES"]

DIGITS_SHAPE = (1, 8, 8)
DIGITS_CLASSES = 10


@lru_cache(maxsize=1)
def _digits_numpy() -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 8.0 - 1.0).reshape(-1, *DIGITS_SHAPE)
    labels = bunch.target.astype(np.int64)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    return images, labels, digest


def load_digits_data() -> tuple[torch.Tensor, torch.Tensor, str]:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes; no download).

    Returns:
        ``(x, labels, sha256)``: ``x`` float32 ``(1797, 1, 8, 8)`` scaled from ``[0, 16]`` to
        ``[-1, 1]``; ``labels`` int64 ``(1797,)``; a hash of both, recorded with every model
        trained on them.
    """
    images, labels, digest = _digits_numpy()
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()), digest
