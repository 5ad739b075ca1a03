"""A :class:`~diffgym.envs.tasks.Task` assembled from user parts: a denoiser spec, data on disk
and a guidance source.

``make_user_task("diffusers:/models/cifar10", "/data/cifar10.npz", guide="uncond")``; registered
as the task ``"user"`` (``make_task("user", denoiser=..., data=..., guide=...)``).

Data (:func:`load_user_data`):

* an ``.npz`` with ``x`` (or ``arr_0``) of shape ``(N, C, H, W)``, ``(N, H, W, C)``, ``(N, H, W)``
  (one channel) or ``(N, D)``, and optional int ``labels`` ``(N,)``. Integer arrays are 8-bit
  images mapped from ``[0, 255]`` to ``[-1, 1]``; float arrays are used as given (they must
  already be in the model's data range, ``[-1, 1]`` for images).
* a folder of PNG/JPG images (needs Pillow), mapped from ``[0, 255]`` to ``[-1, 1]``, read as
  grey (``C = 1``) or RGB (``C = 3``) to match the model, never resized. Images directly in the
  folder are unlabelled; images in subfolders are labelled by subfolder (sorted names → 0, 1, …).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffgym.envs.adapters import load_denoiser
from diffgym.envs.denoisers import Denoiser, UncondBranch
from diffgym.envs.tasks import Task, array_data_sampler, register_task

__all__ = [
    "make_user_task",
    "build_user_task",
    "load_user_data",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_CHURN_LEVELS = (0.0, 0.1, 0.25, 0.5)
DEFAULT_GUIDANCE_LEVELS = (1.0, 1.5, 2.0, 3.0)
UINT8_MAX = 255.0


def _to_unit_range(images: np.ndarray) -> np.ndarray:
    """8-bit ``[0, 255]`` → float32 ``[-1, 1]``."""
    return images.astype(np.float32) / (UINT8_MAX / 2) - 1.0


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(path) as arrays:
        key = "x" if "x" in arrays.files else "arr_0" if "arr_0" in arrays.files else None
        if key is None:
            raise ValueError(
                f"{path} has no array 'x' (nor 'arr_0'); arrays found: {', '.join(arrays.files)}"
            )
        x = arrays[key]
        labels = arrays["labels"] if "labels" in arrays.files else None
    if np.issubdtype(x.dtype, np.integer):
        x = _to_unit_range(x)
    elif np.issubdtype(x.dtype, np.floating):
        with np.errstate(over="ignore"):  # overflow to inf is reported by load_user_data
            x = x.astype(np.float32)
    else:
        raise ValueError(f"{path}: array {key!r} has dtype {x.dtype}; expected integers or floats")
    return x, labels


def _load_image_folder(
    path: Path, data_shape: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(
            f"reading the image folder {path} needs Pillow; install it with: pip install pillow"
        ) from err

    def images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    files = images_in(path)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and images_in(p))
    if files and subdirs:
        raise ValueError(
            f"{path} mixes images and class subfolders; use either flat images (unlabelled) or "
            "one subfolder per class"
        )
    labels: list[int] | None = None
    if subdirs:
        files, labels = [], []
        for label, sub in enumerate(subdirs):
            sub_files = images_in(sub)
            files += sub_files
            labels += [label] * len(sub_files)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {path}")
    channels = None if data_shape is None or len(data_shape) != 3 else int(data_shape[0])
    modes = {1: "L", 3: "RGB"}
    if channels is not None and channels not in modes:
        raise ValueError(f"image folders give 1 or 3 channels, the model has {channels}")
    mode = modes[channels] if channels is not None else "RGB"
    arrays = []
    for file in files:
        with Image.open(file) as image:
            arrays.append(np.asarray(image.convert(mode)))
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"images in {path} differ in size: {sorted(sizes)}; resize them first")
    x = np.stack(arrays)  # (N, H, W) or (N, H, W, C)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return _to_unit_range(x), None if labels is None else np.asarray(labels, dtype=np.int64)


def _match_layout(x: np.ndarray, data_shape: tuple[int, ...]) -> np.ndarray:
    """Bring ``(N, H, W, C)`` or ``(N, H, W)`` image arrays to ``(N, C, H, W)`` when that is what
    ``data_shape`` asks for; other arrays are returned unchanged."""
    if tuple(x.shape[1:]) == data_shape or len(data_shape) != 3:
        return x
    channels, height, width = data_shape
    if x.ndim == 4 and tuple(x.shape[1:]) == (height, width, channels):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim == 3 and channels == 1 and tuple(x.shape[1:]) == (height, width):
        return x[:, None]
    return x


def load_user_data(
    data: str | Path, data_shape: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Load ``(x float32 (N, *data_shape), labels int64 (N,) | None)`` from an ``.npz`` or an image
    folder (see the module docstring), checked against ``data_shape`` when given.

    Raises:
        FileNotFoundError: ``data`` does not exist.
        ValueError: not an ``.npz`` or folder, no images, mixed sizes, a shape that does not match
            ``data_shape`` (both named), labels of the wrong shape or negative, samples with
            NaN/inf values (the file and the rows named).
        ImportError: an image folder without Pillow installed.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data not found: {path}")
    if path.is_dir():
        x, labels = _load_image_folder(path, data_shape)
    elif path.suffix.lower() == ".npz":
        x, labels = _load_npz(path)
    else:
        raise ValueError(f"data must be an .npz file or a folder of images, got {path}")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{path}: expected at least one sample (N, ...), got shape {x.shape}")
    if data_shape is not None:
        data_shape = tuple(int(d) for d in data_shape)
        x = _match_layout(x, data_shape)
        if tuple(x.shape[1:]) != data_shape:
            raise ValueError(
                f"data {path} has samples of shape {tuple(x.shape[1:])}, but the denoiser's "
                f"data_shape is {data_shape}"
            )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (x.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"{path}: labels must be integers of shape ({x.shape[0]},), got "
                f"{labels.dtype} {labels.shape}"
            )
        if labels.min() < 0:
            raise ValueError(f"{path}: labels must be >= 0, got {int(labels.min())}")
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x32.reshape(x32.shape[0], -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        listed = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise ValueError(
            f"{path}: sample row {rows[0]} has NaN/inf values (beyond float32's range counts); "
            f"{len(rows)} of {x32.shape[0]} rows are non-finite (rows {listed}): remove them"
        )
    x_t = torch.from_numpy(x32)
    labels_t = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    return x_t, labels_t


def _resolve_denoiser(spec: str | nn.Module, device: torch.device | str) -> nn.Module:
    if isinstance(spec, nn.Module):
        return spec.to(device)
    return load_denoiser(spec, device=device)


def make_user_task(
    denoiser_spec: str | Denoiser,
    data: str | Path,
    *,
    guide: str | Denoiser | None = "uncond",
    num_steps: int = 18,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    churn_levels: Sequence[float] = DEFAULT_CHURN_LEVELS,
    guidance_levels: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
    name: str = "user",
) -> Task:
    """A task from a user's denoiser, data and guidance source.

    Args:
        denoiser_spec: a :func:`~diffgym.envs.adapters.load_denoiser` spec (or a denoiser).
        data: an ``.npz`` or an image folder (see :func:`load_user_data`); its labels give the
            episode label distribution of a conditional model (classes seen in the data).
        guide: ``"uncond"`` (classifier-free guidance: the model's own null-label branch; needs a
            conditional model with ``label_dropout_supported``), ``None`` or ``"none"`` (no
            guidance knob), or a
            spec (or denoiser) of a weaker model of the same data for autoguidance.
        num_steps, rho: the EDM schedule; ``sigma_min``/``sigma_max`` default to the denoiser's.
        churn_levels: churn menu (entry 0 must be 0).
        guidance_levels: guidance menu (entry 0 must be 1); default ``(1, 1.5, 2, 3)`` with a guide
            and ``(1,)`` without.
        device: where the denoiser and guide live.
        name: the task's name.

    Raises:
        ValueError: data of the wrong shape (both shapes named), a conditional model without labels
            in the data or labels outside its classes, ``"uncond"`` on a model without a null
            label, a guide of another shape or label set, bad schedule or menus.
        FileNotFoundError, ImportError: from :func:`load_denoiser` and :func:`load_user_data`.
    """
    denoiser = _resolve_denoiser(denoiser_spec, device)
    data_shape = tuple(int(d) for d in denoiser.data_shape)
    num_classes = int(denoiser.num_classes)
    x_all, y_all = load_user_data(data, data_shape)
    label_probs = None
    if num_classes > 0:
        if y_all is None:
            raise ValueError(
                f"the denoiser is class-conditional ({num_classes} classes) but {data} has no "
                "labels: add a 'labels' array to the .npz or use one subfolder per class"
            )
        if int(y_all.max()) >= num_classes:
            raise ValueError(
                f"{data} has label {int(y_all.max())}; the denoiser's labels are "
                f"0..{num_classes - 1}"
            )
        counts = torch.bincount(y_all, minlength=num_classes).double()
        label_probs = counts / counts.sum()
    else:
        y_all = torch.full((x_all.shape[0],), -1, dtype=torch.long)

    guide_net: nn.Module | None
    if guide is None or (isinstance(guide, str) and guide == "none"):
        guide_net, guide_kind = None, "none"
    elif isinstance(guide, str) and guide == "uncond":
        if num_classes == 0 or not getattr(denoiser, "label_dropout_supported", False):
            raise ValueError(
                "guide='uncond' (classifier-free guidance) needs a class-conditional denoiser with "
                f"a null label (label_dropout_supported=True); this one has {num_classes} classes "
                f"and label_dropout_supported={getattr(denoiser, 'label_dropout_supported', False)}"
                "; use guide=None (--guide none) or a weaker model's spec for autoguidance"
            )
        guide_net, guide_kind = UncondBranch(denoiser), "cfg"
    else:
        guide_net, guide_kind = _resolve_denoiser(guide, device), "autoguidance"
        guide_shape = tuple(int(d) for d in guide_net.data_shape)
        if guide_shape != data_shape or int(guide_net.num_classes) != num_classes:
            raise ValueError(
                f"the guide (data_shape {guide_shape}, {int(guide_net.num_classes)} classes) does "
                f"not match the denoiser (data_shape {data_shape}, {num_classes} classes)"
            )
    if guidance_levels is None:
        guidance_levels = DEFAULT_GUIDANCE_LEVELS if guide_net is not None else (1.0,)

    draw = array_data_sampler(x_all, y_all)

    return Task(
        name=name,
        denoiser=denoiser,
        guide=guide_net,
        guide_kind=guide_kind,
        data=draw,
        label_probs=label_probs,
        num_steps=int(num_steps),
        sigma_min=float(denoiser.sigma_min if sigma_min is None else sigma_min),
        sigma_max=float(denoiser.sigma_max if sigma_max is None else sigma_max),
        rho=float(rho),
        churn_levels=tuple(float(c) for c in churn_levels),
        guidance_levels=tuple(float(w) for w in guidance_levels),
        feature_kind="image" if len(data_shape) == 3 else "vector",
        metric_suite="pixels",
        extra={
            "denoiser": denoiser_spec if isinstance(denoiser_spec, str) else None,
            "data": str(data),
            "guide": guide if isinstance(guide, str) or guide is None else None,
            "num_data": int(x_all.shape[0]),
        },
    )


def build_user_task(
    *, denoiser: str | None = None, data: str | None = None, guide: str | None = "uncond"
) -> Task:
    """Builder of the registered task ``"user"``; schedule, menu and device overrides are applied
    by :func:`~diffgym.envs.tasks.make_task` afterwards."""
    if denoiser is None or data is None:
        raise ValueError(
            "task 'user' needs denoiser=<spec> and data=<.npz or image folder>, e.g. "
            "make_task('user', denoiser='diffusers:/path/to/model', data='/path/to/data.npz')"
        )
    return make_user_task(denoiser, data, guide=guide)


register_task("user", build_user_task, ("denoiser", "data", "guide"))
