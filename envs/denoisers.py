"""Denoisers in the EDM convention (Karras et al. 2022, arXiv 2206.00364, §2 of the design).

Every denoiser is a callable ``D(x, sigma, class_labels=None) -> x0_hat`` with

* ``x``: ``(B, *data_shape)`` noisy samples, ``x = x0 + sigma * eps``;
* ``sigma``: ``(B,)`` noise levels (strictly positive);
* ``class_labels``: ``(B,)`` int64 labels in ``[0, num_classes)`` or ``None`` (unconditional);
* returns the posterior-mean estimate of ``x0``, shape ``(B, *data_shape)``.

and the attributes ``sigma_min``, ``sigma_max``, ``sigma_data``, ``data_shape``, ``num_classes``
(0 = unconditional) and ``label_dropout_supported`` (whether ``class_labels=None`` is meaningful on
a conditional model, i.e. classifier-free guidance is available).

Neural networks are wrapped by :class:`EDMPrecond` (``diffgym.envs.networks``); foreign models are
adapted in one module. Everything downstream only knows this convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "CountingDenoiser",
    "Denoiser",
    "FullCovGaussianMixture",
    "GaussianMixture",
    "GMMDenoiser",
    "UncondBranch",
    "c_in",
    "c_noise",
]


def c_in(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM input scaling ``1 / sqrt(sigma^2 + sigma_data^2)`` (elementwise, any shape)."""
    return 1.0 / torch.sqrt(sigma**2 + sigma_data**2)


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """EDM noise conditioning ``ln(sigma) / 4`` (elementwise, any shape)."""
    return torch.log(sigma) / 4.0


class Denoiser(nn.Module):
    """Base class of the denoiser convention; subclasses implement :meth:`forward`.

    Subclasses must set ``sigma_min``, ``sigma_max``, ``sigma_data``, ``data_shape``,
    ``num_classes`` and ``label_dropout_supported``.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    data_shape: tuple[int, ...] = ()
    num_classes: int = 0
    label_dropout_supported: bool = False

    def check_labels(self, class_labels: torch.Tensor | None, batch: int) -> None:
        """Raise ``ValueError`` for labels of the wrong shape or outside ``[0, num_classes)``."""
        if class_labels is None:
            return
        if self.num_classes == 0:
            raise ValueError("class_labels were given to an unconditional denoiser (num_classes=0)")
        if class_labels.shape != (batch,):
            raise ValueError(
                f"class_labels must have shape ({batch},), got {tuple(class_labels.shape)}"
            )
        bad = (class_labels < 0) | (class_labels >= self.num_classes)
        if bool(bad.any()):
            value = int(class_labels[bad][0])
            raise ValueError(
                f"class label {value} is out of range; allowed labels are 0..{self.num_classes - 1}"
            )

    def check_input(self, x: torch.Tensor, sigma: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``x`` is not ``(B, *data_shape)`` or ``sigma`` not ``(B,)``."""
        if tuple(x.shape[1:]) != tuple(self.data_shape):
            raise ValueError(
                f"x must have shape (batch, {', '.join(map(str, self.data_shape))}), "
                f"got {tuple(x.shape)}"
            )
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must have shape ({x.shape[0]},), got {tuple(sigma.shape)}")


class UncondBranch(nn.Module):
    """Guidance source for classifier-free guidance: the model's own unconditional branch.

    ``UncondBranch(D)(x, sigma, labels) == D(x, sigma, None)``.
    """

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__()
        if not getattr(denoiser, "label_dropout_supported", False):
            raise ValueError(
                "classifier-free guidance needs a denoiser trained with label dropout "
                "(label_dropout_supported=True)"
            )
        self.denoiser = denoiser

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.denoiser(x, sigma, None)


def _check_finite(name: str, values: torch.Tensor) -> None:
    """``ValueError`` naming ``name`` and its first NaN/inf entry (index and value)."""
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        where = index[0] if len(index) == 1 else list(index)
        raise ValueError(
            f"{name} must be finite, got {values[index].item()} at index {where} "
            f"({int(bad.sum())} non-finite entr{'y' if int(bad.sum()) == 1 else 'ies'})"
        )


def _weights_and_labels(
    k: int,
    weights: torch.Tensor | Sequence | None,
    component_labels: torch.Tensor | Sequence | None,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validated ``(K,)`` normalised weights (equal when ``None``) and ``(K,)`` int64 labels.

    Raises:
        ValueError: wrong shapes, negative or all-zero weights, negative labels.
    """
    if weights is None:
        weights = torch.full((k,), 1.0 / k, dtype=dtype)
    weights = torch.as_tensor(weights, dtype=dtype)
    if weights.shape != (k,):
        raise ValueError(f"weights must have shape ({k},), got {tuple(weights.shape)}")
    _check_finite("weights", weights)
    if bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {weights.tolist()}")
    if component_labels is not None:
        component_labels = torch.as_tensor(component_labels, dtype=torch.long)
        if component_labels.shape != (k,):
            raise ValueError(
                f"component_labels must have shape ({k},), got {tuple(component_labels.shape)}"
            )
        if bool((component_labels < 0).any()):
            raise ValueError("component_labels must be >= 0")
    return weights / weights.sum(), component_labels


def _draw_components(
    weights: torch.Tensor,
    component_labels: torch.Tensor | None,
    n: int,
    generator: torch.Generator | None,
    class_labels: torch.Tensor | None,
) -> torch.Tensor:
    """``(n,)`` component indices drawn by weight (within each row's class when given)."""
    if class_labels is None:
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    class_labels = torch.as_tensor(class_labels, dtype=torch.long).cpu()
    assert component_labels is not None
    own = component_labels[None, :] == class_labels[:, None]
    probs = weights[None, :] * own
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class _Mixture:
    """What both mixture classes share: ``means (K, ...)``, normalised ``weights (K,)``,
    ``component_labels (K,)`` or ``None`` and ``num_classes``."""

    means: torch.Tensor
    weights: torch.Tensor
    component_labels: torch.Tensor | None
    num_classes: int

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def label_probs(self) -> torch.Tensor:
        """``(num_classes,)`` total weight of each label's components."""
        if self.component_labels is None:
            raise ValueError("an unconditional mixture has no labels")
        out = torch.zeros(self.num_classes, dtype=self.weights.dtype)
        return out.index_add_(0, self.component_labels, self.weights)


class GaussianMixture(_Mixture):
    """An isotropic Gaussian mixture ``sum_k w_k N(mu_k, s_k^2 I)`` over ``data_shape``.

    Args:
        means: ``(K, *data_shape)`` component means.
        stds: ``(K,)`` component standard deviations (or a float for all).
        weights: ``(K,)`` non-negative weights (normalised here); equal weights when ``None``.
        component_labels: ``(K,)`` int labels, the class each component belongs to; ``None`` for an
            unconditional mixture.
        dtype: float dtype of the stored parameters.

    Raises:
        ValueError: NaN/inf in means, stds or weights (naming the parameter and the entry),
            non-positive stds, negative or all-zero weights, mismatched shapes.
    """

    def __init__(
        self,
        means: torch.Tensor | Sequence,
        stds: torch.Tensor | Sequence | float,
        weights: torch.Tensor | Sequence | None = None,
        component_labels: torch.Tensor | Sequence | None = None,
        *,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        means = torch.as_tensor(means, dtype=dtype)
        if means.ndim < 2:
            raise ValueError(f"means must have shape (K, *data_shape), got {tuple(means.shape)}")
        _check_finite("means", means)
        k = means.shape[0]
        stds = torch.as_tensor(stds, dtype=dtype)
        if stds.ndim == 0:
            stds = stds.expand(k).clone()
        if stds.shape != (k,):
            raise ValueError(f"stds must be a float or have shape ({k},), got {tuple(stds.shape)}")
        _check_finite("stds", stds)
        if not bool((stds > 0).all()):
            raise ValueError(f"component stds must be > 0, got {stds.tolist()}")
        weights, component_labels = _weights_and_labels(k, weights, component_labels, dtype)
        self.means = means
        self.stds = stds
        self.weights = weights
        self.component_labels = component_labels
        self.data_shape = tuple(means.shape[1:])
        self.dim = int(math.prod(self.data_shape))
        self.num_classes = 0 if component_labels is None else int(component_labels.max()) + 1
        self._cache: dict = {}

    def _params(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(means (K, d), stds (K,), weights (K,))`` on ``like``'s device and dtype (cached)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = (
                self.means.reshape(self.num_components, -1).to(like.device, like.dtype),
                self.stds.to(like.device, like.dtype),
                self.weights.to(like.device, like.dtype),
            )
        return self._cache[key]

    def _log_resp_terms(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-component log joint ``log w_k + log N(x; mu_k, (s_k^2+sigma^2) I)``: ``(B, K)``."""
        mu, s, w = self._params(x)
        xf = x.reshape(x.shape[0], -1)  # (B, d)
        var = s[None, :] ** 2 + sigma[:, None] ** 2  # (B, K)
        # (B, K) squared distances, by direct differences (exact in float32 too)
        sq = ((xf[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
        logw = torch.log(w).expand_as(var).clone()
        if class_labels is not None:
            assert self.component_labels is not None
            own = self.component_labels.to(x.device)[None, :] == class_labels[:, None]
            logw = logw.masked_fill(~own, float("-inf"))
        log_joint = logw - 0.5 * sq / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return log_joint, xf, mu, var

    def component_log_joint(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float = 0.0,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, K)`` ``log w_k + log N(x; mu_k, (s_k^2 + sigma^2) I)``; with ``class_labels``,
        components of other labels get ``-inf`` (their weights are not renormalised)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        return self._log_resp_terms(x, sigma, class_labels)[0]

    def log_prob(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float = 0.0,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact ``(B,)`` log density of ``x`` under the mixture convolved with ``N(0, sigma^2 I)``.

        With ``class_labels``, the density of the label's own (renormalised) sub-mixture.
        """
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        log_joint, *_ = self._log_resp_terms(x, sigma, class_labels)
        out = torch.logsumexp(log_joint, dim=-1)
        if class_labels is not None:
            lp = torch.log(self.label_probs().to(x.device, x.dtype))[class_labels]
            out = out - lp
        return out

    def posterior_mean(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``E[x0 | x0 + sigma eps = x]`` (Tweedie), responsibilities computed in log space."""
        log_joint, xf, mu, var = self._log_resp_terms(x, sigma, class_labels)
        resp = torch.softmax(log_joint, dim=-1)  # (B, K)
        s2 = (self._params(x)[1] ** 2)[None, :]  # (B, K)
        shrink = s2 / var  # s_k^2 / (s_k^2 + sigma^2)
        # sum_k r_k (mu_k + shrink_k (x - mu_k)) = (r(1-shrink)) @ mu + (r shrink).sum * x
        a = resp * (1.0 - shrink)
        out = a @ mu + (resp * shrink).sum(-1, keepdim=True) * xf
        return out.reshape(x.shape)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        class_labels: torch.Tensor | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` samples; returns ``(x (n, *data_shape), labels (n,))``.

        Labels are the component's class (``-1`` for an unconditional mixture). With
        ``class_labels`` given, each sample is drawn from its label's sub-mixture.
        Randomness comes only from ``generator`` (on the CPU), so results are reproducible.
        """
        comp = _draw_components(self.weights, self.component_labels, n, generator, class_labels)
        eps = torch.randn((n, *self.data_shape), generator=generator, dtype=self.means.dtype)
        x = self.means[comp] + self.stds[comp].reshape(-1, *([1] * len(self.data_shape))) * eps
        if self.component_labels is None:
            labels = torch.full((n,), -1, dtype=torch.long)
        else:
            labels = self.component_labels[comp]
        return x.to(device=device, dtype=dtype), labels.to(device)


class FullCovGaussianMixture(_Mixture):
    """A Gaussian mixture with full covariances ``sum_k w_k N(mu_k, Sigma_k)`` over ``data_shape``.

    The sibling of :class:`GaussianMixture` for structured (non-isotropic) components, with the
    same interface (``log_prob``, ``posterior_mean``, ``sample``, ``component_log_joint``,
    ``label_probs``). Each covariance is eigen-decomposed once, ``Sigma_k = V_k diag(lam_k)
    V_k^T``, so every density and posterior mean is exact: noise ``sigma`` only shifts the
    eigenvalues, ``Sigma_k + sigma^2 I = V_k diag(lam_k + sigma^2) V_k^T``, and Tweedie's formula
    per component is ``mu_k + V_k diag(lam_k / (lam_k + sigma^2)) V_k^T (x - mu_k)``.

    It is deliberately not a subclass of :class:`GaussianMixture`: code written for isotropic
    components (reading ``stds``) rejects it instead of computing a wrong answer.

    Args:
        means: ``(K, *data_shape)`` component means.
        covs: ``(K, d, d)`` symmetric positive-definite covariances, ``d = prod(data_shape)``.
        weights: ``(K,)`` non-negative weights (normalised here); equal weights when ``None``.
        component_labels: ``(K,)`` int labels, the class of each component; ``None`` for an
            unconditional mixture.
        dtype: float dtype of the stored parameters (the eigen-decomposition runs in float64).

    Raises:
        ValueError: mismatched shapes, non-symmetric or not positive-definite covariances,
            negative or all-zero weights.
    """

    def __init__(
        self,
        means: torch.Tensor | Sequence,
        covs: torch.Tensor | Sequence,
        weights: torch.Tensor | Sequence | None = None,
        component_labels: torch.Tensor | Sequence | None = None,
        *,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        means = torch.as_tensor(means, dtype=dtype)
        if means.ndim < 2:
            raise ValueError(f"means must have shape (K, *data_shape), got {tuple(means.shape)}")
        k = means.shape[0]
        d = int(math.prod(means.shape[1:]))
        covs = torch.as_tensor(covs, dtype=dtype)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape ({k}, {d}, {d}), got {tuple(covs.shape)}")
        c64 = covs.to(torch.float64)
        if not torch.allclose(c64, c64.transpose(1, 2), rtol=1e-10, atol=1e-12):
            raise ValueError("covs must be symmetric")
        eigvals, eigvecs = torch.linalg.eigh(c64)
        if not bool((eigvals > 0).all()):
            raise ValueError(
                f"covs must be positive-definite; smallest eigenvalue {float(eigvals.min()):.3g}"
            )
        weights, component_labels = _weights_and_labels(k, weights, component_labels, dtype)
        self.means = means
        self.covs = covs
        self.eigvals = eigvals.to(dtype)  # (K, d)
        self.eigvecs = eigvecs.to(dtype)  # (K, d, d), columns are eigenvectors
        self.weights = weights
        self.component_labels = component_labels
        self.data_shape = tuple(means.shape[1:])
        self.dim = d
        self.num_classes = 0 if component_labels is None else int(component_labels.max()) + 1
        self._cache: dict = {}

    def _params(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(means (K, d), eigvals (K, d), eigvecs (K, d, d), weights (K,))`` on ``like``'s
        device and dtype (cached)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = tuple(
                t.to(like.device, like.dtype)
                for t in (
                    self.means.reshape(self.num_components, -1),
                    self.eigvals,
                    self.eigvecs,
                    self.weights,
                )
            )
        return self._cache[key]

    def _terms(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_joint (B, K), z (B, K, d), var (B, K, d))``: per-component log joint, the
        offsets ``V_k^T (x - mu_k)`` in each component's eigenbasis and ``lam_k + sigma^2``."""
        mu, lam, vecs, w = self._params(x)
        xf = x.reshape(x.shape[0], -1)  # (B, d)
        z = torch.einsum("bkd,kde->bke", xf[:, None, :] - mu[None], vecs)  # (B, K, d)
        var = lam[None] + sigma.to(x.dtype)[:, None, None] ** 2  # (B, K, d)
        logw = torch.log(w).expand(x.shape[0], -1).clone()
        if class_labels is not None:
            assert self.component_labels is not None
            own = self.component_labels.to(x.device)[None, :] == class_labels[:, None]
            logw = logw.masked_fill(~own, float("-inf"))
        log_norm = -0.5 * ((z**2 / var).sum(-1) + torch.log(2 * math.pi * var).sum(-1))
        return logw + log_norm, z, var

    def component_log_joint(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float = 0.0,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, K)`` ``log w_k + log N(x; mu_k, Sigma_k + sigma^2 I)``; with ``class_labels``,
        components of other labels get ``-inf`` (their weights are not renormalised)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        return self._terms(x, sigma, class_labels)[0]

    def log_prob(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float = 0.0,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact ``(B,)`` log density of ``x (B, *data_shape)`` under the mixture convolved with
        ``N(0, sigma^2 I)``; with ``class_labels``, of the label's own (renormalised)
        sub-mixture."""
        out = torch.logsumexp(self.component_log_joint(x, sigma, class_labels), dim=-1)
        if class_labels is not None:
            out = out - torch.log(self.label_probs().to(x.device, x.dtype))[class_labels]
        return out

    def posterior_mean(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``E[x0 | x0 + sigma eps = x]`` (Tweedie): ``(B, *data_shape), (B,) -> (B, *data_shape)``.

        ``sum_k r_k (mu_k + V_k diag(lam_k / (lam_k + sigma^2)) V_k^T (x - mu_k))`` with the
        responsibilities ``r_k`` computed in log space.
        """
        mu, lam, vecs, _ = self._params(x)
        log_joint, z, var = self._terms(x, sigma, class_labels)
        resp = torch.softmax(log_joint, dim=-1)  # (B, K)
        u = resp[:, :, None] * (lam[None] / var) * z  # (B, K, d): weighted shrunk offsets
        out = resp @ mu + torch.einsum("bke,kde->bd", u, vecs)
        return out.reshape(x.shape)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        class_labels: torch.Tensor | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` samples; returns ``(x (n, *data_shape), labels (n,))``.

        ``x = mu_k + V_k diag(sqrt(lam_k)) eps``. Labels are the component's class (``-1`` for an
        unconditional mixture); with ``class_labels``, each sample comes from its label's
        sub-mixture. Randomness comes only from ``generator`` (on the CPU).
        """
        comp = _draw_components(self.weights, self.component_labels, n, generator, class_labels)
        eps = torch.randn((n, self.dim), generator=generator, dtype=self.means.dtype)
        scaled = (self.eigvals[comp].sqrt() * eps)[:, :, None]  # (n, d, 1)
        xf = self.means.reshape(self.num_components, -1)[comp] + (
            self.eigvecs[comp] @ scaled
        ).squeeze(-1)
        if self.component_labels is None:
            labels = torch.full((n,), -1, dtype=torch.long)
        else:
            labels = self.component_labels[comp]
        x = xf.reshape(n, *self.data_shape)
        return x.to(device=device, dtype=dtype), labels.to(device)


class GMMDenoiser(Denoiser):
    """Exact denoiser of a Gaussian mixture: the posterior mean of ``x0`` (design §2).

    Args:
        mixture: the data distribution (isotropic or full-covariance components).
        sigma_min, sigma_max: the noise range the denoiser advertises.
        conditional: when the mixture has component labels, condition on them (labels restrict
            the posterior to the label's components); ``None`` labels give the unconditional
            posterior, so classifier-free guidance is available.
    """

    def __init__(
        self,
        mixture: GaussianMixture | FullCovGaussianMixture,
        *,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
    ) -> None:
        super().__init__()
        self.mixture = mixture
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.data_shape = mixture.data_shape
        self.num_classes = mixture.num_classes
        self.label_dropout_supported = mixture.num_classes > 0
        # sigma_data: the data's per-coordinate standard deviation (used by c_in featurisation).
        mu = mixture.means.reshape(mixture.num_components, -1)
        w = mixture.weights[:, None]
        mean = (w * mu).sum(0)
        if isinstance(mixture, FullCovGaussianMixture):
            comp_var = torch.diagonal(mixture.covs, dim1=1, dim2=2)  # (K, d)
        else:
            comp_var = mixture.stds[:, None] ** 2
        second = (w * (mu**2 + comp_var)).sum(0)
        self.sigma_data = float(torch.sqrt((second - mean**2).mean()))

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, *data_shape), (B,), (B,)|None -> (B, *data_shape)``."""
        self.check_input(x, sigma)
        self.check_labels(class_labels, x.shape[0])
        return self.mixture.posterior_mean(x, sigma, class_labels)


class CountingDenoiser(nn.Module):
    """Counts the rows (``rows``) and calls (``calls``) passed to ``forward``; otherwise the
    wrapped denoiser (attributes such as ``sigma_data`` pass through). For audits that check a
    sampler's counted NFE against the work its denoiser actually did."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0
        self.calls = 0

    def forward(self, x, sigma, class_labels=None):
        self.rows += x.shape[0]
        self.calls += 1
        return self.inner(x, sigma, class_labels)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)
