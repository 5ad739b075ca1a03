"""Tasks from user parts: ``edm-module`` stubs with ``.npz`` data and image folders, guidance
sources, shape and label checks, the ``"user"`` registry entry, and the env running on them."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn

from diffgym.envs import DiffusionSamplingEnv, GaussianMixture, GMMDenoiser, make_task
from diffgym.envs.user_task import (
    load_user_data,
    make_user_task,
)

MEANS = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.0, 2.0]])


class ImageShrink(nn.Module):
    """An EDM-convention stub for ``(1, 4, 4)`` images: the posterior mean for ``N(0, 0.25 I)``."""

    data_shape = (1, 4, 4)
    sigma_data = 0.5
    sigma_max = 20.0

    def forward(self, x, sigma, class_labels=None):
        return 0.25 / (0.25 + sigma.reshape(-1, 1, 1, 1) ** 2) * x


def save_module(module: nn.Module, path) -> str:
    torch.save(module, path)
    return f"edm-module:{path}"


@pytest.fixture
def cond_spec(tmp_path) -> str:
    mixture = GaussianMixture(MEANS, 0.3, component_labels=[0, 1, 1])
    return save_module(GMMDenoiser(mixture, sigma_max=20.0), tmp_path / "cond.pt")


@pytest.fixture
def vector_npz(tmp_path):
    x, labels = GaussianMixture(MEANS, 0.3, component_labels=[0, 1, 1]).sample(
        60, torch.Generator().manual_seed(0)
    )
    path = tmp_path / "data.npz"
    np.savez(path, x=x.numpy(), labels=labels.numpy())
    return path, labels


def run_env(task, steps: int = 3) -> None:
    env = DiffusionSamplingEnv(task, 4)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    assert obs.shape == (4, env.single_observation_space.shape[0])
    for _ in range(steps):
        actions = torch.as_tensor(env.action_space.sample())
        obs, reward, terminated, truncated, _ = env.step(actions)
        assert torch.isfinite(obs).all() and reward.shape == (4,)


def test_conditional_vector_task_with_cfg(cond_spec, vector_npz):
    path, labels = vector_npz
    task = make_user_task(cond_spec, path, num_steps=4)
    assert task.name == "user" and task.guide_kind == "cfg" and task.feature_kind == "vector"
    assert task.data_shape == (2,) and task.num_classes == 2
    assert task.sigma_min == 0.002 and task.sigma_max == 20.0 and task.num_steps == 4
    assert task.guidance_levels == (1.0, 1.5, 2.0, 3.0)
    counts = torch.bincount(labels, minlength=2).double()
    torch.testing.assert_close(task.label_probs, counts / counts.sum())
    x, y = task.sample_data(8, torch.Generator().manual_seed(1), torch.tensor([1] * 8))
    assert x.shape == (8, 2) and (y == 1).all()
    run_env(task)


def test_autoguidance_and_no_guide(cond_spec, vector_npz, tmp_path):
    path, _ = vector_npz
    weak = GMMDenoiser(GaussianMixture(MEANS, 0.8, component_labels=[0, 1, 1]), sigma_max=20.0)
    weak_spec = save_module(weak, tmp_path / "weak.pt")
    task = make_user_task(cond_spec, path, guide=weak_spec, num_steps=4, sigma_max=10.0)
    assert task.guide_kind == "autoguidance" and task.sigma_max == 10.0
    run_env(task)
    plain = make_user_task(cond_spec, path, guide=None, num_steps=4)
    assert plain.guide is None and plain.guidance_levels == (1.0,)
    run_env(plain)


def test_image_npz_uint8_nhwc_and_image_folder(tmp_path):
    spec = save_module(ImageShrink(), tmp_path / "img.pt")
    pixels = np.random.default_rng(0).integers(0, 256, size=(10, 4, 4, 1), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", x=pixels)
    task = make_user_task(spec, tmp_path / "img.npz", guide=None, num_steps=4)
    assert task.feature_kind == "image" and task.data_shape == (1, 4, 4) and task.num_classes == 0
    x, y = task.sample_data(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 4, 4) and (y == -1).all()
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    run_env(task)
    # The same pixels as PNG files read back identically
    image_mod = pytest.importorskip("PIL.Image")
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, p in enumerate(pixels):
        image_mod.fromarray(p[:, :, 0]).save(folder / f"{i:02d}.png")
    x_png, labels = load_user_data(folder, (1, 4, 4))
    assert labels is None
    x_npz, _ = load_user_data(tmp_path / "img.npz", (1, 4, 4))
    torch.testing.assert_close(x_png, x_npz)
    torch.testing.assert_close(
        x_npz[0, 0], torch.from_numpy(pixels[0, :, :, 0] / 127.5 - 1).float()
    )


def test_image_folder_with_class_subfolders(tmp_path):
    image_mod = pytest.importorskip("PIL.Image")
    for name, value in (("cat", 10), ("dog", 200)):
        (tmp_path / name).mkdir()
        for i in range(2):
            rgb = np.full((4, 4, 3), value + i, dtype=np.uint8)
            image_mod.fromarray(rgb).save(tmp_path / name / f"{i}.png")
    x, labels = load_user_data(tmp_path, (3, 4, 4))
    assert x.shape == (4, 3, 4, 4) and labels.tolist() == [0, 0, 1, 1]
    assert x[2, 0, 0, 0] == pytest.approx(200 / 127.5 - 1)


def test_data_errors(tmp_path, cond_spec):
    with pytest.raises(FileNotFoundError, match="data not found: .*missing.npz"):
        load_user_data(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", images=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="no array 'x'.*images"):
        load_user_data(tmp_path / "bad.npz")
    np.savez(tmp_path / "wrong.npz", x=np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(5,\).*data_shape is \(2,\)"):
        make_user_task(cond_spec, tmp_path / "wrong.npz")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="class-conditional .* has no labels"):
        make_user_task(cond_spec, tmp_path / "nolabels.npz")
    np.savez(tmp_path / "biglabel.npz", x=np.zeros((3, 2), dtype=np.float32), labels=[0, 1, 2])
    with pytest.raises(ValueError, match="has label 2; the denoiser's labels are 0..1"):
        make_user_task(cond_spec, tmp_path / "biglabel.npz")
    (tmp_path / "data.txt").write_text("1 2")
    with pytest.raises(ValueError, match="must be an .npz file or a folder"):
        load_user_data(tmp_path / "data.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_user_data(tmp_path / "empty")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e40])  # 1e40 overflows float32
def test_non_finite_rows_are_named(tmp_path, bad):
    """Before, one NaN row in --data let `sample` exit 0 and `train` fail a minute later."""
    x = np.zeros((6, 2))
    x[3, 1] = bad
    x[5, 0] = bad
    np.savez(tmp_path / "nan.npz", x=x)
    with pytest.raises(ValueError, match=r"nan.npz: sample row 3 has NaN/inf values.*2 of 6 rows "
                       r"are non-finite \(rows 3, 5\)"):
        load_user_data(tmp_path / "nan.npz")


def test_guide_errors(tmp_path, vector_npz):
    path, _ = vector_npz
    uncond = save_module(GMMDenoiser(GaussianMixture(MEANS, 0.3)), tmp_path / "uncond.pt")
    with pytest.raises(ValueError, match="guide='uncond'.*null label"):
        make_user_task(uncond, path)
    img = save_module(ImageShrink(), tmp_path / "img.pt")
    with pytest.raises(ValueError, match="does not match the denoiser"):
        make_user_task(uncond, path, guide=img)
    with pytest.raises(ValueError, match="expected one of diffusers:, edm-module:"):
        make_user_task(uncond, path, guide="uncnd")


def test_registered_user_task(cond_spec, vector_npz):
    path, _ = vector_npz
    task = make_task("user", denoiser=cond_spec, data=str(path), num_steps=3, churn_levels=[0.0])
    assert task.name == "user" and task.num_steps == 3 and task.churn_levels == (0.0,)
    run_env(task, steps=2)
    with pytest.raises(ValueError, match="needs denoiser=<spec> and data="):
        make_task("user")


def test_diffusers_model_in_the_env(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=3,
    )
    unet.save_pretrained(tmp_path / "model")
    diffusers.DDPMScheduler(num_train_timesteps=100).save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "diffgym.json").write_text('{"null_class": true}')
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 1, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", x=pixels, labels=np.array([0, 1, 0, 1, 0, 1]))
    task = make_user_task(f"diffusers:{tmp_path / 'model'}", tmp_path / "data.npz", num_steps=4)
    assert task.guide_kind == "cfg" and task.num_classes == 2 and task.feature_kind == "image"
    assert task.sigma_max == pytest.approx(task.denoiser.sigma_max)
    run_env(task, steps=4)


def test_cli_helpers(cond_spec, vector_npz):
    from diffgym.cli_args import add_user_task_arguments, user_task_overrides

    path, _ = vector_npz
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default=None)
    add_user_task_arguments(parser)
    assert user_task_overrides("gmm2d", parser.parse_args([])) == ("gmm2d", {})
    args = parser.parse_args(["--denoiser", cond_spec, "--data", str(path), "--guide", "none"])
    name, overrides = user_task_overrides("gmm2d", args)
    assert name == "user" and overrides == {
        "denoiser": cond_spec,
        "data": str(path),
        "guide": "none",
    }
    task = make_task(name, num_steps=3, **overrides)
    assert task.guide is None
    with pytest.raises(ValueError, match="--denoiser and --data go together"):
        user_task_overrides(None, parser.parse_args(["--denoiser", cond_spec]))
    with pytest.raises(ValueError, match="--denoiser and --data go together"):
        user_task_overrides(None, parser.parse_args(["--guide", "uncond"]))
