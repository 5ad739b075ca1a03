"""Exact metrics of labelled (class-conditional) mixtures such as ``cmix`` (design §6): the
Bayes-optimal classifier and its accuracy on samples (conditioning fidelity), the class-conditional
log density, per-class mode masses, class-conditional sliced W2, and all of them together
(:func:`conditional_mixture_metrics`)."""

from __future__ import annotations

import torch

from diffgym.benchmarks.metrics import (
    MMD_MAX_SAMPLES,
    ROW_BLOCK,
    _check_tensor,
    _generator,
    _pair,
    _samples,
    _tv,
    _w2_squared_1d,
    mmd,
    precision_recall,
    sliced_wasserstein,
)
from diffgym.envs.denoisers import FullCovGaussianMixture, GaussianMixture

__all__ = [
    "bayes_accuracy",
    "bayes_classifier",
    "class_sliced_wasserstein",
    "conditional_log_density",
    "conditional_mixture_metrics",
    "conditional_mode_tv",
]

# Class-conditional mixtures (``cmix``): isotropic or full-covariance components, each with a
# class label; every quantity is exact under the mixture.


def _labelled(
    x: object, labels: object, mixture: GaussianMixture | FullCovGaussianMixture
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``x (N, *data_shape)`` and ``labels (N,)`` for a labelled mixture; returns
    ``(x (N, d) in the accumulation dtype, labels (N,) int64 on x's device)``."""
    if not isinstance(mixture, (GaussianMixture, FullCovGaussianMixture)):
        raise TypeError(
            f"mixture must be a GaussianMixture or FullCovGaussianMixture, got "
            f"{type(mixture).__name__}"
        )
    if mixture.num_classes == 0:
        raise ValueError("the mixture has no component labels (num_classes=0)")
    xf = _samples("x", x, data_shape=mixture.data_shape)
    lab = _check_tensor("labels", labels)
    if lab.shape != (xf.shape[0],):
        raise ValueError(f"labels must have shape ({xf.shape[0]},), got {tuple(lab.shape)}")
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got dtype {lab.dtype}")
    bad = (lab < 0) | (lab >= mixture.num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"labels contains {int(lab[bad][0])}; allowed labels are 0..{mixture.num_classes - 1}"
        )
    return xf, lab.long().to(xf.device)


def _log_joint_blocks(
    xf: torch.Tensor, mixture: GaussianMixture | FullCovGaussianMixture
) -> torch.Tensor:
    """``(N, K)`` ``log w_k + log N_k(x)`` at σ = 0, computed in blocks of ``ROW_BLOCK`` rows."""
    shape = mixture.data_shape
    return torch.cat(
        [mixture.component_log_joint(blk.reshape(-1, *shape)) for blk in xf.split(ROW_BLOCK)]
    )


def _class_log_joint(
    log_joint: torch.Tensor, mixture: GaussianMixture | FullCovGaussianMixture
) -> torch.Tensor:
    """``(N, C)`` ``log p(x, c) = logsumexp_{k in c} (log w_k + log N_k(x))``."""
    comp = mixture.component_labels.to(log_joint.device)
    c = mixture.num_classes
    own = comp[None, :] == torch.arange(c, device=log_joint.device)[:, None]  # (C, K)
    masked = log_joint[:, None, :].masked_fill(~own[None], float("-inf"))  # (N, C, K)
    return torch.logsumexp(masked, dim=-1)


def bayes_classifier(
    x: torch.Tensor, mixture: GaussianMixture | FullCovGaussianMixture
) -> torch.Tensor:
    """The Bayes-optimal label of each sample, ``argmax_c p(c | x) = argmax_c sum_{k in c}
    w_k N(x; mu_k, Sigma_k)``: ``(N, *data_shape) -> (N,)`` int64 on ``x``'s device.

    Raises:
        TypeError: ``mixture`` is not a mixture.
        ValueError: an unlabelled mixture, wrong shape, no samples, non-finite values.
    """
    if not isinstance(mixture, (GaussianMixture, FullCovGaussianMixture)):
        raise TypeError(f"mixture must be a mixture, got {type(mixture).__name__}")
    if mixture.num_classes == 0:
        raise ValueError("the mixture has no component labels (num_classes=0)")
    xf = _samples("x", x, data_shape=mixture.data_shape)
    return _class_log_joint(_log_joint_blocks(xf, mixture), mixture).argmax(-1)


def bayes_accuracy(
    x: torch.Tensor, labels: torch.Tensor, mixture: GaussianMixture | FullCovGaussianMixture
) -> float:
    """Conditioning fidelity: the fraction of samples whose Bayes-optimal label
    (:func:`bayes_classifier`) is the label they were conditioned on.

    Real data of the mixture scores the Bayes accuracy of the classes (below 1 where classes
    overlap); a sampler that ignores its labels scores about ``sum_c p(c)^2``.

    Raises:
        TypeError: not a mixture; non-integer labels.
        ValueError: an unlabelled mixture, wrong shapes, labels out of range.
    """
    xf, lab = _labelled(x, labels, mixture)
    pred = _class_log_joint(_log_joint_blocks(xf, mixture), mixture).argmax(-1)
    return float((pred == lab).double().mean())


def conditional_log_density(
    x: torch.Tensor, labels: torch.Tensor, mixture: GaussianMixture | FullCovGaussianMixture
) -> float:
    """Mean exact class-conditional log density ``(1/N) sum_i log p(x_i | y_i)``.

    ``p(x | c)`` is the label's own sub-mixture, renormalised. Like :func:`mean_log_density` it
    rewards sharpening: read it with the distribution distances, never alone.

    Raises:
        TypeError: not a mixture; non-integer labels.
        ValueError: an unlabelled mixture, wrong shapes, labels out of range.
    """
    xf, lab = _labelled(x, labels, mixture)
    log_pc = _class_log_joint(_log_joint_blocks(xf, mixture), mixture)  # (N, C)
    prior = torch.log(mixture.label_probs().to(xf))
    return float((log_pc.gather(1, lab[:, None]).squeeze(1) - prior[lab]).mean())


def conditional_mode_tv(
    x: torch.Tensor, labels: torch.Tensor, mixture: GaussianMixture | FullCovGaussianMixture
) -> float:
    """Per-class mode masses: TV between the histogram of component assignments and the
    component masses the labels ask for.

    Each sample is assigned to ``argmax_k w_k N(x; mu_k, Sigma_k)`` over *all* components; the
    target of component ``k`` is ``(1/N) sum_i 1[c_k = y_i] w_k / p(y_i)`` (each sample's label
    spread over its class's components by their weights). 0 when every class is split across its
    modes exactly as the weights; samples landing in another class's modes count against it.

    Raises:
        TypeError: not a mixture; non-integer labels.
        ValueError: an unlabelled mixture, wrong shapes, labels out of range.
    """
    xf, lab = _labelled(x, labels, mixture)
    return _conditional_mode_tv(_log_joint_blocks(xf, mixture), lab, mixture)


def _conditional_mode_tv(
    log_joint: torch.Tensor,
    lab: torch.Tensor,
    mixture: GaussianMixture | FullCovGaussianMixture,
) -> float:
    """:func:`conditional_mode_tv` from the ``(N, K)`` component log joint."""
    assign = log_joint.argmax(-1)
    counts = torch.bincount(assign, minlength=mixture.num_components).to(log_joint.dtype)
    comp = mixture.component_labels.to(log_joint.device)
    within = mixture.weights.to(log_joint) / mixture.label_probs().to(log_joint)[comp]
    class_counts = torch.bincount(lab, minlength=mixture.num_classes).to(log_joint.dtype)
    target = class_counts[comp] * within  # (K,) component masses the labels ask for
    return _tv(counts / counts.sum(), target / target.sum())


def class_sliced_wasserstein(
    x: torch.Tensor,
    labels: torch.Tensor,
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    *,
    num_projections: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    """Class-conditional sliced W2: ``sum_c p_c SW2(x[y = c], reference[y_ref = c])``.

    ``p_c`` is the fraction of ``x`` with label ``c``; all classes share one set of directions.
    Classes with fewer than one sample on either side are skipped (their weight renormalised).

    Raises:
        ValueError: mismatched shapes or label shapes, no class present on both sides.
    """
    if int(num_projections) != num_projections or num_projections < 1:
        raise ValueError(f"num_projections must be an int >= 1, got {num_projections}")
    a, b = _pair(x, reference, min_n=1)
    lab = _check_tensor("labels", labels).to(a.device)
    ref_lab = _check_tensor("reference_labels", reference_labels).to(a.device)
    if lab.shape != (a.shape[0],) or ref_lab.shape != (b.shape[0],):
        raise ValueError(
            f"labels must have shape ({a.shape[0]},) and reference_labels ({b.shape[0]},), got "
            f"{tuple(lab.shape)} and {tuple(ref_lab.shape)}"
        )
    gen = _generator(generator)
    u = torch.randn((a.shape[1], num_projections), generator=gen, dtype=torch.float64)
    u = (u / u.norm(dim=0, keepdim=True)).to(a)
    total, weight = 0.0, 0
    for c in torch.unique(lab).tolist():
        xa, xb = a[lab == c], b[ref_lab == c]
        if xa.shape[0] == 0 or xb.shape[0] == 0:
            continue
        sw2 = float(_w2_squared_1d((xa @ u).T, (xb @ u).T).mean().sqrt())
        total += xa.shape[0] * sw2
        weight += xa.shape[0]
    if weight == 0:
        raise ValueError("no class has samples in both x and reference")
    return total / weight


def conditional_mixture_metrics(
    x: torch.Tensor,
    labels: torch.Tensor,
    mixture: GaussianMixture | FullCovGaussianMixture,
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    num_projections: int = 256,
    mmd_max_samples: int | None = MMD_MAX_SAMPLES,
    k: int = 3,
) -> dict[str, float]:
    """All metrics of class-conditional samples ``x`` (conditioned on ``labels``) of a labelled
    mixture, against a reference drawn from the mixture (ideally with the same labels).

    Returns:
        ``{"logp": conditional_log_density, "bayes_accuracy", "mode_tv": conditional_mode_tv,
        "class_sw2": class_sliced_wasserstein, "sw2": sliced_wasserstein(x, reference), "mmd",
        "precision", "recall"}``; ``precision``/``recall`` (k-NN, ``k``) and ``mmd`` in data
        space (``mmd`` on the first ``mmd_max_samples`` rows).

    Raises:
        TypeError, ValueError: see the individual metrics.
    """
    xf, lab = _labelled(x, labels, mixture)
    _samples("reference", reference, data_shape=mixture.data_shape)
    log_joint = _log_joint_blocks(xf, mixture)
    log_pc = _class_log_joint(log_joint, mixture)
    prior = torch.log(mixture.label_probs().to(xf))
    ref = reference.reshape(reference.shape[0], -1)
    # directions: the same generator feeds both sliced distances, in a fixed order
    class_sw2 = class_sliced_wasserstein(
        xf, lab, ref, reference_labels, num_projections=num_projections, generator=generator
    )
    pr = precision_recall(ref, xf, k=k)
    return {
        "logp": float((log_pc.gather(1, lab[:, None]).squeeze(1) - prior[lab]).mean()),
        "bayes_accuracy": float((log_pc.argmax(-1) == lab).double().mean()),
        "mode_tv": _conditional_mode_tv(log_joint, lab, mixture),
        "class_sw2": class_sw2,
        "sw2": sliced_wasserstein(xf, ref, num_projections=num_projections, generator=generator),
        "mmd": mmd(xf[:mmd_max_samples], ref[:mmd_max_samples]),
        "precision": pr["precision"],
        "recall": pr["recall"],
    }
