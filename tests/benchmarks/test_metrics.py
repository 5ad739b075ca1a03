"""Tests of diffgym.benchmarks.metrics and the shipped digits classifier."""

from __future__ import annotations

import math

import pytest
import torch

from diffgym.benchmarks.digits_classifier import (
    DigitsClassifierConfig,
    digits_split,
    load_digits_classifier,
    load_digits_classifier_metadata,
    train_digits_classifier,
)
from diffgym.benchmarks.digits_metrics import digits_metrics
from diffgym.benchmarks.metrics import (
    class_histogram_tv,
    frechet_distance,
    kid,
    mean_log_density,
    mixture_metrics,
    mmd,
    mode_assignment,
    mode_mass_tv,
    mode_recall,
    precision_recall,
    sliced_wasserstein,
)
from diffgym.envs.data import load_digits_data
from diffgym.envs.denoisers import GaussianMixture


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def square_mixture() -> GaussianMixture:
    """Four well-separated 2-d modes with unequal weights."""
    means = torch.tensor([[-4.0, -4.0], [-4.0, 4.0], [4.0, -4.0], [4.0, 4.0]])
    return GaussianMixture(means, 0.5, weights=[0.4, 0.3, 0.2, 0.1])


def _at_means(mixture: GaussianMixture, counts: list[int]) -> torch.Tensor:
    """Samples placed exactly on the means, ``counts[k]`` of them at mode ``k``."""
    return torch.cat([mixture.means[k].expand(c, -1) for k, c in enumerate(counts)]).float()


# ----------------------------------------------------------------------------- sliced Wasserstein


def test_sliced_wasserstein_identical_sets_is_zero(gen: torch.Generator) -> None:
    x = torch.randn(300, 5, generator=gen)
    assert sliced_wasserstein(x, x.clone()) == pytest.approx(0.0, abs=1e-12)
    # the same empirical measure at different sample sizes (every point twice) is also 0
    assert sliced_wasserstein(x, torch.cat([x, x])) == pytest.approx(0.0, abs=1e-12)


def test_sliced_wasserstein_shift_closed_form(gen: torch.Generator) -> None:
    d = 4
    x = torch.randn(400, d, generator=gen)
    m = torch.tensor([2.0, -1.0, 0.5, 1.0])
    sw = sliced_wasserstein(x, x + m, num_projections=4000, generator=gen)
    # y = x + m: on every line the sorted projections differ by m·u, so SW2^2 = mean (m·u)^2
    assert sw**2 == pytest.approx(float(m @ m) / d, rel=0.08)


def test_sliced_wasserstein_unequal_sizes_exact_1d() -> None:
    # quantile functions 0|1 on halves vs 0|0|3 on thirds: int (F^-1 - G^-1)^2 = 1/6 + 4/3
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [0.0], [3.0]])
    assert sliced_wasserstein(x, y, num_projections=3) ** 2 == pytest.approx(1.5, rel=1e-12)


def test_sliced_wasserstein_reproducible_with_default_generator(gen: torch.Generator) -> None:
    x, y = torch.randn(100, 3, generator=gen), torch.randn(80, 3, generator=gen)
    assert sliced_wasserstein(x, y) == sliced_wasserstein(x, y)


# ----------------------------------------------------------------------------- MMD


def test_mmd_same_distribution_near_zero_and_shift_large(gen: torch.Generator) -> None:
    x, y = torch.randn(400, 3, generator=gen), torch.randn(400, 3, generator=gen)
    same = mmd(x, y)
    shifted = mmd(x + 1.0, y)
    assert abs(same) < 0.01
    assert shifted > 20 * max(abs(same), 1e-3)
    assert abs(mmd(x, x.clone())) < 0.01  # unbiased: O(1/N) below zero at most


def test_mmd_explicit_bandwidth_matches_direct_formula(gen: torch.Generator) -> None:
    x, y = torch.randn(30, 2, generator=gen), torch.randn(20, 2, generator=gen) + 0.5
    h = 0.7

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(torch.cdist(a.double(), b.double()) ** 2) / (2 * h * h))

    kxx, kyy = k(x, x), k(y, y)
    expected = (
        (kxx.sum() - kxx.trace()) / (30 * 29)
        + (kyy.sum() - kyy.trace()) / (20 * 19)
        - 2 * k(x, y).mean()
    )
    assert mmd(x, y, bandwidths=h) == pytest.approx(float(expected), rel=1e-9)
    assert mmd(x, y, bandwidths=[h]) == pytest.approx(float(expected), rel=1e-9)
    assert mmd(x, y, bandwidths=torch.tensor([h, h], dtype=torch.float64)) == pytest.approx(
        float(expected), rel=1e-9
    )


# ----------------------------------------------------------------------------- mixture metrics


def test_mode_assignment_is_bayes_rule(square_mixture: GaussianMixture) -> None:
    x = torch.tensor([[-3.9, -4.2], [4.1, 3.8], [0.0, -4.0]])
    assign = mode_assignment(x, square_mixture)
    # the midpoint between modes 0 (w=0.4) and 2 (w=0.2) goes to the heavier mode
    assert assign.tolist() == [0, 3, 0]


def test_mode_mass_tv_exact_weights_and_collapse(square_mixture: GaussianMixture) -> None:
    exact = _at_means(square_mixture, [4, 3, 2, 1])
    assert mode_mass_tv(exact, square_mixture) == pytest.approx(0.0, abs=1e-12)
    for k, w in enumerate(square_mixture.weights.tolist()):
        collapsed = _at_means(square_mixture, [10 if j == k else 0 for j in range(4)])
        assert mode_mass_tv(collapsed, square_mixture) == pytest.approx(1 - w, abs=1e-12)
    uniform = torch.full((4,), 0.25)
    assert mode_mass_tv(exact, square_mixture, target_weights=uniform) == pytest.approx(0.2)


def test_mode_mass_tv_of_mixture_samples_small(
    square_mixture: GaussianMixture, gen: torch.Generator
) -> None:
    x, _ = square_mixture.sample(5000, gen)
    assert mode_mass_tv(x, square_mixture) < 0.03


def test_mode_recall_rule(square_mixture: GaussianMixture, gen: torch.Generator) -> None:
    x, _ = square_mixture.sample(2000, gen)
    assert mode_recall(x, square_mixture) == 1.0
    two_modes = _at_means(square_mixture, [5, 0, 3, 0])
    assert mode_recall(two_modes, square_mixture) == 0.5
    assert mode_recall(two_modes, square_mixture, min_count=4) == 0.25
    # samples stranded between modes (8 stds from every mean) are credited to none
    stranded = torch.zeros(50, 2)
    assert mode_recall(stranded, square_mixture) == 0.0


def test_mean_log_density_orders_mixture_above_wider_gaussian(
    square_mixture: GaussianMixture, gen: torch.Generator
) -> None:
    x, _ = square_mixture.sample(4000, gen)
    wide = 5.0 * torch.randn(4000, 2, generator=gen)
    assert mean_log_density(x, square_mixture) > mean_log_density(wide, square_mixture) + 1.0


def test_mean_log_density_single_gaussian_closed_form(gen: torch.Generator) -> None:
    d, s = 3, 0.5
    mixture = GaussianMixture(torch.zeros(1, d), s)
    x = torch.randn(20000, d, generator=gen, dtype=torch.float64) * s
    # E log N(x; 0, s^2 I) = -d/2 log(2 pi e s^2), the negative entropy
    neg_entropy = -0.5 * d * math.log(2 * math.pi * math.e * s**2)
    assert mean_log_density(x, mixture) == pytest.approx(neg_entropy, abs=0.03)
    at_mean = torch.zeros(4, d)
    assert mean_log_density(at_mean, mixture) == pytest.approx(
        -0.5 * d * math.log(2 * math.pi * s**2), rel=1e-12
    )


def test_mixture_metrics_mmd_uses_at_most_mmd_max_samples(
    square_mixture: GaussianMixture, gen: torch.Generator
) -> None:
    x, _ = square_mixture.sample(300, gen)
    ref, _ = square_mixture.sample(300, gen)
    capped = mixture_metrics(x, square_mixture, ref, gen, mmd_max_samples=100)
    assert capped["mmd"] == mmd(x[:100], ref[:100])
    full = mixture_metrics(x, square_mixture, ref, gen, mmd_max_samples=None)
    assert full["mmd"] == mmd(x, ref) != capped["mmd"]
    assert full["mode_tv"] == capped["mode_tv"]  # the other metrics use every sample
    with pytest.raises(ValueError, match="mmd_max_samples must be None or an int >= 2, got 1"):
        mixture_metrics(x, square_mixture, ref, gen, mmd_max_samples=1)


def test_mixture_metrics_keys_and_values(
    square_mixture: GaussianMixture, gen: torch.Generator
) -> None:
    x, _ = square_mixture.sample(1000, gen)
    ref, _ = square_mixture.sample(1000, gen)
    good = mixture_metrics(x, square_mixture, ref, gen)
    assert set(good) == {"logp", "mode_tv", "mode_recall", "sw2", "mmd"}
    assert all(isinstance(v, float) for v in good.values())
    collapsed = _at_means(square_mixture, [1000, 0, 0, 0]) + 0.5 * torch.randn(1000, 2)
    bad = mixture_metrics(collapsed, square_mixture, ref, gen)
    assert good["mode_recall"] == 1.0 and bad["mode_recall"] == 0.25
    assert bad["mode_tv"] == pytest.approx(0.6, abs=1e-12)
    assert good["mode_tv"] < 0.05
    assert bad["sw2"] > 5 * good["sw2"]
    assert bad["mmd"] > 20 * abs(good["mmd"])


# ----------------------------------------------------------------------------- feature metrics


def test_frechet_distance_identical_and_shift_closed_form(gen: torch.Generator) -> None:
    x = torch.randn(500, 6, generator=gen, dtype=torch.float64)
    m = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert frechet_distance(x, x.clone()) == pytest.approx(0.0, abs=1e-9)
    # same covariance, means differ by m: FD = |m|^2
    assert frechet_distance(x, x + m) == pytest.approx(float(m @ m), rel=1e-8)


def test_frechet_distance_two_gaussians(gen: torch.Generator) -> None:
    d = 4
    m = torch.tensor([1.0, 1.0, -1.0, 0.0])
    a = torch.randn(20000, d, generator=gen)
    b = torch.randn(20000, d, generator=gen) + m
    assert frechet_distance(a, b) == pytest.approx(float(m @ m), abs=0.05)


def test_frechet_distance_scaled_covariance_and_singular(gen: torch.Generator) -> None:
    # N(0, I) vs N(0, c^2 I): FD = d (1 - c)^2 ; exact with whitened samples
    d, c = 3, 2.0
    z = torch.randn(1000, d, generator=gen, dtype=torch.float64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T  # sample cov = I
    assert frechet_distance(z, c * z) == pytest.approx(d * (1 - c) ** 2, rel=1e-9)
    # rank-deficient covariances (points on a line) stay finite and non-negative
    line = torch.linspace(-1, 1, 50, dtype=torch.float64)[:, None] * torch.ones(1, d)
    assert frechet_distance(line, line) == pytest.approx(0.0, abs=1e-9)


def test_kid_same_near_zero_shift_large(gen: torch.Generator) -> None:
    a, b = torch.randn(600, 8, generator=gen), torch.randn(600, 8, generator=gen)
    same = kid(a, b, subsets=20, subset_size=300, generator=gen)
    identical = kid(a, a.clone(), subsets=20, subset_size=300, generator=gen)
    shifted = kid(a, b + 1.0, subsets=20, subset_size=300, generator=gen)
    assert abs(same) < 0.05 and abs(identical) < 0.05
    assert shifted > 50 * max(abs(same), abs(identical))


def test_kid_matches_direct_formula_when_subset_is_whole_set(gen: torch.Generator) -> None:
    a, b = torch.randn(40, 5, generator=gen), torch.randn(40, 5, generator=gen) + 0.3
    ad, bd = a.double(), b.double()

    def k(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u @ v.T / 5 + 1) ** 3

    kaa, kbb = k(ad, ad), k(bd, bd)
    expected = (
        (kaa.sum() - kaa.trace()) / (40 * 39)
        + (kbb.sum() - kbb.trace()) / (40 * 39)
        - 2 * k(ad, bd).mean()
    )
    # subsets of the whole set are permutations, which leave the statistic unchanged
    assert kid(a, b, subsets=3, subset_size=1000) == pytest.approx(float(expected), rel=1e-9)


def test_precision_recall_sanity(gen: torch.Generator) -> None:
    real = torch.randn(300, 4, generator=gen)
    assert precision_recall(real, real.clone()) == {"precision": 1.0, "recall": 1.0}
    subset = real[:100]
    assert precision_recall(real, subset)["precision"] == 1.0
    collapsed = real[7].expand(50, -1).clone()
    pr = precision_recall(real, collapsed)
    assert pr["precision"] == 1.0 and pr["recall"] == pytest.approx(1 / 300)
    far = torch.randn(200, 4, generator=gen) + 100.0
    assert precision_recall(real, far) == {"precision": 0.0, "recall": 0.0}


def test_class_histogram_tv_values() -> None:
    target = torch.full((4,), 0.25)
    assert class_histogram_tv(torch.tensor([0, 1, 2, 3]), target) == pytest.approx(0.0)
    assert class_histogram_tv(torch.tensor([2, 2, 2]), target) == pytest.approx(0.75)
    assert class_histogram_tv(torch.tensor([0, 1]), torch.tensor([1.0, 1.0, 0, 0])) == 0.0


# ----------------------------------------------------------------------------- input validation


def test_bad_inputs_raise(square_mixture: GaussianMixture) -> None:
    x2 = torch.randn(10, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        mean_log_density(torch.randn(10, 3), square_mixture)
    with pytest.raises(ValueError, match="at least 1 samples"):
        mode_mass_tv(torch.randn(0, 2), square_mixture)
    with pytest.raises(ValueError, match="target_weights must have shape"):
        mode_mass_tv(x2, square_mixture, target_weights=torch.ones(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mode_assignment(torch.full((3, 2), float("nan")), square_mixture)
    with pytest.raises(ValueError, match="min_count must be an int >= 1"):
        mode_recall(x2, square_mixture, min_count=0)
    with pytest.raises(ValueError, match="radius must be > 0"):
        mode_recall(x2, square_mixture, radius=-1.0)
    with pytest.raises(ValueError, match="same per-sample shape"):
        sliced_wasserstein(x2, torch.randn(10, 3))
    with pytest.raises(ValueError, match="num_projections must be an int >= 1"):
        sliced_wasserstein(x2, x2, num_projections=0)
    with pytest.raises(ValueError, match="y needs at least 2 samples"):
        mmd(x2, torch.randn(1, 2))
    with pytest.raises(ValueError, match="bandwidths must be positive"):
        mmd(x2, x2, bandwidths=[1.0, 0.0])
    with pytest.raises(ValueError, match="all points of y coincide"):
        mmd(x2, torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"feat_a must have 2 dimensions"):
        frechet_distance(torch.randn(10, 2, 2), torch.randn(10, 2, 2))
    with pytest.raises(ValueError, match="feat_b needs at least 2 samples"):
        frechet_distance(x2, torch.randn(1, 2))
    with pytest.raises(ValueError, match="subsets must be an int >= 1"):
        kid(x2, x2, subsets=0)
    with pytest.raises(ValueError, match="fake_feat needs at least 4 samples"):
        precision_recall(x2, torch.randn(3, 2), k=3)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        precision_recall(x2, x2, k=0)
    with pytest.raises(ValueError, match=r"pred_labels contains 5; allowed classes are 0\.\.3"):
        class_histogram_tv(torch.tensor([0, 5]), torch.ones(4))
    with pytest.raises(ValueError, match="target_probs must be finite, >= 0"):
        class_histogram_tv(torch.tensor([0, 1]), torch.tensor([1.0, -1.0]))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        sliced_wasserstein([[0.0]], x2)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- digits classifier


@pytest.fixture(scope="module")
def classifier():
    return load_digits_classifier()


def test_shipped_classifier_accuracy_recorded_and_recomputed(classifier) -> None:
    meta = load_digits_classifier_metadata()
    x, labels, sha = load_digits_data()
    assert meta["data_sha256"] == sha
    assert meta["heldout_accuracy"] >= 0.97
    cfg = meta["config"]
    _, hold = digits_split(labels, holdout_fraction=cfg["holdout_fraction"], seed=cfg["split_seed"])
    assert len(hold) == meta["n_heldout"]
    with torch.no_grad():
        acc = float((classifier(x[hold]).argmax(-1) == labels[hold]).double().mean())
    assert acc >= 0.97
    assert acc == pytest.approx(meta["heldout_accuracy"], abs=0.01)
    assert not any(p.requires_grad for p in classifier.parameters())
    assert not classifier.training
    assert classifier.features(x[:5]).shape == (5, classifier.feature_dim)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 8, 8\)"):
        classifier.features(torch.zeros(2, 64))


def test_digits_split_is_stratified_and_disjoint() -> None:
    _, labels, _ = load_digits_data()
    train, hold = digits_split(labels, holdout_fraction=0.2, seed=0)
    assert len(train) + len(hold) == len(labels)
    assert not set(train.tolist()) & set(hold.tolist())
    frac = torch.bincount(labels[hold], minlength=10) / torch.bincount(labels, minlength=10)
    assert torch.allclose(frac, torch.full((10,), 0.2, dtype=frac.dtype), atol=0.01)
    assert torch.equal(hold, digits_split(labels, holdout_fraction=0.2, seed=0)[1])


def test_missing_classifier_file_raises(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="digits_classifier.pt not found; train it with"):
        load_digits_classifier(path=tmp_path / "digits_classifier.pt")


def test_train_digits_classifier_smoke(tmp_path) -> None:
    cfg = DigitsClassifierConfig(epochs=1, channels=(4, 8), feature_dim=8)
    meta = train_digits_classifier(tmp_path, seed=3, config=cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "digits_classifier.json",
        "digits_classifier.pt",
    ]
    assert load_digits_classifier_metadata(tmp_path / "digits_classifier.json") == meta
    model = load_digits_classifier(path=tmp_path / "digits_classifier.pt")
    assert model.features(torch.zeros(2, 1, 8, 8)).shape == (2, 8)
    with pytest.raises(ValueError, match="holdout_fraction must be in"):
        DigitsClassifierConfig(holdout_fraction=1.5)


def test_digits_metrics_real_vs_real_and_corrupted(classifier) -> None:
    x, labels, _ = load_digits_data()
    train, hold = digits_split(labels, holdout_fraction=0.5, seed=1)
    ref, xs, ys = x[train], x[hold], labels[hold]
    kw = {"classifier": classifier, "kid_subsets": 10, "kid_subset_size": 500}
    good = digits_metrics(xs, ys, ref, **kw)
    assert set(good) == {"fd_digits", "kid", "precision", "recall", "class_tv", "label_accuracy"}
    assert good["label_accuracy"] > 0.97
    assert good["class_tv"] < 0.03
    assert good["precision"] > 0.8 and good["recall"] > 0.8
    noisy = xs + 0.6 * torch.randn(xs.shape, generator=torch.Generator().manual_seed(0))
    bad = digits_metrics(noisy, ys, ref, **kw)
    assert bad["fd_digits"] > 3 * good["fd_digits"]
    assert bad["kid"] > 3 * good["kid"]
    assert bad["label_accuracy"] < good["label_accuracy"]
    one_class = digits_metrics(xs[ys == 3], None, ref, **kw)
    assert math.isnan(one_class["label_accuracy"])
    assert one_class["class_tv"] > 0.8  # uniform target, nearly everything classified as 3
    assert one_class["recall"] < 0.3
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        digits_metrics(xs[:5], ys[:4], ref, **kw)
    with pytest.raises(ValueError, match=r"labels contains 10; allowed labels are 0\.\.9"):
        digits_metrics(xs[:5], torch.full((5,), 10), ref, **kw)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1, 8, 8\)"):
        digits_metrics(xs.reshape(-1, 64), ys, ref, **kw)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_match_on_cuda(gen: torch.Generator) -> None:
    x, y = torch.randn(200, 6, generator=gen), torch.randn(150, 6, generator=gen) + 0.3
    for fn in (frechet_distance, mmd):
        assert fn(x.cuda(), y.cuda()) == pytest.approx(fn(x, y), rel=1e-6)
    assert sliced_wasserstein(x.cuda(), y.cuda()) == pytest.approx(
        sliced_wasserstein(x, y), rel=1e-6
    )
    assert precision_recall(x.cuda(), y.cuda()) == precision_recall(x, y)


# ----------------------------------------------------------------------------- the blocked,
# batched pairwise metrics against the previous implementation (kept here verbatim as reference)


def _reference_mmd(x: torch.Tensor, y: torch.Tensor, hs: list[float]) -> float:
    """The full-matrix MMD of the previous implementation (one kernel tensor per pair)."""
    a, b = x.double(), y.double()
    inv = torch.tensor([1.0 / (2 * h * h) for h in hs], dtype=torch.float64)

    def ksum(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(u, v, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        return torch.exp(-d2[..., None] * inv).mean(-1).sum()

    n, m = a.shape[0], b.shape[0]
    kxx = (ksum(a, a) - n) / (n * (n - 1))
    kyy = (ksum(b, b) - m) / (m * (m - 1))
    return float(kxx + kyy - 2 * ksum(a, b) / (n * m))


def _reference_kid(
    a: torch.Tensor, b: torch.Tensor, subsets: int, subset_size: int, seed: int
) -> float:
    """The previous implementation: one subset at a time, subsets drawn in the same order."""
    a, b = a.double(), b.double()
    gen = torch.Generator().manual_seed(seed)
    m = min(subset_size, a.shape[0], b.shape[0])
    total = 0.0
    for _ in range(subsets):
        xa = a[torch.randperm(a.shape[0], generator=gen)[:m]]
        xb = b[torch.randperm(b.shape[0], generator=gen)[:m]]
        kxx = (xa @ xa.T / a.shape[1] + 1) ** 3
        kyy = (xb @ xb.T / a.shape[1] + 1) ** 3
        kxy = (xa @ xb.T / a.shape[1] + 1) ** 3
        off = m * (m - 1)
        total += float(
            (kxx.sum() - kxx.diagonal().sum()) / off
            + (kyy.sum() - kyy.diagonal().sum()) / off
            - 2 * kxy.mean()
        )
    return total / subsets


def _reference_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict:
    """Full distance matrices, balls closed (the previous implementation's rule)."""
    real, fake = real.double(), fake.double()

    def dist(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cdist(u, v, compute_mode="donot_use_mm_for_euclid_dist")

    def radii(z: torch.Tensor) -> torch.Tensor:
        d = dist(z, z)
        d.fill_diagonal_(float("inf"))
        return d.kthvalue(k, dim=1).values

    precision = (dist(fake, real) <= radii(real)).any(1).double().mean()
    recall = (dist(real, fake) <= radii(fake)).any(1).double().mean()
    return {"precision": float(precision), "recall": float(recall)}


@pytest.fixture(params=[1024, 7], ids=["default-blocks", "small-blocks"])
def row_block(request, monkeypatch) -> int:
    """Run a test with the default block size and with blocks of 7 rows (many ragged blocks)."""
    from diffgym.benchmarks import metrics

    monkeypatch.setattr(metrics, "ROW_BLOCK", request.param)
    return request.param


def test_mmd_matches_previous_implementation(gen: torch.Generator, row_block: int) -> None:
    x, y = torch.randn(61, 3, generator=gen), torch.randn(45, 3, generator=gen) + 0.4
    for hs in ([0.7], [0.3, 1.1, 2.5]):
        assert mmd(x, y, bandwidths=hs) == pytest.approx(_reference_mmd(x, y, hs), rel=1e-10)
    from diffgym.benchmarks.metrics import MMD_BANDWIDTH_SCALES, _median_bandwidth

    med = _median_bandwidth(y.double())
    default = _reference_mmd(x, y, [s * med for s in MMD_BANDWIDTH_SCALES])
    assert mmd(x, y) == pytest.approx(default, rel=1e-10)


@pytest.mark.parametrize(
    "sizes",
    [(50, 40, 6, 20, 7), (12, 11, 3, 10, 30)],  # per-subset kernels / whole-set indicators
    ids=["per-subset", "indicators"],
)
def test_kid_matches_previous_implementation(row_block: int, sizes) -> None:
    from diffgym.benchmarks import metrics

    na, nb, dim, subset_size, subsets = sizes
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(na, dim, generator=g), torch.randn(nb, dim, generator=g) * 1.3 + 0.2
    expected = _reference_kid(a, b, subsets, subset_size, seed=3)
    got = kid(a, b, subsets=subsets, subset_size=subset_size,
              generator=torch.Generator().manual_seed(3))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # both computations, on the same subsets, whichever the cost rule picks
    gen = torch.Generator().manual_seed(3)
    m = min(subset_size, na, nb)
    ia, ib = [], []
    for _ in range(subsets):
        ia.append(torch.randperm(na, generator=gen)[:m])
        ib.append(torch.randperm(nb, generator=gen)[:m])
    ia, ib = torch.stack(ia), torch.stack(ib)
    for compute in (metrics._kid_by_subsets, metrics._kid_by_indicators):
        value = float(compute(a.double(), b.double(), ia, ib).mean())
        assert value == pytest.approx(expected, rel=1e-10, abs=1e-12), compute.__name__


def test_precision_recall_matches_previous_implementation(
    gen: torch.Generator, row_block: int
) -> None:
    real = torch.randn(90, 4, generator=gen)
    fake = torch.cat([torch.randn(70, 4, generator=gen) * 1.5, real[:5]])  # shared points
    for k in (1, 3, 5):
        assert precision_recall(real, fake, k=k) == _reference_precision_recall(real, fake, k)
    # a lattice: many equal distances, so ties sit exactly on the ball boundaries
    grid = torch.stack(torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij"), -1)
    lattice = grid.reshape(-1, 2)
    shifted = lattice[::2] + torch.tensor([1.0, 0.0])
    assert precision_recall(lattice, shifted) == _reference_precision_recall(lattice, shifted, 3)


@pytest.mark.parametrize("task_name", ["gmm2d", "digits"])
def test_task_metrics_run_on_the_samples_device(task_name: str, device, monkeypatch) -> None:
    """task_metrics hands the pairwise metrics tensors on the samples' device (no move to the
    CPU); on gmm2d (float64 maths on the same samples) the values match the CPU's."""
    from diffgym.benchmarks import metrics
    from diffgym.benchmarks.evaluate import task_metrics
    from diffgym.envs import make_task

    seen: dict[str, set[str]] = {}

    def spying(name: str):
        fn = getattr(metrics, name)

        def spy(*args, **kwargs):
            seen.setdefault(name, set()).update(a.device.type for a in args[:2])
            return fn(*args, **kwargs)

        return spy

    from diffgym.benchmarks import digits_metrics

    for name in ("mmd", "kid", "precision_recall"):
        spy = spying(name)
        monkeypatch.setattr(metrics, name, spy)
        if hasattr(digits_metrics, name):  # the digits suite's own binding
            monkeypatch.setattr(digits_metrics, name, spy)
    task = make_task(task_name)
    x, labels = task.sample_data(300, torch.Generator().manual_seed(5))
    labels = labels if task.num_classes else None
    out = task_metrics(task, x.to(device), None if labels is None else labels.to(device), seed=1)
    expected = {"gmm2d": {"mmd"}, "digits": {"kid", "precision_recall"}}[task_name]
    assert set(seen) == expected
    assert all(types == {device.type} for types in seen.values()), seen
    assert all(math.isfinite(v) for k, v in out.items() if k != "label_accuracy")
    if task_name == "gmm2d" and device.type != "cpu":
        cpu = task_metrics(task, x, seed=1)
        for key, value in cpu.items():
            assert out[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
