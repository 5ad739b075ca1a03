"""The analytic Gaussian-mixture denoiser (design §2) against independent computations:
a Monte-Carlo posterior mean, Tweedie's formula by autograd, and hand-written densities."""

from __future__ import annotations

import math

import pytest
import torch

from diffgym.envs import GaussianMixture, GMMDenoiser, UncondBranch, c_in, c_noise

MEANS = [[-2.0, 0.0], [1.5, 1.0], [0.5, -2.5], [3.0, -1.0]]
STDS = [0.3, 0.6, 0.45, 0.2]
WEIGHTS = [0.1, 0.4, 0.3, 0.2]
LABELS = [0, 1, 1, 2]  # label 1 owns two components


def mixture(conditional: bool = False, dtype=torch.float64) -> GaussianMixture:
    return GaussianMixture(MEANS, STDS, WEIGHTS, LABELS if conditional else None, dtype=dtype)


def query_points(dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(
        [[0.0, 0.0], [-1.0, 0.5], [2.0, 2.0], [0.5, -2.0], [3.5, -0.5]], dtype=dtype
    )


def mc_posterior_mean(
    gmm: GaussianMixture, x: torch.Tensor, sigma: float, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-normalised importance sampling of ``E[x0 | x]`` with the prior as proposal.

    Returns the estimate ``(B, d)`` and its delta-method standard error ``(B, d)``.
    """
    x0, _ = gmm.sample(n, generator, dtype=torch.float64)  # (n, d) from the prior
    log_w = -0.5 * ((x[:, None, :] - x0[None, :, :]) ** 2).sum(-1) / sigma**2  # (B, n)
    w = torch.softmax(log_w, dim=1)
    est = w @ x0
    # Var of a self-normalised IS mean: sum_i w_i^2 (x0_i - est)^2.
    se = torch.sqrt((w[:, :, None] ** 2 * (x0[None] - est[:, None]) ** 2).sum(1))
    return est, se


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_posterior_mean_matches_monte_carlo(sigma, generator):
    gmm = mixture()
    den = GMMDenoiser(gmm)
    x = query_points()
    est, se = mc_posterior_mean(gmm, x, sigma, 400_000, generator)
    got = den(x, torch.full((x.shape[0],), sigma, dtype=torch.float64))
    assert float(se.max()) < 0.02, "Monte-Carlo estimate too noisy to be a meaningful check"
    err = (got - est).abs()
    assert bool((err < 5 * se + 1e-6).all()), f"error {err} vs standard error {se}"


def test_conditional_posterior_mean_matches_monte_carlo(generator):
    """Label 1 owns components 1 and 2: its posterior is the one of that sub-mixture."""
    gmm = mixture(conditional=True)
    sub = GaussianMixture([MEANS[1], MEANS[2]], [STDS[1], STDS[2]], [WEIGHTS[1], WEIGHTS[2]])
    den = GMMDenoiser(gmm)
    x = query_points()
    sigma = 1.0
    est, se = mc_posterior_mean(sub, x, sigma, 400_000, generator)
    labels = torch.ones(x.shape[0], dtype=torch.long)
    got = den(x, torch.full((x.shape[0],), sigma, dtype=torch.float64), labels)
    assert bool(((got - est).abs() < 5 * se + 1e-6).all())
    # and exactly the posterior of the sub-mixture
    torch.testing.assert_close(got, GMMDenoiser(sub)(x, torch.full((5,), sigma).double()))


def tweedie(gmm: GaussianMixture, x: torch.Tensor, sigma: torch.Tensor, labels=None):
    """``x + sigma^2 grad_x log p_sigma(x)`` with the gradient by autograd."""
    x = x.clone().requires_grad_(True)
    logp = gmm.log_prob(x, sigma, labels)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    return (x + sigma[:, None] ** 2 * grad).detach()


@pytest.mark.parametrize(
    "dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
def test_tweedie_formula(dtype, tol, conditional, device, generator):
    gmm = mixture(conditional, dtype=dtype)
    den = GMMDenoiser(gmm).to(device)
    # points and levels over the whole schedule range
    x = (torch.randn(64, 2, generator=generator) * 3).to(device, dtype)
    sigma = torch.logspace(-2.5, 1.9, 64).to(device, dtype)
    labels = torch.tensor(LABELS)[torch.arange(64) % 4].to(device) if conditional else None
    expected = tweedie(gmm, x, sigma, labels)
    got = den(x, sigma, labels)
    assert got.dtype == dtype and got.device.type == device.type
    scale = 1.0 + x.abs() + sigma[:, None] ** 2  # float32: the gradient is multiplied by sigma^2
    assert bool(((got - expected).abs() / scale < tol).all())


def test_log_prob_matches_explicit_density():
    gmm = mixture(conditional=True)
    x = query_points()
    sigma = 0.7
    dens = torch.zeros(x.shape[0], dtype=torch.float64)
    dens_label1 = torch.zeros(x.shape[0], dtype=torch.float64)
    for k in range(len(MEANS)):
        var = STDS[k] ** 2 + sigma**2
        sq = ((x - torch.tensor(MEANS[k], dtype=torch.float64)) ** 2).sum(-1)
        pdf = torch.exp(-0.5 * sq / var) / (2 * math.pi * var)
        dens += WEIGHTS[k] * pdf
        if LABELS[k] == 1:
            dens_label1 += WEIGHTS[k] * pdf / (WEIGHTS[1] + WEIGHTS[2])
    torch.testing.assert_close(gmm.log_prob(x, sigma), torch.log(dens), rtol=0, atol=1e-12)
    ones = torch.ones(5, dtype=torch.long)
    torch.testing.assert_close(
        gmm.log_prob(x, sigma, ones), torch.log(dens_label1), rtol=0, atol=1e-12
    )


def test_single_gaussian_is_linear_shrinkage():
    """One component: D(x) = mu + s^2/(s^2+sigma^2) (x - mu), exactly."""
    mu, s = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64), 0.8
    den = GMMDenoiser(GaussianMixture(mu, s))
    x = torch.tensor([[0.0, 0.0, 0.0], [10.0, -3.0, 2.0]], dtype=torch.float64)
    sigma = torch.tensor([0.5, 4.0], dtype=torch.float64)
    shrink = (s**2 / (s**2 + sigma**2))[:, None]
    torch.testing.assert_close(den(x, sigma), mu + shrink * (x - mu), rtol=0, atol=1e-14)
    assert den.sigma_data == pytest.approx(s, rel=1e-12)


def test_sigma_data_is_data_std(generator):
    den = GMMDenoiser(mixture())
    x0, _ = mixture().sample(400_000, generator, dtype=torch.float64)
    per_coord = x0.var(0).mean().sqrt().item()
    assert den.sigma_data == pytest.approx(per_coord, rel=5e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_far_away_points_stay_finite(dtype, device):
    """|x| = 50 at small sigma: every component density underflows; log-space responsibilities
    still pick the nearest (highest log-joint) component."""
    means = torch.tensor([[-4.0, 0.0], [4.0, 0.0]])
    den = GMMDenoiser(GaussianMixture(means, 0.15, dtype=dtype)).to(device)
    x = torch.tensor([[50.0, 0.0], [-50.0, 0.0], [0.0, 50.0], [35.36, 35.36]], dtype=dtype)
    sigma = torch.tensor([0.002, 0.002, 0.01, 0.05], dtype=dtype)
    got = den(x.to(device), sigma.to(device)).cpu()
    assert bool(torch.isfinite(got).all())
    # the nearest component's posterior mean, in float64 by hand
    x64, s64 = x.double(), sigma.double()
    nearest = torch.where(x64[:, :1] >= 0, means[1].double(), means[0].double())
    shrink = (0.15**2 / (0.15**2 + s64**2))[:, None]
    expected = nearest + shrink * (x64 - nearest)
    # x = (0, 50) is equidistant: the average of both components' posterior means
    expected[2] = (means.double() + shrink[2] * (x64[2] - means.double())).mean(0)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)


def test_conditional_restricts_to_label_components():
    gmm = mixture(conditional=True)
    den = GMMDenoiser(gmm)
    x = torch.tensor([[-2.0, 0.0]], dtype=torch.float64).repeat(3, 1)  # on component 0 (label 0)
    sigma = torch.full((3,), 0.5, dtype=torch.float64)
    got = den(x, sigma, torch.tensor([0, 1, 2]))
    for row, k in ((0, 0), (2, 3)):  # labels 0 and 2 own a single component
        s2 = STDS[k] ** 2
        mu = torch.tensor(MEANS[k], dtype=torch.float64)
        torch.testing.assert_close(got[row], mu + s2 / (s2 + 0.25) * (x[row] - mu))
    assert den.num_classes == 3 and den.label_dropout_supported


def test_uncond_branch_is_unconditional_posterior():
    gmm = mixture(conditional=True)
    den = GMMDenoiser(gmm)
    branch = UncondBranch(den)
    x = query_points()
    sigma = torch.full((5,), 0.9, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(branch(x, sigma, labels), GMMDenoiser(mixture())(x, sigma))
    with pytest.raises(ValueError, match=r"label dropout"):
        UncondBranch(GMMDenoiser(mixture(conditional=False)))


def test_edm_preconditioning_helpers():
    sigma = torch.tensor([0.002, 1.0, 80.0], dtype=torch.float64)
    torch.testing.assert_close(c_in(sigma, 0.5), 1 / torch.sqrt(sigma**2 + 0.25))
    assert c_in(torch.tensor(0.0), 0.5).item() == pytest.approx(2.0)
    assert c_noise(torch.tensor(math.e**4)).item() == pytest.approx(1.0)
    torch.testing.assert_close(c_noise(sigma), torch.log(sigma) / 4)


def test_sample_shapes_and_labels(generator):
    gmm = mixture(conditional=True)
    x, labels = gmm.sample(100_000, generator)
    assert x.shape == (100_000, 2) and x.dtype == torch.float32
    assert labels.shape == (100_000,) and labels.dtype == torch.long
    freq = torch.bincount(labels, minlength=3).double() / 100_000
    torch.testing.assert_close(freq, gmm.label_probs(), atol=5e-3, rtol=0)
    torch.testing.assert_close(gmm.label_probs(), torch.tensor([0.1, 0.7, 0.2]).double())
    want = torch.tensor([2, 2, 0])
    xc, lc = gmm.sample(3, generator, class_labels=want)
    assert lc.tolist() == want.tolist()
    assert torch.dist(xc[2].double(), torch.tensor(MEANS[0]).double()) < 2.0
    _, lu = mixture().sample(4, generator)
    assert lu.tolist() == [-1, -1, -1, -1]


def test_label_out_of_range():
    den = GMMDenoiser(mixture(conditional=True))
    x = query_points()[:2]
    sigma = torch.ones(2, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"class label 7 is out of range; allowed labels are 0\.\.2"
    ):
        den(x, sigma, torch.tensor([0, 7]))
    with pytest.raises(
        ValueError, match=r"class label -1 is out of range; allowed labels are 0\.\.2"
    ):
        den(x, sigma, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"class_labels must have shape \(2,\), got \(3,\)"):
        den(x, sigma, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"unconditional denoiser"):
        GMMDenoiser(mixture())(x, sigma, torch.tensor([0, 0]))


def test_wrong_data_shape():
    den = GMMDenoiser(mixture())
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\), got \(4, 3\)"):
        den(torch.zeros(4, 3, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"sigma must have shape \(4,\), got \(\)"):
        den(torch.zeros(4, 2, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(means=[1.0, 2.0], stds=1.0), r"means must have shape \(K, \*data_shape\)"),
        (dict(means=MEANS, stds=[1.0, 2.0]), r"stds must be a float or have shape \(4,\)"),
        (dict(means=MEANS, stds=0.0), r"component stds must be > 0"),
        (dict(means=MEANS, stds=1.0, weights=[1, -1, 1, 1]), r"weights must be >= 0"),
        (dict(means=MEANS, stds=1.0, weights=[0, 0, 0, 0]), r"positive sum"),
        (dict(means=MEANS, stds=1.0, weights=[1.0]), r"weights must have shape \(4,\)"),
        (dict(means=MEANS, stds=1.0, component_labels=[0, 1]), r"component_labels must have"),
        (dict(means=MEANS, stds=1.0, component_labels=[0, -1, 0, 0]), r"must be >= 0"),
    ],
)
def test_mixture_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights=[float("nan"), 1.0]), r"weights must be finite, got nan at index 0"),
        (dict(stds=[0.5, float("inf")]), r"stds must be finite, got inf at index 1"),
        (dict(means=[[0.0, float("nan")], [1.0, 1.0]]), r"means must be finite.*index \[0, 1\]"),
    ],
)
def test_mixture_rejects_non_finite_parameters(kwargs, match):
    args = {"means": [[0.0, 0.0], [1.0, 1.0]], "stds": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**args)
