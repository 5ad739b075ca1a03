"""Optional FID, KID and precision/recall in Inception-v3 feature space, from local weights.

The feature extractor is the Inception-v3 graph of the original TensorFlow FID code
(``2015-12-05``; Heusel et al. 2017, arXiv 1706.08500), written out here in PyTorch with the
parameter names of the widely shared state dict ``pt_inception-2015-12-05-6726825d.pth``
(pytorch-fid; torch-fidelity ships the same file as ``weights-inception-2015-12-05-6726825d.pth``).
Nothing is downloaded: the user passes the file (``--fid-weights PATH``).

The Fréchet distance and KID are computed by torchmetrics (``diffgym[fid]``) on these features;
precision and recall (Kynkäänniemi et al. 2019) by :func:`diffgym.benchmarks.metrics.
precision_recall` on the same features. torch-fidelity is not used: its package imports
torchvision, which cannot be installed beside this project's torch — and when torch-fidelity is
installed without torchvision, ``torchmetrics.image`` itself fails to import (the error raised
here says so).

The network differs from torchvision's Inception-v3 exactly where the TF graph does: average
pools ignore the zero padding, the last block max-pools its pool branch, and images are resized
to 299×299 with TensorFlow 1.x bilinear resampling (no half-pixel offset) before ``(x - 128) /
128``.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diffgym.benchmarks.metrics import FeatureCache, content_hash

__all__ = [
    "FID_INPUT_SIZE",
    "FID_FEATURES",
    "InceptionFeatures",
    "load_inception",
    "images_to_uint8",
    "resize_bilinear_tf1",
    "inception_metrics",
    "reference_inception_features",
    "require_torchmetrics",
]

FID_INPUT_SIZE = 299
"""Side of the square images the Inception graph sees."""
FID_FEATURES = 2048
"""Width of the pool features FID, KID and precision/recall use."""
_INSTALL_HINT = "install the optional extra: pip install 'diffgym[fid]' (torchmetrics)"


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)`` of ``x (N, C, H, W)`` to ``size²``.

    Output pixel ``i`` samples the input at ``i * in / out`` (no half-pixel offset, unlike
    ``F.interpolate``), interpolating linearly between the two neighbours, the upper one clamped
    at the border.
    """
    assert x.ndim == 4 and x.is_floating_point()

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n_in = t.shape[dim]
        scale = torch.tensor(n_in / size, dtype=torch.float32, device=t.device)
        src = torch.arange(size, device=t.device, dtype=torch.float32) * scale
        lo = src.long()
        hi = (lo + 1).clamp_max(n_in - 1)
        frac = (src - lo.float()).to(t.dtype)
        shape = [1] * t.ndim
        shape[dim] = size
        a, b = t.index_select(dim, lo), t.index_select(dim, hi)
        return a + (b - a) * frac.view(shape)

    return along(along(x, 3), 2)  # width, then height (TF's order; bit-exact on CPU)


class _ConvBN(nn.Module):
    """Convolution without bias, batch norm (``eps = 1e-3``, as in TF) and ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's 3x3 average pool divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _Block35(nn.Module):
    """``Mixed_5b``–``5d``: 1x1, 5x5, double 3x3 and pool branches (35×35 grid)."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, 64, 1)
        self.branch5x5_1 = _ConvBN(c_in, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class _Reduce35(nn.Module):
    """``Mixed_6a``: 35×35 → 17×17 (strided 3x3, strided double 3x3, max pool)."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class _Block17(nn.Module):
    """``Mixed_6b``–``6e``: factorised 7x7 branches (17×17 grid)."""

    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding)
        self.branch1x1 = _ConvBN(c_in, 192, 1)
        self.branch7x7_1 = _ConvBN(c_in, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7_3 = _ConvBN(c7, 192, col[0], padding=col[1])
        self.branch7x7dbl_1 = _ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_3 = _ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7dbl_4 = _ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_5 = _ConvBN(c7, 192, row[0], padding=row[1])
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool(x))], 1)


class _Reduce17(nn.Module):
    """``Mixed_7a``: 17×17 → 8×8."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(c_in, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _Block8(nn.Module):
    """``Mixed_7b`` (average-pool branch) and ``Mixed_7c`` (max-pool branch, as in the TF graph)."""

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(c_in, 320, 1)
        self.branch3x3_1 = _ConvBN(c_in, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class InceptionFeatures(nn.Module):
    """The FID Inception-v3: ``uint8 (N, 3, H, W)`` images → ``float32 (N, 2048)`` pool features.

    Parameters and buffers are named as in ``pt_inception-2015-12-05-6726825d.pth`` (including the
    unused 1008-way ``fc`` head), so that file loads with ``strict=True``. Built randomly
    initialised; use :func:`load_inception` for the real weights. Frozen, in eval mode.
    """

    num_features = FID_FEATURES  # read by torchmetrics for custom feature extractors

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _Block35(192, 32)
        self.Mixed_5c = _Block35(256, 64)
        self.Mixed_5d = _Block35(288, 64)
        self.Mixed_6a = _Reduce35(288)
        self.Mixed_6b = _Block17(768, 128)
        self.Mixed_6c = _Block17(768, 160)
        self.Mixed_6d = _Block17(768, 160)
        self.Mixed_6e = _Block17(768, 192)
        self.Mixed_7a = _Reduce17(768)
        self.Mixed_7b = _Block8(1280, max_pool=False)
        self.Mixed_7c = _Block8(2048, max_pool=True)
        self.fc = nn.Linear(FID_FEATURES, 1008)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        # Always in eval mode: batch norm uses the stored statistics (torchmetrics calls .train()).
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: ``uint8 (N, 3, H, W)`` in ``[0, 255]`` (any ``H, W``; resized to 299²)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                "InceptionFeatures expects uint8 images of shape (N, 3, H, W), got "
                f"{images.dtype} {tuple(images.shape)} (see images_to_uint8)"
            )
        x = resize_bilinear_tf1(images.float(), FID_INPUT_SIZE)
        x = (x - 128.0) / 128.0
        # Stem: 299 -> 35.
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        # Inception blocks: 35 -> 17 -> 8, then global average pool.
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3)).float()


def _check_weights_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"Inception weights file {str(p)!r} does not exist; --fid-weights needs a local copy "
            "of the FID Inception-v3 state dict pt_inception-2015-12-05-6726825d.pth "
            "(pytorch-fid / torch-fidelity); nothing is downloaded"
        )
    return p


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, mtime_ns: int, device: str) -> InceptionFeatures:
    del mtime_ns  # part of the cache key only: a replaced file is read again
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise ValueError(f"cannot read Inception weights from {path!r}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, not an Inception state dict")
    net = InceptionFeatures()
    # Batch-norm step counters are optional (older files lack them; load_state_dict fills them).
    want = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    have = {k for k in state if not str(k).endswith("num_batches_tracked")}
    missing, unexpected = sorted(want - have), sorted(have - want)
    if missing or unexpected:
        raise ValueError(
            f"{path!r} is not the FID Inception-v3 state dict: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # right names, wrong shapes
        raise ValueError(f"{path!r} does not fit the FID Inception-v3: {exc}") from exc
    return net.to(device)


def load_inception(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> InceptionFeatures:
    """The FID Inception-v3 with the weights in ``path`` (a state dict), cached per file.

    Raises:
        FileNotFoundError: ``path`` is not a file (the message names it and the expected file).
        ValueError: the file cannot be read or is not that network's state dict.
    """
    p = _check_weights_path(path).resolve()
    return _load_cached(str(p), p.stat().st_mtime_ns, str(torch.device(device)))


def images_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` images ``(N, C, H, W)`` with ``C`` in {1, 3} → ``uint8 (N, 3, H, W)``.

    Values are clipped to ``[-1, 1]`` and rounded to 8 bits (as when samples are saved as
    pictures); one channel is repeated to three.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"FID needs images of shape (N, 1 or 3, H, W), got {tuple(x.shape)}"
        )
    u8 = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8


def require_torchmetrics() -> tuple[type, type]:
    """torchmetrics' ``(FrechetInceptionDistance, KernelInceptionDistance)``.

    Raises:
        ImportError: torchmetrics is missing or its image metrics cannot import (the message
            says what to install or remove).
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError as exc:
        raise ImportError(
            f"FID needs torchmetrics' image metrics ({exc}); {_INSTALL_HINT}. If torch-fidelity "
            "is installed without torchvision, torchmetrics.image cannot import: uninstall "
            "torch-fidelity (diffgym does not use it)"
        ) from exc
    return FrechetInceptionDistance, KernelInceptionDistance


def _features(net: InceptionFeatures, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    dev = next(net.parameters()).device
    return torch.cat([net(images_to_uint8(b).to(dev)) for b in x.split(batch_size)]).cpu()


_REFERENCE_FEATURES = FeatureCache(4)


def reference_inception_features(
    reference_x: torch.Tensor, weights: str | os.PathLike, *, device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> torch.Tensor:
    """``(M, 2048)`` Inception features of ``reference_x``, computed once per (reference content,
    weights file and its modification time, device, batch size) and cached in the process;
    returns a copy. Every row and grid point scored on one seed shares one pass over that
    seed's reference draw: the same values as embedding it again.

    Raises:
        FileNotFoundError, ValueError: see :func:`load_inception`.
    """
    p = _check_weights_path(weights).resolve()
    dev = str(torch.device(device))
    key = (str(p), p.stat().st_mtime_ns, dev, int(batch_size), content_hash(reference_x))
    return _REFERENCE_FEATURES.get(
        key, lambda: _features(load_inception(p, dev), reference_x, batch_size))


def inception_metrics(
    x: torch.Tensor,
    reference_x: torch.Tensor,
    weights: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """FID, KID (torchmetrics) and k-NN precision/recall in Inception space.

    Args:
        x: ``(N, C, H, W)`` generated images in ``[-1, 1]``, ``C`` in {1, 3}, ``N >= k + 1``.
        reference_x: ``(M, C, H, W)`` real images, same range.
        weights: the Inception state dict file (see :func:`load_inception`).
        device: where the Inception network runs.
        k: neighbourhood size of precision/recall.
        kid_subsets, kid_subset_size: KID protocol (the subset size is capped at ``min(N, M)``).
        batch_size: images per Inception forward pass.
        seed: seed of KID's subset draws.

    Returns:
        ``{"fid", "kid_inception", "precision_inception", "recall_inception"}``.

    Raises:
        ImportError: torchmetrics missing or unusable (the message says what to install).
        FileNotFoundError, ValueError: see :func:`load_inception`; bad image shapes.
    """
    FrechetInceptionDistance, KernelInceptionDistance = require_torchmetrics()
    from diffgym.benchmarks.metrics import precision_recall

    net = load_inception(weights, device)
    fake = _features(net, x, batch_size)
    real = reference_inception_features(reference_x, weights, device=device,
                                        batch_size=batch_size)
    # torchmetrics on precomputed features: its "feature extractor" is the identity.
    ident = _Identity()
    fid = FrechetInceptionDistance(feature=ident, reset_real_features=True)
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    subset = min(kid_subset_size, real.shape[0], fake.shape[0])
    with warnings.catch_warnings():  # "will save all extracted features": we pass features
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        kid = KernelInceptionDistance(feature=ident, subsets=kid_subsets, subset_size=subset)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from the global generator
        torch.manual_seed(seed)
        kid_mean, _ = kid.compute()
    pr = precision_recall(real, fake, k=k)
    return {
        "fid": float(fid.compute()),
        "kid_inception": float(kid_mean),
        "precision_inception": pr["precision"],
        "recall_inception": pr["recall"],
    }


class _Identity(nn.Module):
    """Pass-through "feature extractor" for features computed by :class:`InceptionFeatures`."""

    num_features = FID_FEATURES

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats

