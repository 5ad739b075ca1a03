"""EDM preconditioning, the digits U-Net, and the shipped digits denoiser."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from diffgym.envs.data import load_digits_data
from diffgym.envs.networks import DigitsNet, EDMPrecond, build_digits_denoiser
from diffgym.envs.train_denoiser import (
    CONFIG_FILE,
    GUIDE_FILE,
    MODEL_FILE,
    default_assets_dir,
    load_digits_denoiser,
    train_digits_denoiser,
)

SHAPE = (1, 8, 8)
TINY_NET = {"model_channels": 4, "emb_channels": 8, "num_freqs": 2}


class StubF(nn.Module):
    """``F`` that records its inputs and returns a fixed tensor."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=out.dtype))
        self.out = out
        self.seen: tuple | None = None

    def forward(self, x_in, c_noise, labels):
        self.seen = (x_in, c_noise, labels)
        return self.out



def _tiny(dtype: torch.dtype = torch.float32) -> EDMPrecond:
    torch.manual_seed(0)
    return build_digits_denoiser({"sigma_data": 0.5, "network": TINY_NET}).to(dtype)


def test_precond_matches_edm_formula():
    g = torch.Generator().manual_seed(0)
    b, sd = 5, 0.6
    x = torch.randn(b, *SHAPE, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.002, 0.1, 0.6, 3.0, 80.0], dtype=torch.float64)
    f_out = torch.randn(b, *SHAPE, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 3, 9, 1, 2])
    stub = StubF(f_out)
    D = EDMPrecond(
        model=stub, sigma_data=sd, data_shape=SHAPE, num_classes=10, label_dropout_supported=True
    )
    out = D(x, sigma, labels)
    s = sigma.reshape(-1, 1, 1, 1)
    c_skip = sd**2 / (s**2 + sd**2)
    c_out = s * sd / (s**2 + sd**2).sqrt()
    torch.testing.assert_close(out, c_skip * x + c_out * f_out, rtol=1e-12, atol=1e-12)
    x_in, c_noise, seen_labels = stub.seen
    torch.testing.assert_close(x_in, x / (s**2 + sd**2).sqrt(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c_noise, sigma.log() / 4, rtol=1e-12, atol=1e-12)
    assert torch.equal(seen_labels, labels)
    D(x, sigma, None)
    assert stub.seen[2] is None
    # Limits: pure skip at sigma -> 0, pure network output (times sigma_data) at sigma -> inf
    assert math.isclose(float(c_skip[0]), 1.0, rel_tol=1e-4)
    assert math.isclose(float(c_out[-1]), sd, rel_tol=1e-4)


def test_precond_validates_arguments():
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        EDMPrecond(
            model=nn.Identity(),
            sigma_data=0.0,
            data_shape=SHAPE,
            num_classes=0,
            label_dropout_supported=False,
        )
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        EDMPrecond(
            model=nn.Identity(),
            sigma_data=0.5,
            data_shape=SHAPE,
            num_classes=0,
            sigma_min=1.0,
            sigma_max=0.5,
            label_dropout_supported=False,
        )


@pytest.mark.parametrize("model_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float64])
def test_digits_net_shapes_and_dtype(model_dtype, x_dtype):
    D = _tiny(model_dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, *SHAPE, generator=g).to(x_dtype)
    sigma = torch.linspace(0.01, 10.0, 7, dtype=x_dtype)
    out = D(x, sigma, torch.arange(7))
    assert out.shape == x.shape and out.dtype == x_dtype
    out_none = D(x, sigma, None)
    assert out_none.shape == x.shape and torch.isfinite(out_none).all()
    assert D.data_shape == SHAPE and D.num_classes == 10 and D.label_dropout_supported


def test_null_label_matches_explicit_null_index():
    D = _tiny()
    x, sigma = torch.randn(3, *SHAPE), torch.ones(3)
    null = torch.full((3,), D.num_classes)
    torch.testing.assert_close(D(x, sigma, None), D.precondition(x, sigma, null))


def test_bad_labels_and_shapes_raise():
    D = _tiny()
    x, sigma = torch.zeros(2, *SHAPE), torch.ones(2)
    with pytest.raises(ValueError, match="class label 10 is out of range; allowed labels are 0..9"):
        D(x, sigma, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="class label -1 is out of range"):
        D(x, sigma, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="x must have shape"):
        D(torch.zeros(2, 1, 4, 4), sigma)
    with pytest.raises(ValueError, match="sigma must have shape"):
        D(x, torch.ones(3))


def test_build_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown config keys"):
        build_digits_denoiser({"sigma_data": 0.5, "bogus": 1})
    with pytest.raises(ValueError, match="unknown network config keys"):
        build_digits_denoiser({"sigma_data": 0.5, "network": {"widht": 3}})
    with pytest.raises(ValueError, match="img_resolution=6"):
        DigitsNet(img_resolution=6, in_channels=1, num_classes=10, channel_mult=[1, 2, 2])


def test_shipped_model_loads_and_denoises():
    model = load_digits_denoiser("model")
    guide = load_digits_denoiser("guide")
    assert load_digits_denoiser("model") is model  # cached
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.data_shape == SHAPE and model.num_classes == 10 and model.label_dropout_supported
    x, labels, sha = load_digits_data()
    meta = json.loads((default_assets_dir() / CONFIG_FILE).read_text())
    assert meta["data_sha256"] == sha
    assert meta["snapshots"]["guide"]["step"] < meta["snapshots"]["model"]["step"]
    assert sum(p.numel() for p in model.parameters()) == meta["num_params"]
    g = torch.Generator().manual_seed(0)
    x, labels = x[:512], labels[:512]
    sigma = torch.full((x.shape[0],), 0.5)
    x_noisy = x + 0.5 * torch.randn(x.shape, generator=g)
    mse_identity = float((x_noisy - x).square().mean())
    with torch.no_grad():
        mse_model = float((model(x_noisy, sigma, labels) - x).square().mean())
        mse_guide = float((guide(x_noisy, sigma, labels) - x).square().mean())
        mse_uncond = float((model(x_noisy, sigma, None) - x).square().mean())
    assert mse_model < mse_guide < mse_identity
    assert mse_model < mse_uncond < mse_identity


def test_load_rejects_unknown_which_and_missing_files(tmp_path):
    allowed = r"unknown denoiser 'bogus'; allowed: \['guide', 'model'\]"
    with pytest.raises(ValueError, match=allowed):
        load_digits_denoiser("bogus")
    with pytest.raises(FileNotFoundError, match="digits_denoiser.json.*diffgym train-denoiser"):
        load_digits_denoiser(assets_dir=tmp_path / "nowhere")


def test_tiny_training_writes_loadable_files(tmp_path):
    rng_before = torch.get_rng_state()
    kwargs = dict(seed=3, steps=4, batch_size=16, guide_fraction=0.5, network=TINY_NET)
    meta = train_digits_denoiser(tmp_path / "a", progress=False, **kwargs)
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    for name in (MODEL_FILE, GUIDE_FILE, CONFIG_FILE):
        assert (tmp_path / "a" / name).is_file()
    assert not list((tmp_path / "a").glob("*.tmp"))
    assert json.loads((tmp_path / "a" / CONFIG_FILE).read_text()) == meta
    assert meta["snapshots"]["model"]["step"] == 4 and meta["snapshots"]["guide"]["step"] == 2
    assert meta["data_sha256"] == load_digits_data()[2]
    assert meta["seed"] == 3 and math.isfinite(meta["final_train_loss"])
    model = load_digits_denoiser("model", assets_dir=tmp_path / "a")
    guide = load_digits_denoiser("guide", assets_dir=tmp_path / "a")
    assert model is not guide
    # Deterministic: the same seed gives the same weights
    train_digits_denoiser(tmp_path / "b", progress=False, **kwargs)
    again = load_digits_denoiser("model", assets_dir=tmp_path / "b")
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)
    # A json recorded for other data is refused
    meta["data_sha256"] = "0" * 64
    (tmp_path / "b" / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="sha256"):
        load_digits_denoiser("guide", assets_dir=tmp_path / "b")


def test_training_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="guide_fraction must be in"):
        train_digits_denoiser(tmp_path, guide_fraction=1.0, progress=False)
    with pytest.raises(ValueError, match="label_dropout must be in"):
        train_digits_denoiser(tmp_path, label_dropout=1.0, progress=False)
    with pytest.raises(ValueError, match="batch_size must be in"):
        train_digits_denoiser(tmp_path, batch_size=0, progress=False)
