"""The mixture tasks with trained networks (``gmm2d-net``, ``cmix``): the full-covariance mixture
against closed form and Monte Carlo, the MLP, the training/loading round trip, the shipped
networks' quality on held-out data, and deterministic task builders."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from diffgym.envs import make_task
from diffgym.envs.denoisers import FullCovGaussianMixture, GaussianMixture, GMMDenoiser
from diffgym.envs.networks import MixtureMLP, build_mixture_denoiser
from diffgym.envs.tasks import cmix_mixture, gmm2d_target
from diffgym.envs.train_denoiser import EVAL_SEED_OFFSET, P_MEAN, P_STD
from diffgym.envs.train_mixture import (
    load_mixture_denoiser,
    mixture_files,
    mixture_target_sha256,
    mixture_training_data,
    train_mixture_denoiser,
)


def _small_mixture() -> FullCovGaussianMixture:
    g = torch.Generator().manual_seed(0)
    d = 3
    means = torch.randn(3, d, generator=g, dtype=torch.float64)
    a = torch.randn(3, d, d, generator=g, dtype=torch.float64)
    covs = a @ a.transpose(1, 2) + 0.1 * torch.eye(d, dtype=torch.float64)
    return FullCovGaussianMixture(means, covs, [0.2, 0.3, 0.5], [0, 1, 1])


def _closed_form_log_joint(m: FullCovGaussianMixture, x: torch.Tensor, s2: float) -> torch.Tensor:
    eye = torch.eye(m.dim, dtype=torch.float64)
    return torch.stack(
        [
            torch.distributions.MultivariateNormal(m.means[k], m.covs[k] + s2 * eye).log_prob(x)
            + math.log(float(m.weights[k]))
            for k in range(m.num_components)
        ],
        dim=1,
    )


# --------------------------------------------------------------------------------------------
# FullCovGaussianMixture
# --------------------------------------------------------------------------------------------


def test_full_cov_log_prob_and_posterior_mean_closed_form():
    m = _small_mixture()
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigma = torch.full((7,), 0.7, dtype=torch.float64)
    lj = _closed_form_log_joint(m, x, 0.49)
    torch.testing.assert_close(m.component_log_joint(x, 0.7), lj)
    torch.testing.assert_close(m.log_prob(x, 0.7), torch.logsumexp(lj, 1))
    # class-conditional: the label's renormalised sub-mixture
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 1])
    own = m.component_labels[None, :] == labels[:, None]
    cond = torch.logsumexp(lj.masked_fill(~own, -math.inf), 1) - torch.log(
        m.label_probs()[labels]
    )
    torch.testing.assert_close(m.log_prob(x, 0.7, labels), cond)
    # Tweedie per component: mu_k + Sigma_k (Sigma_k + s^2 I)^-1 (x - mu_k)
    eye = torch.eye(3, dtype=torch.float64)
    r = torch.softmax(lj, 1)
    expected = sum(
        r[:, k : k + 1]
        * (m.means[k] + torch.linalg.solve(m.covs[k] + 0.49 * eye, (x - m.means[k]).T).T
           @ m.covs[k])
        for k in range(3)
    )
    torch.testing.assert_close(m.posterior_mean(x, sigma), expected)


def test_full_cov_posterior_mean_monte_carlo():
    """E[x0 | x] by self-normalised importance sampling from the prior agrees with Tweedie."""
    m = _small_mixture()
    g = torch.Generator().manual_seed(2)
    x0, _ = m.sample(400_000, g, dtype=torch.float64)
    x = torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64)
    s = 0.8
    logw = -0.5 * ((x - x0) ** 2).sum(1) / s**2
    w = torch.softmax(logw, 0)
    mc = (w[:, None] * x0).sum(0)
    exact = m.posterior_mean(x, torch.tensor([s], dtype=torch.float64))[0]
    torch.testing.assert_close(mc, exact, atol=0.02, rtol=0)


def test_full_cov_sample_moments_and_labels():
    m = _small_mixture()
    x, labels = m.sample(200_000, torch.Generator().manual_seed(3), dtype=torch.float64)
    mean = (m.weights[:, None] * m.means).sum(0)
    second = sum(
        m.weights[k] * (m.covs[k] + torch.outer(m.means[k], m.means[k])) for k in range(3)
    )
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(x.T @ x / x.shape[0], second, atol=0.05, rtol=0.02)
    assert abs(float((labels == 0).double().mean()) - 0.2) < 0.01
    xc, lc = m.sample(50, torch.Generator().manual_seed(4), torch.ones(50, dtype=torch.long))
    assert lc.tolist() == [1] * 50 and xc.dtype == torch.float32


def test_full_cov_matches_isotropic_when_isotropic():
    means = torch.randn(4, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    iso = GaussianMixture(means, 0.4, [0.1, 0.2, 0.3, 0.4])
    full = FullCovGaussianMixture(means, 0.16 * torch.eye(5, dtype=torch.float64).expand(4, 5, 5),
                                  [0.1, 0.2, 0.3, 0.4])
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sigma = torch.linspace(0.1, 2.0, 6, dtype=torch.float64)
    torch.testing.assert_close(full.log_prob(x, sigma), iso.log_prob(x, sigma))
    torch.testing.assert_close(full.posterior_mean(x, sigma), iso.posterior_mean(x, sigma))
    torch.testing.assert_close(full.component_log_joint(x), iso.component_log_joint(x))
    assert GMMDenoiser(full).sigma_data == pytest.approx(GMMDenoiser(iso).sigma_data, rel=1e-12)


@pytest.mark.parametrize(
    "covs, match",
    [
        (torch.ones(2, 2, 2), r"positive-definite"),
        (torch.tensor([[[1.0, 0.5], [0.0, 1.0]]] * 2), r"symmetric"),
        (torch.eye(3).expand(2, 3, 3), r"covs must have shape \(2, 2, 2\)"),
    ],
)
def test_full_cov_bad_covs(covs, match):
    with pytest.raises(ValueError, match=match):
        FullCovGaussianMixture(torch.zeros(2, 2), covs)


# --------------------------------------------------------------------------------------------
# Network, training and loading
# --------------------------------------------------------------------------------------------


def test_mixture_mlp_shapes_and_null_label():
    net = MixtureMLP(dim=5, num_classes=3, hidden=16, num_blocks=1, emb_channels=8)
    x, c = torch.randn(4, 5), torch.zeros(4)
    out = net(x, c, torch.tensor([0, 1, 2, 3]))  # 3 is the null row
    assert out.shape == (4, 5)
    torch.testing.assert_close(net(x, c, None), net(x, c, torch.full((4,), 3)))
    with pytest.raises(ValueError, match=r"hidden must be an int >= 1, got 0"):
        MixtureMLP(dim=2, hidden=0)
    with pytest.raises(ValueError, match=r"unknown network config keys \['width'\]"):
        build_mixture_denoiser({"sigma_data": 1.0, "network": {"width": 3}})


@pytest.mark.parametrize("task", ["gmm2d-net", "cmix"])
def test_train_tiny_run_is_reproducible_and_loads(task, tmp_path):
    kw = dict(seed=3, steps=4, batch_size=32, network={"hidden": 16, "num_blocks": 1},
              progress=False)
    meta = train_mixture_denoiser(task, tmp_path / "a", **kw)
    train_mixture_denoiser(task, tmp_path / "b", **kw)
    files = mixture_files(task)
    for which in ("model", "guide"):
        a = torch.load(tmp_path / "a" / files[which], weights_only=True)
        b = torch.load(tmp_path / "b" / files[which], weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert meta["task"] == task and meta["snapshots"]["guide"]["step"] == 1
    assert meta["data_sha256"] == mixture_training_data(task)[2]
    assert meta["target_sha256"] == mixture_target_sha256(task)
    net = load_mixture_denoiser(task, "guide", assets_dir=tmp_path / "a")
    assert net.num_classes == (10 if task == "cmix" else 0)
    assert net.label_dropout_supported == (task == "cmix")
    # a json from another target is refused; a json without the target's hash (written before
    # it existed) is checked by the draw's hash
    cfg = tmp_path / "a" / files["config"]
    good = json.loads(cfg.read_text())
    for bad in ({**good, "target_sha256": "x"},
                {k: (v if k != "data_sha256" else "x") for k, v in good.items()
                 if k != "target_sha256"}):
        cfg.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="retrain with `diffgym train-denoiser"):
            load_mixture_denoiser(task, "model", assets_dir=tmp_path / "a")
    cfg.write_text(json.dumps({k: v for k, v in good.items() if k != "target_sha256"}))
    assert load_mixture_denoiser(task, "model", assets_dir=tmp_path / "a").num_classes == (
        10 if task == "cmix" else 0
    )


def test_target_hash_ignores_platform_rounding_and_sees_changes(monkeypatch):
    """The hash is of the target, not of its draw: noise far below its digits (a platform's
    rounding, about 1e-16) leaves it unchanged; a change of a mean is seen."""
    import diffgym.envs.train_mixture as tm

    base = mixture_target_sha256("cmix")
    spec = tm.MIXTURE_NETS["cmix"]

    def nudged(delta):
        def target():
            t = spec.target()
            t.means = t.means + delta * torch.randn(t.means.shape, dtype=t.means.dtype,
                                                    generator=torch.Generator().manual_seed(0))
            t.covs = t.covs * (1 + delta)
            return t
        return target

    monkeypatch.setitem(tm.MIXTURE_NETS, "cmix", dataclasses.replace(
        spec, target=nudged(1e-13)))
    assert mixture_target_sha256("cmix") == base
    monkeypatch.setitem(tm.MIXTURE_NETS, "cmix", dataclasses.replace(
        spec, target=nudged(1e-4)))
    assert mixture_target_sha256("cmix") != base


def test_train_and_load_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"no shipped network for task 'digits'; allowed: cmix"):
        train_mixture_denoiser("digits", tmp_path)
    with pytest.raises(ValueError, match=r"label_dropout must be in \[0, 1\) \(0 on an uncond"):
        train_mixture_denoiser("gmm2d-net", tmp_path, label_dropout=0.1)
    with pytest.raises(ValueError, match=r"network dim must be 32 for cmix, got 4"):
        train_mixture_denoiser("cmix", tmp_path, network={"dim": 4})
    with pytest.raises(ValueError, match=r"unknown denoiser 'best'"):
        load_mixture_denoiser("cmix", "best")
    with pytest.raises(FileNotFoundError, match=r"diffgym train-denoiser cmix"):
        load_mixture_denoiser("cmix", assets_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Shipped networks
# --------------------------------------------------------------------------------------------


def _heldout_losses(task_name: str) -> dict[str, float]:
    """EDM-weighted denoising error on fresh target samples (noise levels from the training
    distribution, fixed draws) of the exact denoiser, the model, its guide and the identity."""
    task = make_task(task_name)
    target = task.target
    g = torch.Generator().manual_seed(EVAL_SEED_OFFSET + 123)
    x, labels = target.sample(4096, g)
    lab = labels if task.num_classes > 0 else None
    sigma = torch.exp(P_MEAN + P_STD * torch.randn(4096, generator=g))
    y = x + sigma[:, None] * torch.randn(x.shape, generator=g)
    sd = task.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    exact = GMMDenoiser(target)
    out = {}
    with torch.no_grad():
        for name, d in (("exact", exact), ("model", task.denoiser), ("identity", None),
                        ("guide", load_mixture_denoiser(task_name, "guide"))):
            x0 = y if d is None else d(y.double() if d is exact else y, sigma.to(
                torch.float64 if d is exact else torch.float32), lab).float()
            out[name] = float((weight * ((x0 - x) ** 2).mean(1)).mean())
    return out


@pytest.mark.parametrize("task_name", ["gmm2d-net", "cmix"])
def test_shipped_network_beats_guide_and_identity(task_name):
    loss = _heldout_losses(task_name)
    assert loss["exact"] < loss["model"] < loss["guide"] < loss["identity"]
    # the model is a real but imperfect network: within a factor 2 of the optimum
    assert loss["model"] < 2 * loss["exact"]


@pytest.mark.parametrize("task_name", ["gmm2d-net", "cmix"])
def test_shipped_json_records_training(task_name):
    from importlib import resources

    files = mixture_files(task_name)
    meta = json.loads(
        resources.files("diffgym.envs").joinpath("assets", files["config"]).read_text()
    )
    # the target's hash, the same on every platform (the draw's own, data_sha256, is the same
    # only where LAPACK returns the same eigenvectors: cmix's repeated eigenvalues)
    assert meta["task"] == task_name and meta["target_sha256"] == mixture_target_sha256(task_name)
    assert len(meta["data_sha256"]) == 64
    assert meta["eval_loss"]["model"] < meta["eval_loss"]["guide"]
    for key in ("model", "guide"):
        path = resources.files("diffgym.envs").joinpath("assets", files[key])
        assert path.is_file()


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def test_task_builders_are_deterministic():
    a, b = cmix_mixture(), cmix_mixture()
    for attr in ("means", "covs", "weights", "component_labels"):
        assert torch.equal(getattr(a, attr), getattr(b, attr))
    assert not torch.equal(cmix_mixture(1).means, a.means)
    assert torch.equal(gmm2d_target().means, gmm2d_target().means)
    for name in ("gmm2d-net", "cmix"):
        t1, t2 = make_task(name), make_task(name)
        x1, l1 = t1.sample_data(64, torch.Generator().manual_seed(0))
        x2, l2 = t2.sample_data(64, torch.Generator().manual_seed(0))
        assert torch.equal(x1, x2) and torch.equal(l1, l2)
        s1, s2 = t1.denoiser.state_dict(), t2.denoiser.state_dict()
        assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_cmix_structure():
    m = cmix_mixture()
    assert m.dim == 32 and m.num_components == 30 and m.num_classes == 10
    torch.testing.assert_close(m.label_probs(), torch.full((10,), 0.1, dtype=torch.float64))
    # low-rank-plus-isotropic: 28 eigenvalues at the floor, 4 above it
    lam = m.eigvals.sort(dim=1).values
    torch.testing.assert_close(lam[:, :28], torch.full((30, 28), 0.05**2, dtype=torch.float64))
    torch.testing.assert_close(
        lam[:, 28:], (torch.tensor([0.15, 0.25, 0.4, 0.6], dtype=torch.float64) ** 2 + 0.05**2)
        .expand(30, 4)
    )


def test_task_defaults():
    net = make_task("gmm2d-net")
    assert net.guide_kind == "autoguidance" and net.num_classes == 0 and net.data_shape == (2,)
    torch.testing.assert_close(net.target.means, gmm2d_target().means)
    assert len(net.churn_levels) > 1 and len(net.guidance_levels) > 1
    cmix = make_task("cmix")
    assert cmix.guide_kind == "cfg" and cmix.num_classes == 10 and cmix.data_shape == (32,)
    assert cmix.denoiser.label_dropout_supported and cmix.feature_kind == "vector"
    assert make_task("cmix", guide="autoguidance").guide_kind == "autoguidance"
    with pytest.raises(ValueError, match=r"unknown guide 'x'; allowed: uncond, autoguidance"):
        make_task("cmix", guide="x")
    with pytest.raises(TypeError, match=r"unknown override\(s\) \['std'\]"):
        make_task("gmm2d-net", std=0.2)


def test_gmm2d_net_4step_is_gmm2d_net_in_four_steps():
    from diffgym.benchmarks.evaluate import task_fingerprint
    from diffgym.envs.train_mixture import load_mixture_denoiser

    few, net = make_task("gmm2d-net-4step"), make_task("gmm2d-net")
    assert few.name == "gmm2d-net-4step" and few.num_steps == 4 and net.num_steps == 18
    # the same shipped networks (the loader's one cached instance), menus, target and metrics
    assert few.denoiser is load_mixture_denoiser("gmm2d-net", "model") is net.denoiser
    assert few.guide is load_mixture_denoiser("gmm2d-net", "guide") is net.guide
    for attr in ("churn_levels", "guidance_levels", "guide_kind", "metric_suite",
                 "headline_metric", "sigma_min", "sigma_max", "rho"):
        assert getattr(few, attr) == getattr(net, attr)
    torch.testing.assert_close(few.target.means, net.target.means)
    torch.testing.assert_close(few.sigmas(), net.replace(num_steps=4).sigmas())
    # deterministic, and a task of its own (cached evaluations are not shared with gmm2d-net)
    fp = task_fingerprint(few)
    assert task_fingerprint(make_task("gmm2d-net-4step")) == fp
    assert fp != task_fingerprint(net)
    with pytest.raises(TypeError, match=r"unknown override\(s\) \['std'\]"):
        make_task("gmm2d-net-4step", std=0.2)
    # its env's episodes are 4 transitions long, 7 NFE per sample with neutral actions
    import gymnasium as gym
    import numpy as np

    import diffgym  # noqa: F401  (registers the ids)

    env = gym.make_vec("diffgym/GMM2DNet4Step-v0", num_envs=3,
                       vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    neutral = np.zeros(env.action_space.shape, dtype=np.int64)
    for t in range(4):
        _, _, terminated, _, info = env.step(neutral)
        assert bool(np.all(np.asarray(terminated))) == (t == 3)
    assert np.asarray(info["episode_nfe"]).tolist() == [7, 7, 7]  # the terminal step's record
    env.close()


def test_shipped_cmix_loads_whatever_basis_lapack_gives_a_repeated_eigenvalue(monkeypatch):
    """cmix's covariances repeat an eigenvalue (28 of 32 at the floor), and LAPACK may return
    any orthonormal basis of that eigenspace (it differs between builds and CPUs). Such a basis
    changes the training draw, not the target: the shipped network still loads."""
    import diffgym.envs.train_mixture as tm

    real_eigh = torch.linalg.eigh
    turn = torch.linalg.qr(torch.randn(28, 28, generator=torch.Generator().manual_seed(5),
                                       dtype=torch.float64)).Q

    def other_basis(a, *args, **kwargs):
        vals, vecs = real_eigh(a, *args, **kwargs)
        if a.shape[-1] != 32:
            return vals, vecs
        vecs = vecs.clone()
        vecs[..., :28] = vecs[..., :28] @ turn  # ascending: the first 28 are the floor
        return vals, vecs

    before = mixture_training_data("cmix")[2], mixture_target_sha256("cmix")
    monkeypatch.setattr(torch.linalg, "eigh", other_basis)
    monkeypatch.setattr(tm, "_CACHE", {})
    monkeypatch.setattr(tm, "_SHA_CACHE", {})
    assert mixture_training_data("cmix")[2] != before[0]
    assert mixture_target_sha256("cmix") == before[1]
    assert load_mixture_denoiser("cmix", "model").num_classes == 10
