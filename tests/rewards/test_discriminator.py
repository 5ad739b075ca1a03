"""The sigma-conditioned discriminator: contract, conditioning, and the exact log-ratio check."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces

from diffgym.envs import DiffusionSamplingEnv, to_sb3
from diffgym.rewards import NoiseConditionedDiscriminator


@pytest.mark.parametrize("task", ["gmm2d", "gmm2d-bias"])
def test_vector_logit_shape(task, device):
    env = DiffusionSamplingEnv(task, 8, device=device)
    disc = NoiseConditionedDiscriminator.for_env(to_sb3(env)).to(device)
    assert disc.feature_kind == "vector"
    obs, _ = env.reset(seed=0)
    acts = torch.zeros(8, 2, device=device)
    out = disc(obs, acts, obs, torch.zeros(8, device=device))
    assert out.shape == (8,) and out.dtype == torch.float32 and out.device == obs.device


def test_image_logit_shape_with_labels():
    data_shape, num_classes = (1, 8, 8), 10
    dim = 64 + 3 + num_classes
    space = spaces.Box(-1e3, 1e3, (dim,))
    disc = NoiseConditionedDiscriminator(
        space, spaces.MultiDiscrete([4, 4]), data_shape=data_shape, num_classes=num_classes,
        feature_kind="image",
    )
    obs = torch.randn(5, dim)
    obs[:, 67:] = torch.nn.functional.one_hot(torch.arange(5), 10).float()
    out = disc(obs, torch.zeros(5, 2), obs, torch.zeros(5))
    assert out.shape == (5,)
    assert any(isinstance(m, torch.nn.Conv2d) for m in disc.modules())
    # the label changes the logit once FiLM is away from its identity initialisation
    for p in disc.parameters():
        torch.nn.init.normal_(p, std=0.1)
    other = obs.clone()
    other[:, 67:] = torch.nn.functional.one_hot((torch.arange(5) + 1) % 10, 10).float()
    assert not torch.allclose(disc.logit(obs), disc.logit(other))


def test_logit_depends_on_sigma_and_ignores_state_and_action():
    env = DiffusionSamplingEnv("gmm2d", 4)
    disc = NoiseConditionedDiscriminator.for_env(env)
    for p in disc.parameters():
        torch.nn.init.normal_(p, std=0.1)
    obs, _ = env.reset(seed=0)
    base = disc(obs, torch.zeros(4, 2), obs, torch.zeros(4))
    torch.testing.assert_close(disc(obs * 7, torch.ones(4, 2), obs, torch.ones(4)), base)
    shifted = obs.clone()
    shifted[:, 2] -= 1.0  # another c_noise
    assert not torch.allclose(disc.logit(shifted), base)


def test_bad_construction():
    space = spaces.Box(-1.0, 1.0, (5,))
    act = spaces.Discrete(2)
    with pytest.raises(ValueError, match=r"unknown feature_kind 'graph'.*vector, image"):
        NoiseConditionedDiscriminator(space, act, data_shape=(2,), feature_kind="graph")
    with pytest.raises(ValueError, match="does not match data_shape"):
        NoiseConditionedDiscriminator(space, act, data_shape=(3,))
    with pytest.raises(ValueError, match=r"needs data_shape \(channels, height, width\)"):
        NoiseConditionedDiscriminator(space, act, data_shape=(2,), feature_kind="image")


def test_logit_matches_exact_log_ratio_fast(load_script):
    """Fast version of benchmarks/scripts/discriminator_check.py: Pearson >= 0.95 at every
    sigma."""
    check = load_script("discriminator_check")
    QUICK_STEPS, CheckConfig, run_check = check.QUICK_STEPS, check.CheckConfig, check.run_check
    config = CheckConfig(
        pair="bias", steps=QUICK_STEPS, train_steps=400, batch_size=128, eval_samples=1000,
        hidden_sizes=(128, 128), seed=0,
    )
    result = run_check(config)
    assert [r["step"] for r in result["rows"]] == list(QUICK_STEPS)
    for row in result["rows"]:
        assert row["pearson"] >= 0.95, row
        assert row["rmse"] < 0.5 * row["ratio_std"] + 0.05, row
