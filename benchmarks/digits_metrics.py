"""Digits metrics in the feature space of the project's classifier
(:mod:`diffgym.benchmarks.digits_classifier`): :func:`digits_metrics` bundles FD-digits, KID,
k-NN precision/recall, the class-histogram TV and label accuracy; :func:`reference_features`
embeds a reference set once per process (a fixed reference such as the whole digits data set is
not re-embedded on every evaluation)."""

from __future__ import annotations

import torch

from diffgym.benchmarks.digits_classifier import DigitsClassifier, load_digits_classifier
from diffgym.benchmarks.metrics import (
    FeatureCache,
    _check_tensor,
    _samples,
    class_histogram_tv,
    content_hash,
    frechet_distance,
    kid,
    precision_recall,
)
from diffgym.envs.data import DIGITS_SHAPE

__all__ = ["digits_metrics", "reference_features"]


@torch.no_grad()
def _classify(
    classifier: DigitsClassifier, x: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, D), predicted labels (N,))`` of images clipped to ``[-1, 1]``."""
    param = next(classifier.parameters())
    feats, preds = [], []
    for blk in x.split(batch_size):
        f = classifier.features(blk.to(param).clamp(-1.0, 1.0))
        feats.append(f)
        preds.append(classifier.head(f).argmax(-1))
    return torch.cat(feats), torch.cat(preds)


_REFERENCE_FEATURES = FeatureCache(8)
"""Classifier features of reference sets, by (content hash of the images, content hash of the
classifier's weights, device): a fixed reference (the whole ``digits`` data set) is embedded once
per process, not once per evaluation."""


def reference_features(
    classifier: DigitsClassifier, reference_x: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """``(M, D)`` classifier features of ``reference_x``, computed once per (reference content,
    classifier weights, device) and cached; returns a copy (callers may modify it). The same
    values as embedding ``reference_x`` directly."""
    param = next(classifier.parameters())
    key = (
        content_hash(reference_x),
        content_hash(*classifier.state_dict().values()),
        str(param.device),
    )
    return _REFERENCE_FEATURES.get(key, lambda: _classify(classifier, reference_x, batch_size)[0])


def digits_metrics(
    x: torch.Tensor,
    labels: torch.Tensor | None,
    reference_x: torch.Tensor,
    *,
    classifier: DigitsClassifier | None = None,
    target_probs: torch.Tensor | None = None,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
) -> dict[str, float]:
    """All digits metrics of samples ``x`` against reference digits, in classifier feature space.

    Images are clipped to ``[-1, 1]`` first (as when generated images are saved as pixels) and
    embedded with the project classifier's penultimate layer.

    Args:
        x: ``(N, 1, 8, 8)`` generated digits in ``[-1, 1]``, ``N >= k + 1``.
        labels: ``(N,)`` the class each sample was conditioned on, or ``None`` (unconditional).
        reference_x: ``(M, 1, 8, 8)`` real digits, ``M >= k + 1``.
        classifier: feature extractor; :func:`load_digits_classifier` on ``x``'s device if ``None``.
        target_probs: ``(10,)`` target class distribution for ``class_tv``; when ``None``, the
            histogram of ``labels`` (the mix the sampler was asked for), or uniform without labels.
        k: neighbourhood size of precision/recall.
        kid_subsets, kid_subset_size: KID protocol (see :func:`kid`).
        generator: source of the KID subsets (seed 0 when ``None``).
        batch_size: images per classifier forward pass.

    Returns:
        ``{"fd_digits", "kid", "precision", "recall", "class_tv", "label_accuracy"}``;
        ``label_accuracy`` is the fraction of samples classified as their conditioning label
        (NaN when ``labels`` is ``None``).

    Raises:
        ValueError: wrong shapes, too few samples, non-finite values, labels out of range.
        TypeError: non-integer ``labels``.
    """
    _samples("x", x, min_n=k + 1, data_shape=DIGITS_SHAPE)
    _samples("reference_x", reference_x, min_n=k + 1, data_shape=DIGITS_SHAPE)
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size}")
    if classifier is None:
        classifier = load_digits_classifier(x.device)
    num_classes = classifier.num_classes
    if labels is not None:
        labels = _check_tensor("labels", labels)
        if labels.shape != (x.shape[0],):
            raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
        bad = (labels < 0) | (labels >= num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"labels contains {int(labels[bad][0])}; allowed labels are 0..{num_classes - 1}"
            )
    feat, pred = _classify(classifier, x, batch_size)
    ref_feat = reference_features(classifier, reference_x, batch_size)
    if target_probs is None:
        target_probs = (
            torch.bincount(labels.long().cpu(), minlength=num_classes)
            if labels is not None
            else torch.ones(num_classes)
        )
    pr = precision_recall(ref_feat, feat, k=k)
    label_accuracy = (
        float((pred.cpu() == labels.long().cpu()).double().mean())
        if labels is not None
        else float("nan")
    )
    return {
        "fd_digits": frechet_distance(feat, ref_feat),
        "kid": kid(
            feat, ref_feat, subsets=kid_subsets, subset_size=kid_subset_size, generator=generator
        ),
        "precision": pr["precision"],
        "recall": pr["recall"],
        "class_tv": class_histogram_tv(pred, torch.as_tensor(target_probs).to(pred.device)),
        "label_accuracy": label_accuracy,
    }
