"""Offline sample-quality metrics (design §6), torch-native and device-agnostic.

Inputs are torch tensors on any device; the maths runs on the inputs' device, in float64 (float32
on Apple ``mps``, which has no float64), and results are Python floats (or dicts of floats). The
pairwise metrics (MMD, KID, k-NN precision/recall) work on blocks of rows (larger blocks off the
CPU) and read one result back to the host per call.

Gaussian-mixture tasks, where the data distribution is known exactly:

* :func:`mean_log_density`: exact mean log-density of the samples under the mixture;
* :func:`mode_mass_tv`: total variation between the per-mode mass of the samples and the weights;
* :func:`mode_recall`: fraction of modes that received samples;
* :func:`sliced_wasserstein` and :func:`mmd` against fresh data;
* :func:`mixture_metrics` bundles them.

Digits, in the feature space of the project's classifier
(:mod:`diffgym.benchmarks.digits_classifier`; no Inception weights, so never called FID):

* :func:`frechet_distance` ("FD-digits"), :func:`kid`, :func:`precision_recall`,
  :func:`class_histogram_tv`; :func:`digits_metrics` (in :mod:`diffgym.benchmarks.digits_metrics`,
  also importable from here) bundles them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import torch

from diffgym.envs.denoisers import GaussianMixture

__all__ = [
    "class_histogram_tv",
    "FeatureCache",
    "content_hash",
    "frechet_distance",
    "kid",
    "mean_log_density",
    "mixture_metrics",
    "mmd",
    "mode_assignment",
    "mode_mass_tv",
    "mode_recall",
    "precision_recall",
    "sliced_wasserstein",
]

DEFAULT_SEED = 0  # seed of the generator used when a randomised metric is given none
MEDIAN_SUBSET = 1000  # points per set used to compute the median-heuristic bandwidth
MMD_BANDWIDTH_SCALES = (0.5, 1.0, 2.0)  # default MMD kernel: these multiples of the median
MMD_MAX_SAMPLES = 4096  # mixture_metrics: MMD (O(N M) kernel sums) on at most this many per set
ROW_BLOCK = 1024  # rows per block in pairwise computations on the CPU (memory ROW_BLOCK x N)
DEVICE_BLOCK_ELEMENTS = 2**25  # elements per pairwise block on other devices (256 MiB float64)


# ----------------------------------------------------------------------------- validation helpers


def content_hash(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' dtypes, shapes and values (as float32): the key of a cache of
    features computed from a reference set."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.float().numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Features of reference sets kept in the process, by key (e.g. :func:`content_hash` of the
    set, the network's weights, the device); the oldest is dropped beyond ``size``.
    :meth:`get` returns a copy, so callers may modify it."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._items: dict[tuple, torch.Tensor] = {}

    def get(self, key: tuple, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The features under ``key``, from ``compute()`` the first time."""
        feat = self._items.get(key)
        if feat is None:
            feat = compute()
            if len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = feat
        return feat.clone()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()


def _acc_dtype(device: torch.device) -> torch.dtype:
    """Accumulation dtype: float64, except on ``mps`` (no float64 support)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _samples(
    name: str,
    x: object,
    *,
    min_n: int = 1,
    data_shape: tuple[int, ...] | None = None,
    ndim: int | None = None,
) -> torch.Tensor:
    """Validate a batch of samples and return it flattened to ``(N, d)`` in the accumulation dtype.

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: wrong shape, fewer than ``min_n`` samples, or non-finite values.
    """
    x = _check_tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (N, D), got shape {tuple(x.shape)}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, *data_shape), got {tuple(x.shape)}")
    if data_shape is not None and tuple(x.shape[1:]) != tuple(data_shape):
        want = ", ".join(map(str, data_shape))
        raise ValueError(f"{name} must have shape (N, {want}), got {tuple(x.shape)}")
    if x.shape[0] < min_n:
        raise ValueError(f"{name} needs at least {min_n} samples, got {x.shape[0]}")
    x = x.detach().reshape(x.shape[0], -1).to(_acc_dtype(x.device))
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; only finite samples are allowed")
    return x


def _pair(
    x: object,
    y: object,
    *,
    min_n: int,
    ndim: int | None = None,
    names: tuple[str, str] = ("x", "y"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two sample sets with the same per-sample shape; return them flattened."""
    xt, yt = _check_tensor(names[0], x), _check_tensor(names[1], y)
    if tuple(xt.shape[1:]) != tuple(yt.shape[1:]):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same per-sample shape, got "
            f"{tuple(xt.shape)} and {tuple(yt.shape)}"
        )
    a = _samples(names[0], xt, min_n=min_n, ndim=ndim)
    b = _samples(names[1], yt, min_n=min_n, ndim=ndim)
    return a, b.to(a.device)


def _probs(name: str, p: object, k: int, like: torch.Tensor) -> torch.Tensor:
    """Validate a ``(k,)`` non-negative weight vector and return it normalised."""
    p = torch.as_tensor(p).to(device=like.device, dtype=like.dtype)
    if p.shape != (k,):
        raise ValueError(f"{name} must have shape ({k},), got {tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or float(p.sum()) <= 0:
        raise ValueError(f"{name} must be finite, >= 0 and have a positive sum, got {p.tolist()}")
    return p / p.sum()


def _generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(DEFAULT_SEED)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")
    return generator


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(n, m)`` squared Euclidean distances by direct differences (exact zeros for equal rows)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist") ** 2


def _row_block(num_cols: int, device: torch.device) -> int:
    """Rows per block of a ``(rows, num_cols)`` pairwise matrix: :data:`ROW_BLOCK` on the CPU,
    up to :data:`DEVICE_BLOCK_ELEMENTS` elements per block elsewhere (fewer, larger kernels)."""
    if device.type == "cpu":
        return ROW_BLOCK
    return max(ROW_BLOCK, DEVICE_BLOCK_ELEMENTS // max(num_cols, 1))


def _gaussian_kernel_sum(
    a: torch.Tensor, b: torch.Tensor | None, inv: Sequence[float]
) -> torch.Tensor:
    """``sum_ij sum_h exp(-|a_i - b_j|^2 inv_h)`` as a 0-d tensor, block by block.

    ``b = None`` is the symmetric sum over ``a`` against itself: only the blocks on and above the
    diagonal are computed (those above counted twice), about half the work.
    """
    total = torch.zeros((), device=a.device, dtype=a.dtype)
    other = a if b is None else b
    rows = _row_block(other.shape[0], a.device)
    for start in range(0, a.shape[0], rows):
        blk = a[start:start + rows]
        d2 = _sq_dists(blk, other[start:] if b is None else other)
        e = torch.empty_like(d2)
        for h in inv:
            torch.mul(d2, -h, out=e).exp_()
            if b is None:  # the diagonal block once, the blocks to its right twice
                total += e[:, : blk.shape[0]].sum() + 2 * e[:, blk.shape[0]:].sum()
            else:
                total += e.sum()
    return total


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total variation ``0.5 * sum |p - q|`` between two probability vectors."""
    return float(0.5 * (p - q).abs().sum())


# ----------------------------------------------------------------------------- mixture metrics


def _mixture_samples(x: object, mixture: GaussianMixture, name: str = "x") -> torch.Tensor:
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
    return _samples(name, x, data_shape=mixture.data_shape)


def mean_log_density(x: torch.Tensor, mixture: GaussianMixture) -> float:
    """Mean exact log-density ``(1/N) sum_i log p(x_i)`` of samples under the mixture (σ = 0).

    For samples drawn from the mixture itself this estimates ``-H(p)`` (the negative entropy). A
    sampler that sharpens its output towards the modes scores *above* ``-H(p)``, so read it with
    the coverage metrics (``mode_recall``, ``sw2``, ``mmd``), never alone.

    Args:
        x: ``(N, *mixture.data_shape)`` samples, ``N >= 1``.
        mixture: the task's data distribution.

    Raises:
        ValueError: wrong shape, no samples, or non-finite values.
    """
    xf = _mixture_samples(x, mixture)
    logp = [mixture.log_prob(blk.reshape(-1, *mixture.data_shape)) for blk in xf.split(ROW_BLOCK)]
    return float(torch.cat(logp).mean())


def _component_log_joint(xf: torch.Tensor, mixture: GaussianMixture) -> torch.Tensor:
    """``(N, K)`` ``log w_k + log N(x; mu_k, s_k^2 I)`` for flattened samples ``xf (N, d)``."""
    mu = mixture.means.reshape(mixture.num_components, -1).to(xf)
    s2 = mixture.stds.to(xf) ** 2
    log_w = torch.log(mixture.weights.to(xf))
    sq = torch.cat([_sq_dists(blk, mu) for blk in xf.split(ROW_BLOCK)])
    return log_w - 0.5 * sq / s2 - 0.5 * mixture.dim * torch.log(2 * math.pi * s2)


def mode_assignment(x: torch.Tensor, mixture: GaussianMixture) -> torch.Tensor:
    """Index of the component each sample belongs to: the largest responsibility at σ = 0.

    ``argmax_k w_k N(x; mu_k, s_k^2 I)`` (the Bayes classifier of the components), which equals the
    nearest mean when weights and stds are equal.

    Args:
        x: ``(N, *mixture.data_shape)`` samples.
        mixture: the task's data distribution.

    Returns:
        ``(N,)`` int64 component indices in ``[0, K)``, on ``x``'s device.

    Raises:
        ValueError: wrong shape, no samples, or non-finite values.
    """
    xf = _mixture_samples(x, mixture)
    return _component_log_joint(xf, mixture).argmax(-1)


def mode_mass_tv(
    x: torch.Tensor, mixture: GaussianMixture, target_weights: torch.Tensor | None = None
) -> float:
    """Total variation between the empirical per-mode mass and the target weights.

    ``TV = 0.5 * sum_k |n_k / N - w_k|`` with ``n_k`` the number of samples assigned to component
    ``k`` by :func:`mode_assignment`. 0 when the samples split across modes exactly as the weights,
    ``1 - w_k`` when all samples fall in mode ``k``.

    Args:
        x: ``(N, *mixture.data_shape)`` samples.
        mixture: the task's data distribution.
        target_weights: ``(K,)`` non-negative weights (normalised here); ``mixture.weights`` when
            ``None`` (pass the label-restricted weights for a class-conditional evaluation).

    Raises:
        ValueError: wrong shapes, no samples, non-finite values, or invalid ``target_weights``.
    """
    assign = mode_assignment(x, mixture)
    k = mixture.num_components
    counts = torch.bincount(assign, minlength=k).to(_acc_dtype(assign.device))
    target = mixture.weights if target_weights is None else target_weights
    return _tv(counts / counts.sum(), _probs("target_weights", target, k, counts))


def mode_recall(
    x: torch.Tensor, mixture: GaussianMixture, *, min_count: int = 1, radius: float = 3.0
) -> float:
    """Fraction of modes that received at least ``min_count`` samples close to their mean.

    Rule: a sample ``x`` counts for mode ``k`` when ``k`` is its :func:`mode_assignment` and
    ``|x - mu_k|^2 / s_k^2 <= d + radius * sqrt(2 d)``. Under the component itself that
    standardised squared distance is chi-square with ``d`` degrees of freedom (mean ``d``, std
    ``sqrt(2 d)``), so ``radius`` counts standard deviations of it above its mean; the ball
    adapts to the dimension (``radius=3``: 2.8 s_k in 2-d, 9.9 s_k in 64-d), and only a few
    percent of a mode's own samples fall outside it. Samples stranded between modes are not
    credited to any.

    Args:
        x: ``(N, *mixture.data_shape)`` samples.
        mixture: the task's data distribution.
        min_count: samples a mode needs to count as recalled (``>= 1``).
        radius: size of the ball, in standard deviations of the chi-square (``> 0``).

    Raises:
        ValueError: wrong shape, no samples, non-finite values, ``min_count < 1`` or
            ``radius <= 0``.
    """
    if int(min_count) != min_count or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    xf = _mixture_samples(x, mixture)
    log_joint = _component_log_joint(xf, mixture)
    assign = log_joint.argmax(-1)
    mu = mixture.means.reshape(mixture.num_components, -1).to(xf)
    s2 = (mixture.stds.to(xf) ** 2)[assign]
    z2 = ((xf - mu[assign]) ** 2).sum(-1) / s2  # chi-square(d) under the assigned component
    d = mixture.dim
    close = z2 <= d + radius * math.sqrt(2 * d)
    counts = torch.bincount(assign[close], minlength=mixture.num_components)
    return float((counts >= min_count).double().mean())


def _w2_squared_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact squared W2 between 1-d empirical measures, row-wise: ``(P, n), (P, m) -> (P,)``.

    ``W2^2 = int_0^1 (F^-1(t) - G^-1(t))^2 dt`` with both quantile functions piecewise constant;
    the integral is summed over the union of their breakpoints ``{i/n} ∪ {j/m}``. Equal sizes
    reduce to the mean squared difference of the sorted values.
    """
    a, b = a.sort(dim=-1).values, b.sort(dim=-1).values
    n, m = a.shape[-1], b.shape[-1]
    if n == m:
        return ((a - b) ** 2).mean(-1)
    kw = {"device": a.device, "dtype": a.dtype}
    t = torch.cat([torch.arange(n + 1, **kw) / n, torch.arange(m + 1, **kw) / m]).sort().values
    width = t[1:] - t[:-1]  # zero-width pieces at shared breakpoints contribute nothing
    mid = 0.5 * (t[1:] + t[:-1])
    ia = (mid * n).long().clamp_(max=n - 1)
    ib = (mid * m).long().clamp_(max=m - 1)
    return ((a[:, ia] - b[:, ib]) ** 2 * width).sum(-1)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_projections: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced Wasserstein-2 distance ``SW2 = sqrt(E_u W2^2(u·x, u·y))`` (Bonneel et al. 2015).

    Directions ``u`` are uniform on the unit sphere (normalised Gaussians drawn on the CPU from
    ``generator``, so the value is the same on every device); on each line the exact W2 between
    the two empirical measures is computed by sorting. Unequal sizes are allowed: the two
    quantile functions are compared on the union of their breakpoints (exact, no resampling).
    For ``y = x + m``, ``SW2^2 = mean_u (m·u)^2 -> |m|^2 / d``.

    Args:
        x: ``(N, *shape)`` samples, ``N >= 1``.
        y: ``(M, *shape)`` samples (same per-sample shape), ``M >= 1``.
        num_projections: number of random directions (``>= 1``).
        generator: source of the directions; ``torch.Generator().manual_seed(0)`` when ``None``.

    Returns:
        SW2, in the units of the data (not squared).

    Raises:
        ValueError: mismatched shapes, empty sets, non-finite values, ``num_projections < 1``.
    """
    if int(num_projections) != num_projections or num_projections < 1:
        raise ValueError(f"num_projections must be an int >= 1, got {num_projections}")
    a, b = _pair(x, y, min_n=1)
    gen = _generator(generator)
    u = torch.randn((a.shape[1], num_projections), generator=gen, dtype=torch.float64)
    u = (u / u.norm(dim=0, keepdim=True)).to(a)
    w2 = _w2_squared_1d((a @ u).T, (b @ u).T)
    return float(w2.mean().sqrt())


def _median_bandwidth(z: torch.Tensor) -> float:
    """Median pairwise distance among (at most ``MEDIAN_SUBSET``, evenly strided) rows of ``z``."""
    n = z.shape[0]
    idx = torch.linspace(0, n - 1, min(n, MEDIAN_SUBSET), device=z.device).round().long()
    sub = z[idx]
    d2 = _sq_dists(sub, sub)
    iu = torch.triu_indices(len(idx), len(idx), offset=1, device=z.device)
    return float(d2[iu[0], iu[1]].median().sqrt())


def mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bandwidths: float | Sequence[float] | None = None,
) -> float:
    """Unbiased squared MMD with a Gaussian kernel (Gretton et al. 2012, JMLR, eq. 3).

    ``k(a, b) = mean_h exp(-|a - b|^2 / (2 h^2))`` over the bandwidths ``h``;
    ``MMD^2 = sum_{i!=j} k(x_i,x_j)/(N(N-1)) + sum_{i!=j} k(y_i,y_j)/(M(M-1))
    - 2 sum_ij k(x_i,y_j)/(N M)``. Unbiased, so it can be slightly negative when the two
    distributions are equal.

    Default bandwidths (median heuristic): ``(0.5, 1, 2)`` times the median pairwise distance
    *within* ``y`` (up to 1000 evenly strided points). Pass the reference set as ``y``: every
    sampler evaluated against the same reference is then scored with the same kernel.

    Args:
        x: ``(N, *shape)`` samples, ``N >= 2``.
        y: ``(M, *shape)`` reference samples (same per-sample shape), ``M >= 2``.
        bandwidths: one positive bandwidth or a sequence of them; median heuristic when ``None``.

    Raises:
        ValueError: mismatched shapes, fewer than 2 samples, non-finite values, non-positive
            bandwidths, or (median heuristic) all points of ``y`` coincide.
    """
    a, b = _pair(x, y, min_n=2)
    if bandwidths is None:
        med = _median_bandwidth(b)
        if med <= 0:
            raise ValueError(
                "the median-heuristic bandwidth is 0 (all points of y coincide); pass bandwidths"
            )
        hs = [s * med for s in MMD_BANDWIDTH_SCALES]
    else:
        hs = torch.as_tensor(bandwidths, dtype=torch.float64).reshape(-1).tolist()
        if not hs or not all(math.isfinite(h) and h > 0 for h in hs):
            raise ValueError(f"bandwidths must be positive and finite, got {bandwidths}")
    inv = [1.0 / (2 * h * h) for h in hs]
    n, m, num_h = a.shape[0], b.shape[0], len(inv)
    # k(z, z) = 1 exactly, so the off-diagonal sums are the full sums minus the sizes
    kxx = (_gaussian_kernel_sum(a, None, inv) / num_h - n) / (n * (n - 1))
    kyy = (_gaussian_kernel_sum(b, None, inv) / num_h - m) / (m * (m - 1))
    kxy = _gaussian_kernel_sum(a, b, inv) / num_h / (n * m)
    return float(kxx + kyy - 2 * kxy)


def mixture_metrics(
    x: torch.Tensor,
    mixture: GaussianMixture,
    reference: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    target_weights: torch.Tensor | None = None,
    num_projections: int = 256,
    mmd_max_samples: int | None = MMD_MAX_SAMPLES,
) -> dict[str, float]:
    """All Gaussian-mixture metrics of samples ``x`` against the mixture and fresh data.

    Args:
        x: ``(N, *mixture.data_shape)`` samples, ``N >= 2``.
        mixture: the task's data distribution.
        reference: ``(M, *mixture.data_shape)`` fresh samples of the mixture (``M >= 2``).
        generator: directions of the sliced Wasserstein distance (seed 0 when ``None``).
        target_weights: per-mode target for ``mode_tv`` (``mixture.weights`` when ``None``).
        num_projections: directions of the sliced Wasserstein distance.
        mmd_max_samples: the MMD uses the first ``mmd_max_samples`` rows of ``x`` and of
            ``reference`` (its cost is quadratic: about 25 s at 8192 vs 8192 on one CPU thread);
            ``None``: all rows. The other metrics always use every sample.

    Returns:
        ``{"logp": mean_log_density, "mode_tv": mode_mass_tv, "mode_recall": mode_recall,
        "sw2": sliced_wasserstein(x, reference), "mmd": mmd(x[:K], reference[:K])}`` with the
        defaults of each function (``K = mmd_max_samples``).

    Raises:
        ValueError: see the individual metrics; ``mmd_max_samples`` not None or an int >= 2.
    """
    _mixture_samples(reference, mixture, "reference")
    if mmd_max_samples is not None and (
        isinstance(mmd_max_samples, bool) or not isinstance(mmd_max_samples, int)
        or mmd_max_samples < 2
    ):
        raise ValueError(f"mmd_max_samples must be None or an int >= 2, got {mmd_max_samples!r}")
    return {
        "logp": mean_log_density(x, mixture),
        "mode_tv": mode_mass_tv(x, mixture, target_weights),
        "mode_recall": mode_recall(x, mixture),
        "sw2": sliced_wasserstein(
            x, reference, num_projections=num_projections, generator=generator
        ),
        "mmd": mmd(x[:mmd_max_samples], reference[:mmd_max_samples]),
    }


# ----------------------------------------------------------------------------- feature metrics


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root by eigendecomposition (negative round-off eigenvalues -> 0)."""
    evals, evecs = torch.linalg.eigh(0.5 * (a + a.T))
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def frechet_distance(feat_a: torch.Tensor, feat_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ("FD-digits" on digits).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)`` (Dowson & Landau 1982; the
    formula of FID, Heusel et al. 2017), with unbiased covariances. The matrix square roots are
    computed by symmetric eigendecomposition in float64, which stays real and accurate for
    singular covariances (unlike ``scipy.linalg.sqrtm`` of the non-symmetric ``S_a S_b``);
    ``tr((S_a^1/2 S_b S_a^1/2)^1/2)`` equals ``tr((S_a S_b)^1/2)``. Round-off below zero is
    clipped, so the result is ``>= 0``. With fewer samples than dimensions the covariances are
    rank-deficient and the estimate is strongly biased; compare values at equal sample counts.

    Args:
        feat_a: ``(N, D)`` features, ``N >= 2``.
        feat_b: ``(M, D)`` features, ``M >= 2``.

    Raises:
        ValueError: not 2-D, different ``D``, fewer than 2 rows, or non-finite values.
    """
    a, b = _pair(feat_a, feat_b, min_n=2, ndim=2, names=("feat_a", "feat_b"))
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    sqrt_a = _sqrtm_psd(cov_a)
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp(min=0).sqrt().sum()
    fd = ((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_sqrt
    return max(float(fd), 0.0)


def _poly_kernel(gram: torch.Tensor, dim: int) -> torch.Tensor:
    """KID's kernel ``(x·y / D + 1)^3`` from inner products."""
    return (gram / dim + 1) ** 3


def _kid_by_subsets(
    a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor
) -> torch.Tensor:
    """``(S,)`` unbiased polynomial MMD^2 of the subsets ``a[ia[s]]``, ``b[ib[s]]`` (each
    ``(S, m)`` indices), computed for many subsets at once as batched ``(m, m)`` kernels."""
    num, m = ia.shape
    dim = a.shape[1]
    off = m * (m - 1)
    chunk = max(1, (ROW_BLOCK * ROW_BLOCK if a.device.type == "cpu" else DEVICE_BLOCK_ELEMENTS)
                // (m * m))
    out = []
    for start in range(0, num, chunk):
        xa, xb = a[ia[start:start + chunk]], b[ib[start:start + chunk]]  # (c, m, D)
        kxx = _poly_kernel(xa @ xa.transpose(1, 2), dim)
        kyy = _poly_kernel(xb @ xb.transpose(1, 2), dim)
        kxy = _poly_kernel(xa @ xb.transpose(1, 2), dim)
        out.append(
            (kxx.sum((1, 2)) - kxx.diagonal(dim1=1, dim2=2).sum(1)) / off
            + (kyy.sum((1, 2)) - kyy.diagonal(dim1=1, dim2=2).sum(1)) / off
            - 2 * kxy.mean((1, 2))
        )
    return torch.cat(out)


def _subset_kernel_sums(
    a: torch.Tensor, b: torch.Tensor, ua: torch.Tensor, ub: torch.Tensor
) -> torch.Tensor:
    """``(S,)`` sums ``sum_{i in A_s, j in B_s} k(a_i, b_j)`` for subsets given by 0/1 indicator
    columns ``ua (N_a, S)``, ``ub (N_b, S)``: ``diag(ua^T K ub)``, ``K`` formed block by block."""
    dim = a.shape[1]
    total = torch.zeros(ua.shape[1], device=a.device, dtype=a.dtype)
    rows = _row_block(b.shape[0], a.device)
    for start in range(0, a.shape[0], rows):
        k = _poly_kernel(a[start:start + rows] @ b.T, dim)  # (rows, N_b)
        total += (ua[start:start + rows] * (k @ ub)).sum(0)
    return total


def _kid_by_indicators(
    a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor
) -> torch.Tensor:
    """As :func:`_kid_by_subsets`, from the kernels of the whole sets: every subset's kernel
    sum is ``u^T K v`` with 0/1 indicator vectors (subsets have no repeated rows). Cheaper
    when the subsets are many and the sets not much larger than a subset."""
    num, m = ia.shape
    dim = a.shape[1]
    off = m * (m - 1)
    cols = torch.arange(num, device=a.device).expand(m, num).T
    ua = torch.zeros(a.shape[0], num, device=a.device, dtype=a.dtype)
    ub = torch.zeros(b.shape[0], num, device=a.device, dtype=a.dtype)
    ua[ia, cols] = 1.0
    ub[ib, cols] = 1.0
    diag_a = ua.T @ _poly_kernel((a * a).sum(1), dim)  # (S,) sum of k(x, x) over each subset
    diag_b = ub.T @ _poly_kernel((b * b).sum(1), dim)
    kxx = (_subset_kernel_sums(a, a, ua, ua) - diag_a) / off
    kyy = (_subset_kernel_sums(b, b, ub, ub) - diag_b) / off
    kxy = _subset_kernel_sums(a, b, ua, ub) / (m * m)
    return kxx + kyy - 2 * kxy


def kid(
    feat_a: torch.Tensor,
    feat_b: torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> float:
    """Kernel distance (KID; Bińkowski et al. 2018, "Demystifying MMD GANs", arXiv 1801.01401).

    The unbiased MMD^2 with the polynomial kernel ``k(x, y) = (x·y / D + 1)^3``, averaged over
    ``subsets`` random subsets of ``subset_size`` rows drawn without replacement from each set
    (the reference implementation's protocol). ``subset_size`` is capped at the smaller set's
    size; the estimate stays unbiased, only its variance grows. Can be slightly negative.

    Args:
        feat_a: ``(N, D)`` features, ``N >= 2``.
        feat_b: ``(M, D)`` features, ``M >= 2``.
        subsets: number of subsets (``>= 1``).
        subset_size: rows per subset (``>= 2``).
        generator: source of the subsets; ``torch.Generator().manual_seed(0)`` when ``None``.

    Raises:
        ValueError: not 2-D, different ``D``, fewer than 2 rows, non-finite values, or
            ``subsets < 1`` / ``subset_size < 2``.
    """
    if int(subsets) != subsets or subsets < 1:
        raise ValueError(f"subsets must be an int >= 1, got {subsets}")
    if int(subset_size) != subset_size or subset_size < 2:
        raise ValueError(f"subset_size must be an int >= 2, got {subset_size}")
    a, b = _pair(feat_a, feat_b, min_n=2, ndim=2, names=("feat_a", "feat_b"))
    gen = _generator(generator)
    (na, dim), nb = a.shape, b.shape[0]
    m = min(subset_size, na, nb)
    ia, ib = [], []
    for _ in range(subsets):  # drawn on the CPU, in this order: the same subsets on every device
        ia.append(torch.randperm(na, generator=gen)[:m])
        ib.append(torch.randperm(nb, generator=gen)[:m])
    ia, ib = torch.stack(ia).to(a.device), torch.stack(ib).to(a.device)
    # Multiply-adds of the two (equal) computations: whole-set kernels and indicator products,
    # or one (m, m) kernel per subset and pair of sets.
    whole_sets = (na * na + nb * nb + na * nb) * (dim + subsets)
    per_subset = 3 * subsets * m * m * dim
    compute = _kid_by_indicators if whole_sets < per_subset else _kid_by_subsets
    return float(compute(a, b, ia, ib).mean())


def _knn_radii(z: torch.Tensor, k: int) -> torch.Tensor:
    """``(N,)`` distance of every row of ``z`` to its k-th nearest other row."""
    radii = []
    rows = _row_block(z.shape[0], z.device)
    for start in range(0, z.shape[0], rows):
        blk = z[start:start + rows]
        d = torch.cdist(blk, z, compute_mode="donot_use_mm_for_euclid_dist")
        idx = torch.arange(blk.shape[0], device=z.device)
        d[idx, idx + start] = float("inf")  # exclude the point itself
        radii.append(d.kthvalue(k, dim=1).values)
    return torch.cat(radii)


def _mutual_coverage(
    real: torch.Tensor, fake: torch.Tensor, real_radii: torch.Tensor, fake_radii: torch.Tensor
) -> tuple[int, int]:
    """``(fake rows inside some ball B(real_i, real_radii_i), real rows inside some ball
    B(fake_j, fake_radii_j))``, both from one pass over the real-fake distances.

    Counted as integers (one read-back for both), so precision and recall are exactly
    ``count / N`` on every device (a float mean on CUDA reduces in another order and can
    differ in the last bit).
    """
    fake_covered = torch.zeros(fake.shape[0], dtype=torch.bool, device=fake.device)
    real_covered = torch.zeros((), dtype=torch.long, device=real.device)
    rows = _row_block(fake.shape[0], real.device)
    for start in range(0, real.shape[0], rows):
        d = torch.cdist(real[start:start + rows], fake, compute_mode="donot_use_mm_for_euclid_dist")
        fake_covered |= (d <= real_radii[start:start + rows, None]).any(0)
        real_covered += (d <= fake_radii).any(1).sum()
    precision, recall = torch.stack([fake_covered.sum(), real_covered]).tolist()
    return precision, recall


def precision_recall(
    real_feat: torch.Tensor, fake_feat: torch.Tensor, *, k: int = 3
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, arXiv 1904.06991).

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's ``k``-th nearest neighbour in the same set. Precision = fraction of fake samples
    inside the real manifold; recall = fraction of real samples inside the fake manifold (balls
    are closed, so duplicated points count as inside).

    Args:
        real_feat: ``(N, D)`` reference features, ``N >= k + 1``.
        fake_feat: ``(M, D)`` sample features, ``M >= k + 1``.
        k: neighbourhood size (``>= 1``; the paper uses 3).

    Returns:
        ``{"precision": float, "recall": float}``, both in ``[0, 1]``.

    Raises:
        ValueError: not 2-D, different ``D``, fewer than ``k + 1`` rows, non-finite values, or
            ``k < 1``.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k}")
    real, fake = _pair(real_feat, fake_feat, min_n=k + 1, ndim=2, names=("real_feat", "fake_feat"))
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)
    inside_real, inside_fake = _mutual_coverage(real, fake, real_radii, fake_radii)
    return {"precision": inside_real / fake.shape[0], "recall": inside_fake / real.shape[0]}


def class_histogram_tv(pred_labels: torch.Tensor, target_probs: torch.Tensor) -> float:
    """Total variation between the histogram of predicted classes and a target distribution.

    Args:
        pred_labels: ``(N,)`` integer class predictions in ``[0, C)``, ``N >= 1``.
        target_probs: ``(C,)`` non-negative class weights (normalised here).

    Raises:
        ValueError: wrong shapes, no predictions, labels outside ``[0, C)``, invalid weights.
    """
    pred = _check_tensor("pred_labels", pred_labels)
    target = _check_tensor("target_probs", target_probs)
    if pred.ndim != 1 or pred.numel() < 1:
        raise ValueError(f"pred_labels must have shape (N,) with N >= 1, got {tuple(pred.shape)}")
    if pred.is_floating_point() or pred.is_complex() or pred.dtype == torch.bool:
        raise TypeError(f"pred_labels must be an integer tensor, got dtype {pred.dtype}")
    if target.ndim != 1:
        raise ValueError(f"target_probs must have shape (C,), got {tuple(target.shape)}")
    c = target.shape[0]
    if bool(((pred < 0) | (pred >= c)).any()):
        bad = int(pred[(pred < 0) | (pred >= c)][0])
        raise ValueError(f"pred_labels contains {bad}; allowed classes are 0..{c - 1}")
    hist = torch.bincount(pred.long(), minlength=c).to(_acc_dtype(pred.device))
    return _tv(hist / hist.sum(), _probs("target_probs", target, c, hist))


def __getattr__(name: str):
    # digits_metrics and reference_features live in diffgym.benchmarks.digits_metrics (which
    # imports this module); resolved lazily so that either module can be imported first.
    if name in ("digits_metrics", "reference_features"):
        from diffgym.benchmarks import digits_metrics as module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
