"""A task's fixed reference set (``Task.reference``): ``digits`` is scored against its whole data
set, the same on every seed, with the reference's classifier features computed once."""

from __future__ import annotations

import pytest
import torch

from diffgym.benchmarks import digits_metrics as metrics
from diffgym.benchmarks.digits_classifier import load_digits_classifier
from diffgym.benchmarks.evaluate import noise_floor, task_fingerprint, task_metrics
from diffgym.envs import make_task


@pytest.fixture(scope="module")
def digits():
    return make_task("digits")


@pytest.fixture(scope="module")
def real_samples(digits):
    return digits.sample_data(256, torch.Generator().manual_seed(11))


def test_digits_reference_is_the_whole_data_set(digits):
    x, labels = digits.reference
    assert x.shape == (1797, 1, 8, 8)
    assert labels.shape == (1797,)
    assert torch.bincount(labels, minlength=10).tolist() == [
        178, 182, 177, 183, 181, 182, 181, 179, 174, 180
    ]


def test_fixed_reference_does_not_depend_on_the_seed(digits, real_samples):
    x, labels = real_samples
    a = task_metrics(digits, x, labels, seed=1)
    b = task_metrics(digits, x, labels, seed=2)
    # The reference-based distances are identical; only KID's random subsets follow the seed.
    for name in ("fd_digits", "precision", "recall"):
        assert a[name] == b[name], name
    # Without a fixed reference each seed draws its own reference set, so they move with it.
    drawn = digits.replace(reference=None)
    c = task_metrics(drawn, x, labels, seed=1)
    d = task_metrics(drawn, x, labels, seed=2)
    for name in ("fd_digits", "recall"):
        assert c[name] != d[name], name
    assert c["fd_digits"] != a["fd_digits"]
    # The fixed reference has its own size; asking for another is an error, not ignored.
    with pytest.raises(ValueError, match=r"fixed reference of 1797 samples; num_reference=100"):
        task_metrics(digits, x, labels, seed=1, num_reference=100)
    assert task_metrics(digits, x, labels, seed=1, num_reference=1797)["fd_digits"] == a[
        "fd_digits"]


def test_fixed_reference_scores_against_the_whole_set(digits, real_samples):
    x, labels = real_samples
    direct = metrics.digits_metrics(
        x, labels, digits.reference[0], target_probs=digits.label_probs,
        generator=torch.Generator().manual_seed(5),
    )
    assert task_metrics(digits, x, labels, seed=5)["fd_digits"] == direct["fd_digits"]


def test_reference_features_are_cached_and_equal_to_a_direct_embedding(digits):
    clf = load_digits_classifier()
    ref = digits.reference[0]
    metrics._REFERENCE_FEATURES.clear()
    first = metrics.reference_features(clf, ref)
    assert len(metrics._REFERENCE_FEATURES) == 1
    direct, _ = metrics._classify(clf, ref, 1024)
    torch.testing.assert_close(first, direct, rtol=0, atol=0)
    # Callers get a copy: changing it does not change the cache.
    first.mul_(0.0)
    # A freshly loaded classifier with the same weights hits the same entry.
    again = metrics.reference_features(load_digits_classifier(), ref.clone())
    assert len(metrics._REFERENCE_FEATURES) == 1
    torch.testing.assert_close(again, direct, rtol=0, atol=0)
    # Another reference set is another entry with other features.
    other = metrics.reference_features(clf, ref[:100])
    assert other.shape[0] == 100 and len(metrics._REFERENCE_FEATURES) == 2
    # Other classifier weights are another entry too (never the old features).
    changed = load_digits_classifier()
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    moved = metrics.reference_features(changed, ref)
    assert len(metrics._REFERENCE_FEATURES) == 3
    assert not torch.equal(moved, direct)


def test_reference_is_part_of_the_fingerprint(digits):
    fp = task_fingerprint(digits)
    unfixed = digits.replace(reference=None)
    assert task_fingerprint(unfixed)["content_sha256"] != fp["content_sha256"]
    x, labels = digits.reference
    half = digits.replace(reference=(x[:900], labels[:900]))
    assert task_fingerprint(half)["content_sha256"] != fp["content_sha256"]
    assert task_fingerprint(make_task("digits"))["content_sha256"] == fp["content_sha256"]


def test_noise_floor_uses_the_fixed_reference(digits):
    res = noise_floor(digits, 64, [1, 2], sample_seeds=[8, 9])
    x, labels = digits.sample_data(64, torch.Generator().manual_seed(8))
    assert res["per_seed"][0]["fd_digits"] == pytest.approx(
        task_metrics(digits, x, labels, seed=1)["fd_digits"], abs=0
    )


def _labels(m: int) -> torch.Tensor:
    return torch.zeros(m, dtype=torch.long)


@pytest.mark.parametrize(
    "reference, match",
    [
        ("not a tuple", "tuple"),
        ((torch.zeros(10, 1, 8, 8),), "tuple"),
        ((torch.zeros(10, 1, 8, 8), [0] * 10), r"tensors, got \(Tensor, list\)"),
        ((torch.zeros(10, 1, 4, 4), _labels(10)), r"shape \(M >= 2, 1, 8, 8\)"),
        ((torch.zeros(1, 1, 8, 8), _labels(1)), r"M >= 2"),
        ((torch.zeros(10, 1, 8, 8), _labels(9)), r"labels must have shape \(10,\)"),
        ((torch.full((10, 1, 8, 8), float("nan")), _labels(10)), "finite"),
    ],
)
def test_bad_reference_is_rejected(digits, reference, match):
    with pytest.raises(ValueError, match=match):
        digits.replace(reference=reference)


def test_digits_classifier_is_part_of_the_fingerprint(digits, tmp_path, monkeypatch):
    """A retrained classifier changes the keys of digits tasks (and of no other task)."""
    import os
    import shutil

    from diffgym.benchmarks import digits_classifier as dc

    fp = task_fingerprint(digits)["content_sha256"]
    gmm = task_fingerprint(make_task("gmm2d"))["content_sha256"]
    copy = tmp_path / dc.CLASSIFIER_FILE
    shutil.copyfile(dc.ASSETS_DIR / dc.CLASSIFIER_FILE, copy)
    monkeypatch.setattr(dc, "ASSETS_DIR", tmp_path)
    assert task_fingerprint(digits)["content_sha256"] == fp  # the same bytes, the same key
    payload = torch.load(copy, weights_only=True)
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first] = payload["state_dict"][first] + 0.01
    torch.save(payload, copy)
    st = copy.stat()  # a new file version even on a file system with coarse timestamps
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert task_fingerprint(digits)["content_sha256"] != fp
    assert task_fingerprint(make_task("gmm2d"))["content_sha256"] == gmm
    copy.unlink()
    with pytest.raises(FileNotFoundError, match="train-classifier"):
        task_fingerprint(digits)
