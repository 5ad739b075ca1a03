"""Features extractor (vector / image) and the neutral-action initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from diffgym.agents import (
    DiffusionFeaturesExtractor,
    SigmaEmbedding,
    make_agent,
    neutral_probability,
)
from diffgym.agents.policies import action_menu_sizes
from diffgym.envs import DiffusionSamplingEnv, obs_dim


def _rollout_obs(env: DiffusionSamplingEnv, steps: int = 18) -> torch.Tensor:
    """Observations along neutral trajectories (every step index of an episode)."""
    obs, _ = env.reset(seed=0)
    out = [obs]
    zeros = np.zeros(env.action_space.shape, dtype=np.int64)
    for _ in range(steps - 1):
        obs, *_ = env.step(zeros)
        out.append(obs)
    return torch.cat(out)


@pytest.mark.parametrize("margin", [1.0, 2.5])
def test_initial_policy_prefers_the_neutral_action(margin, gmm_env):
    agent = make_agent("ppo", gmm_env, seed=0, policy_kwargs={"neutral_bias": margin})
    obs = _rollout_obs(gmm_env)
    with torch.no_grad():
        dist = agent.policy.get_distribution(obs)
        greedy = agent.policy._predict(obs, deterministic=True)
    assert bool((greedy == 0).all())
    for j, n in enumerate(action_menu_sizes(agent.action_space)):
        p0 = dist.distribution[j].probs[:, 0]
        assert bool((p0 >= neutral_probability(margin, n) - 1e-6).all())
        torch.testing.assert_close(p0, torch.full_like(p0, neutral_probability(margin, n)))


def test_neutral_bias_none_keeps_sb3_init(gmm_env):
    agent = make_agent("ppo", gmm_env, seed=0, policy_kwargs={"neutral_bias": None})
    assert agent.policy.action_net.weight.abs().sum() > 0
    with pytest.raises(ValueError, match="neutral_bias must be finite"):
        make_agent("ppo", gmm_env, policy_kwargs={"neutral_bias": math.inf})


def test_neutral_bias_on_a_single_knob():
    env = DiffusionSamplingEnv("gmm2d", 2, churn_levels=(0.0,))
    assert isinstance(env.single_action_space, spaces.Discrete)
    agent = make_agent("reinforce", env, n_steps=18, policy_kwargs={"neutral_bias": 3.0})
    bias = agent.policy.action_net.bias.detach()
    assert bias.tolist() == [3.0, 0.0, 0.0, 0.0, 0.0]
    agent.learn(36)  # Discrete actions through REINFORCE's update


def test_vector_features(gmm_env):
    space = gmm_env.single_observation_space
    ext = DiffusionFeaturesExtractor(space, data_shape=(2,), num_classes=0, features_dim=16)
    obs = _rollout_obs(gmm_env, 3)
    assert ext(obs).shape == (obs.shape[0], 16)
    emb = SigmaEmbedding(4)(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))


def test_image_features(image_task):
    env = DiffusionSamplingEnv(image_task, 4)
    agent = make_agent("ppo", env, env_id="diffgym/Digits-v0", n_steps=6, batch_size=24)
    ext = agent.policy.features_extractor
    assert ext.feature_kind == "image" and isinstance(ext.sample_net, torch.nn.Sequential)
    obs, _ = env.reset(seed=0)
    assert ext(obs).shape == (4, ext.features_dim)
    agent.learn(48)


@pytest.mark.parametrize("env_id", ["diffgym/GMM2D-v0", "diffgym/Digits-v0"])
def test_time_only_policy_ignores_the_sample(env_id, gmm_env, image_task):
    """``sample_input=False``: the features (so every action distribution and the value) are
    the same for any sample at one noise level; a change of noise level still changes them."""
    env = gmm_env if env_id.startswith("diffgym/GMM") else DiffusionSamplingEnv(image_task, 4)
    agent = make_agent("reinforce", env, env_id=env_id, n_steps=18, policy_kwargs={
        "neutral_bias": None, "features_extractor_kwargs": {"sample_input": False}})
    ext = agent.policy.features_extractor
    assert ext.sample_input is False and not hasattr(ext, "sample_net")
    obs, _ = env.reset(seed=0)
    moved = obs.clone()
    d = math.prod(ext.data_shape)
    moved[:, :d] = torch.randn_like(moved[:, :d]) * 3.0  # other samples, same conditioning
    with torch.no_grad():
        torch.testing.assert_close(ext(moved), ext(obs), rtol=0, atol=0)
        probs = [c.probs for c in agent.policy.get_distribution(moved).distribution]
        same = [c.probs for c in agent.policy.get_distribution(obs).distribution]
        for a, b in zip(probs, same, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        later = obs.clone()
        later[:, d] += 1.0  # another c_noise
        assert not torch.equal(ext(later), ext(obs))
    full = make_agent("reinforce", env, env_id=env_id, n_steps=18,
                      policy_kwargs={"neutral_bias": None})
    with torch.no_grad():  # the default extractor does see the sample
        assert not torch.equal(full.policy.features_extractor(moved),
                               full.policy.features_extractor(obs))
    with pytest.raises(ValueError, match="sample_input must be true or false, got 'no'"):
        DiffusionFeaturesExtractor(env.single_observation_space, data_shape=ext.data_shape,
                                   num_classes=ext.num_classes, sample_input="no")


def test_extractor_rejects_mismatches():
    space = spaces.Box(-1, 1, (obs_dim((2,), 0),), dtype=np.float32)
    with pytest.raises(ValueError, match="does not match data_shape"):
        DiffusionFeaturesExtractor(space, data_shape=(3,), num_classes=0)
    with pytest.raises(ValueError, match="unknown feature_kind 'graph'"):
        DiffusionFeaturesExtractor(space, data_shape=(2,), num_classes=0, feature_kind="graph")
    with pytest.raises(ValueError, match="image features need data_shape"):
        DiffusionFeaturesExtractor(space, data_shape=(2,), num_classes=0, feature_kind="image")


@pytest.mark.parametrize("churn_levels", [None, (0.0,)], ids=["multi-discrete", "discrete"])
def test_action_distributions_skip_argument_validation_only_locally(churn_levels):
    """The policy's categoricals are built with validate_args=False (no per-step checks) and
    equal SB3's own distribution; torch's global default is left alone."""
    kwargs = {} if churn_levels is None else {"churn_levels": churn_levels}
    env = DiffusionSamplingEnv("gmm2d", 4, **kwargs)
    agent = make_agent("ppo", env, seed=0, policy_kwargs={"neutral_bias": None})
    policy = agent.policy
    obs = _rollout_obs(env, steps=3)
    default = torch.distributions.Distribution._validate_args
    with torch.no_grad():
        dist = policy.get_distribution(obs)
        actions = dist.get_actions()
        log_prob, entropy = dist.log_prob(actions), dist.entropy()
        logits = policy.action_net(policy.mlp_extractor.forward_actor(policy.extract_features(obs)))
    parts = dist.distribution if isinstance(dist.distribution, list) else [dist.distribution]
    assert all(p._validate_args is False for p in parts)
    assert torch.distributions.Distribution._validate_args is default
    reference = type(dist)(*([list(dist.action_dims)] if isinstance(dist.distribution, list)
                             else [dist.action_dim]))
    reference.proba_distribution(action_logits=logits)
    torch.testing.assert_close(log_prob, reference.log_prob(actions))
    torch.testing.assert_close(entropy, reference.entropy())
