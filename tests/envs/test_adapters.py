"""Adapters to the EDM convention: exact values on Gaussian data for ε- and v-prediction stubs,
the σ ↔ t mapping, a tiny random ``UNet2DModel`` through ``save_pretrained`` / ``load_denoiser``,
``edm-module`` round trips, spec errors, and the trajectory loop running on adapted models."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from diffgym.envs import BatchNoise, GaussianMixture, GMMDenoiser, UncondBranch, sample
from diffgym.envs.adapters import (
    DiffusersDenoiser,
    EDMModuleDenoiser,
    load_denoiser,
    sigmas_from_alphas_cumprod,
)
from diffgym.envs.schedule import edm_sigmas

DATA_STD = 0.7  # std s of the Gaussian data N(0, s^2 I) the stubs are exact for


def linear_alphas_cumprod(num_steps: int = 1000) -> torch.Tensor:
    """DDPM's linear schedule (beta 1e-4 .. 0.02), in float64."""
    betas = torch.linspace(1e-4, 0.02, num_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


class ExactGaussianUNet(nn.Module):
    """A stub with ``UNet2DModel``'s call signature that is exact for data ``N(0, s^2 I)``.

    With ``a = sqrt(ā_t)``, ``b = sqrt(1 - ā_t)`` and ``x_t = a x0 + b ε``:
    ``E[ε | x_t] = b x_t / (a² s² + b²)`` and ``E[v | x_t] = a b (1 - s²) x_t / (a² s² + b²)``.
    ``σ(t)`` is recomputed here from the schedule by interpolating ``log σ`` (numpy, float64).
    """

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str, std: float) -> None:
        super().__init__()
        self.log_sigmas = np.log(np.sqrt((1 - alphas_cumprod.numpy()) / alphas_cumprod.numpy()))
        self.prediction_type = prediction_type
        self.std = std
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))  # sets the model dtype

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        steps = np.arange(len(self.log_sigmas))
        sigma = np.exp(np.interp(timestep.numpy(), steps, self.log_sigmas))
        sigma = torch.as_tensor(sigma).reshape(-1, 1, 1, 1)
        a, b = 1 / torch.sqrt(1 + sigma**2), sigma / torch.sqrt(1 + sigma**2)
        denom = a**2 * self.std**2 + b**2
        if self.prediction_type == "epsilon":
            out = b * sample / denom
        else:
            out = a * b * (1 - self.std**2) * sample / denom
        return (out,)


def gaussian_posterior_mean(x: torch.Tensor, sigma: torch.Tensor, std: float) -> torch.Tensor:
    return std**2 / (std**2 + sigma.reshape(-1, 1, 1, 1) ** 2) * x


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_diffusers_adapter_exact_on_gaussian_data(prediction_type, generator):
    ac = linear_alphas_cumprod()
    stub = ExactGaussianUNet(ac, prediction_type, DATA_STD)
    D = DiffusersDenoiser(
        stub, alphas_cumprod=ac, prediction_type=prediction_type, data_shape=(2, 4, 4)
    )
    assert D.num_classes == 0 and not D.label_dropout_supported
    sigma = torch.tensor([0.02, 0.3, 1.0, 5.0, 40.0, 150.0], dtype=torch.float64)
    assert float(sigma.min()) > D.sigma_min and float(sigma.max()) < D.sigma_max
    x = torch.randn(6, 2, 4, 4, generator=generator, dtype=torch.float64) * 3
    out = D(x, sigma)
    assert out.shape == x.shape and out.dtype == torch.float64
    torch.testing.assert_close(
        out, gaussian_posterior_mean(x, sigma, DATA_STD), rtol=1e-9, atol=1e-9
    )


def test_sigma_range_and_t_mapping_round_trip():
    ac = linear_alphas_cumprod()
    D = DiffusersDenoiser(
        ExactGaussianUNet(ac, "epsilon", 1.0), alphas_cumprod=ac, data_shape=(1, 2, 2)
    )
    sig = sigmas_from_alphas_cumprod(ac)
    assert D.sigma_min == pytest.approx(float(sig[0])) and D.sigma_max == pytest.approx(
        float(sig[-1])
    )
    assert D.sigma_min == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)))
    # integer timesteps map to the schedule's sigmas and back
    t_int = torch.tensor([0.0, 1.0, 250.0, 998.0, 999.0], dtype=torch.float64)
    torch.testing.assert_close(D.t_to_sigma(t_int), sig[t_int.long()])
    torch.testing.assert_close(D.sigma_to_t(sig[t_int.long()]), t_int)
    # continuous values round-trip both ways
    t = torch.linspace(0, 999, 97, dtype=torch.float64)
    torch.testing.assert_close(D.sigma_to_t(D.t_to_sigma(t)), t)
    s = torch.logspace(math.log10(D.sigma_min), math.log10(D.sigma_max), 50, dtype=torch.float64)
    torch.testing.assert_close(D.t_to_sigma(D.sigma_to_t(s)), s)
    # out-of-range sigmas are clamped to the trained timesteps
    far = torch.tensor([1e-5, 1e4], dtype=torch.float64)
    torch.testing.assert_close(D.sigma_to_t(far), torch.tensor([0.0, 999.0], dtype=torch.float64))
    x = torch.randn(2, 1, 2, 2, dtype=torch.float64)
    assert torch.isfinite(D(x, far)).all()


def test_diffusers_adapter_input_errors():
    ac = linear_alphas_cumprod(10)
    stub = ExactGaussianUNet(ac, "epsilon", 1.0)
    with pytest.raises(ValueError, match="unknown prediction_type 'x0'"):
        DiffusersDenoiser(stub, alphas_cumprod=ac, prediction_type="x0", data_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="strictly in"):
        DiffusersDenoiser(stub, alphas_cumprod=torch.cat([ac, torch.zeros(1)]), data_shape=(1,))
    with pytest.raises(ValueError, match="strictly decreasing"):
        DiffusersDenoiser(stub, alphas_cumprod=ac.flip(0), data_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="data_shape is required"):
        DiffusersDenoiser(stub, alphas_cumprod=ac)
    with pytest.raises(ValueError, match="null_class=True needs"):
        DiffusersDenoiser(stub, alphas_cumprod=ac, data_shape=(1, 2, 2), null_class=True)
    D = DiffusersDenoiser(stub, alphas_cumprod=ac, data_shape=(1, 2, 2))
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="unconditional denoiser"):
        D(x, torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="x must have shape"):
        D(torch.zeros(3, 2, 2), torch.ones(3))


def test_half_precision_model_gets_float32_timesteps():
    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones((), dtype=torch.float16))
            self.seen = None

        def forward(self, sample, timestep, class_labels=None, return_dict=True):
            self.seen = (sample.dtype, timestep.dtype, timestep.clone())
            return (sample * self.weight,)

    ac = linear_alphas_cumprod()
    rec = Recorder()
    D = DiffusersDenoiser(rec, alphas_cumprod=ac, data_shape=(1, 2, 2))
    sigma = D.t_to_sigma(torch.tensor([998.5, 3.25], dtype=torch.float64)).float()
    out = D(torch.ones(2, 1, 2, 2), sigma)
    assert out.dtype == torch.float32
    assert rec.seen[0] == torch.float16 and rec.seen[1] == torch.float32
    torch.testing.assert_close(rec.seen[2], torch.tensor([998.5, 3.25]), rtol=0, atol=1e-3)


# --------------------------------------------------------------------------------------------
# A tiny randomly initialised UNet2DModel
# --------------------------------------------------------------------------------------------


def tiny_unet(num_class_embeds: int | None = None, out_channels: int = 1):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=out_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_class_embeds,
    ).eval()


def save_scheduler(path, **config) -> None:
    from diffusers import DDPMScheduler

    DDPMScheduler(**config).save_pretrained(path)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_tiny_unet_save_and_load(tmp_path, prediction_type, generator):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path)
    save_scheduler(tmp_path, num_train_timesteps=100, prediction_type=prediction_type)
    D = load_denoiser(f"diffusers:{tmp_path}")
    assert isinstance(D, DiffusersDenoiser)
    assert D.data_shape == (1, 8, 8) and D.num_classes == 0 and D.sigma_data == 0.5
    assert D.prediction_type == prediction_type and D.num_train_timesteps == 100
    assert not any(p.requires_grad for p in D.parameters())
    # Against the formula, at an integer timestep t = 40
    t = torch.full((3,), 40.0, dtype=torch.float64)
    sigma = D.t_to_sigma(t).float()
    x = torch.randn(3, 1, 8, 8, generator=generator)
    out = D(x, sigma)
    assert out.shape == (3, 1, 8, 8) and out.dtype == torch.float32
    s = sigma.reshape(-1, 1, 1, 1)
    with torch.no_grad():
        raw = unet(x / torch.sqrt(1 + s**2), t.float()).sample
    if prediction_type == "epsilon":
        expected = x - s * raw
    else:
        expected = x / (1 + s**2) - s / torch.sqrt(1 + s**2) * raw
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_tiny_unet_pipeline_layout_and_sidecar(tmp_path):
    unet = tiny_unet(num_class_embeds=3)
    unet.save_pretrained(tmp_path / "unet")
    save_scheduler(
        tmp_path / "scheduler", num_train_timesteps=50, beta_schedule="squaredcos_cap_v2"
    )
    (tmp_path / "unet" / "diffgym.json").write_text(json.dumps({"null_class": True}))
    for path in (tmp_path, tmp_path / "unet"):
        D = load_denoiser(f"diffusers:{path}")
        assert D.num_classes == 2 and D.label_dropout_supported and D.null_class
    # class_labels=None uses the last embedding, the null class
    alphas_cumprod = 1 / (1 + D.log_sigmas.exp() ** 2)
    plain = DiffusersDenoiser(unet, alphas_cumprod=alphas_cumprod)
    assert plain.num_classes == 3 and not plain.label_dropout_supported
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(D(x, sigma), plain(x, sigma, torch.tensor([2, 2])))
    torch.testing.assert_close(UncondBranch(D)(x, sigma, torch.tensor([0, 1])), D(x, sigma, None))
    assert not torch.allclose(D(x, sigma, torch.tensor([0, 1])), D(x, sigma, None))
    with pytest.raises(ValueError, match="no null class"):
        plain(x, sigma)
    with pytest.raises(ValueError, match="out of range"):
        D(x, sigma, torch.tensor([0, 2]))


def test_learned_variance_channels_are_dropped(tmp_path):
    unet = tiny_unet(out_channels=2)
    D = DiffusersDenoiser(unet, alphas_cumprod=linear_alphas_cumprod(100))
    assert D.data_shape == (1, 8, 8)
    assert D(torch.randn(2, 1, 8, 8), torch.tensor([0.1, 10.0])).shape == (2, 1, 8, 8)


def test_diffusers_loader_errors(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    with pytest.raises(FileNotFoundError, match="no UNet2DModel config.json"):
        load_denoiser(f"diffusers:{tmp_path}")
    tiny_unet().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no DDPM scheduler config found"):
        load_denoiser(f"diffusers:{tmp_path}")
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError, match=r"pip install 'diffgym\[diffusers\]'"):
        load_denoiser(f"diffusers:{tmp_path}")


def test_tiny_unet_runs_in_the_trajectory_loop(tmp_path):
    tiny_unet(num_class_embeds=4).save_pretrained(tmp_path)
    save_scheduler(tmp_path, num_train_timesteps=100)
    D = load_denoiser(f"diffusers:{tmp_path}", device="cpu")
    sigmas = edm_sigmas(3, D.sigma_min, D.sigma_max, 7.0)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        res = sample(D, sigmas, noise=BatchNoise(3, seed=0), data_shape=D.data_shape, labels=labels)
    assert res.x.shape == (3, 1, 8, 8) and torch.isfinite(res.x).all()
    assert res.nfe.tolist() == [5, 5, 5]  # Heun: 2 NFE per step, 1 on the last


# --------------------------------------------------------------------------------------------
# EDM-convention modules and specs
# --------------------------------------------------------------------------------------------


def small_gmm_denoiser() -> GMMDenoiser:
    means = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.0, 2.0]])
    return GMMDenoiser(GaussianMixture(means, 0.3, component_labels=[0, 1, 1]), sigma_max=20.0)


def test_edm_module_round_trip(tmp_path, generator):
    gmm = small_gmm_denoiser()
    path = tmp_path / "module.pt"
    torch.save(gmm, path)
    D = load_denoiser(f"edm-module:{path}")
    assert isinstance(D, EDMModuleDenoiser)
    assert D.data_shape == (2,) and D.num_classes == 2 and D.label_dropout_supported
    assert D.sigma_max == 20.0 and D.sigma_min == 0.002 and D.sigma_data == gmm.sigma_data
    x = torch.randn(4, 2, generator=generator)
    sigma = torch.tensor([0.1, 0.5, 1.0, 4.0])
    labels = torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(D(x, sigma, labels), gmm(x, sigma, labels), rtol=0, atol=0)
    torch.testing.assert_close(D(x, sigma), gmm(x, sigma), rtol=0, atol=0)
    with torch.no_grad():
        res = sample(D, edm_sigmas(4), noise=BatchNoise(4, seed=1), data_shape=(2,), labels=labels)
    assert res.x.shape == (4, 2) and torch.isfinite(res.x).all()


def test_edm_module_attributes_from_keywords():
    class Shrink(nn.Module):
        def forward(self, x, sigma, class_labels=None):
            return x / (1 + sigma[:, None] ** 2)

    D = EDMModuleDenoiser(Shrink(), data_shape=(3,), sigma_data=1.0, sigma_max=10.0)
    assert D.data_shape == (3,) and D.sigma_data == 1.0 and D.sigma_max == 10.0
    assert D.num_classes == 0 and not D.label_dropout_supported
    torch.testing.assert_close(D(torch.ones(2, 3), torch.ones(2)), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="data_shape is required"):
        EDMModuleDenoiser(Shrink())
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        EDMModuleDenoiser(Shrink(), data_shape=(3,), sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(TypeError, match="unknown attribute"):
        EDMModuleDenoiser(Shrink(), data_shape=(3,), sigmadata=1.0)

    class WrongShape(nn.Module):
        def forward(self, x, sigma, class_labels=None):
            return x[:, :2]

    with pytest.raises(ValueError, match="returned shape"):
        EDMModuleDenoiser(WrongShape(), data_shape=(3,))(torch.ones(2, 3), torch.ones(2))


def test_edm_module_file_must_hold_a_module(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        load_denoiser(f"edm-module:{path}")


@pytest.mark.parametrize("spec", ["", "/some/path", "hub:google/ddpm-cifar10-32", "diffusers:", 3])
def test_bad_specs(spec):
    with pytest.raises(ValueError, match="expected one of diffusers:, edm-module:"):
        load_denoiser(spec)


@pytest.mark.parametrize("prefix", ["diffusers", "edm-module"])
def test_missing_path(tmp_path, prefix):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"{prefix} path not found: .*nope"):
        load_denoiser(f"{prefix}:{missing}")
