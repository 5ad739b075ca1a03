"""The agent registry, per-task hyperparameter files and make_agent."""

from __future__ import annotations

import pytest
import torch
import yaml
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.vec_env import VecMonitor

from diffgym.agents import (
    AGENTS,
    REINFORCE,
    AgentConfig,
    DiffusionFeaturesExtractor,
    DiffusionPolicy,
    agent_config,
    load_hyperparams,
    make_agent,
)
from diffgym.agents.registry import HYPERPARAMS_DIR
from diffgym.envs import DiffusionSamplingEnv, to_sb3
from diffgym.envs.registration import ENV_IDS

# Small rollouts so that a few hundred steps are several updates on 8 envs.
SMALL = {
    "ppo": {"n_steps": 18, "batch_size": 72, "n_epochs": 2},
    "reinforce": {"n_steps": 18},
    "a2c": {"n_steps": 18},
    "trpo": {"n_steps": 18, "batch_size": 72, "n_critic_updates": 2, "cg_max_steps": 5},
}


def test_registry_holds_the_four_learners():
    assert AGENTS == {"a2c": A2C, "ppo": PPO, "reinforce": REINFORCE, "trpo": TRPO}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_make_agent_learns_a_few_hundred_steps(name, gmm_env):
    agent = make_agent(name, to_sb3(gmm_env), seed=0, **SMALL[name])
    assert isinstance(agent, AGENTS[name])
    assert isinstance(agent.policy, DiffusionPolicy)
    assert isinstance(agent.policy.features_extractor, DiffusionFeaturesExtractor)
    agent.learn(300)
    assert agent.num_timesteps >= 300
    obs, _ = gmm_env.reset(seed=0)
    actions, _ = agent.predict(obs.numpy(), deterministic=True)
    assert actions.shape == (8, 2)


def test_unknown_agent_lists_the_valid_names(gmm_env):
    with pytest.raises(ValueError, match="unknown agent 'sac'; valid agents: a2c, ppo, reinforce"):
        make_agent("sac", gmm_env)
    with pytest.raises(ValueError, match="valid agents"):
        load_hyperparams("dqn", "diffgym/GMM2D-v0")


def test_unknown_hyperparameters_are_type_errors(gmm_env):
    with pytest.raises(TypeError, match="unknown hyperparameter.*'clip_range'.*allowed"):
        make_agent("reinforce", gmm_env, clip_range=0.2)
    with pytest.raises(TypeError, match="unknown policy_kwargs.*'features_extractor_class'"):
        make_agent("ppo", gmm_env, policy_kwargs={"features_extractor_class": object})
    with pytest.raises(ValueError, match="unknown activation_fn 'swish'"):
        make_agent("ppo", gmm_env, policy_kwargs={"activation_fn": "swish"})


def test_yaml_block_then_overrides(gmm_env):
    cfg = agent_config("ppo", gmm_env)
    block = load_hyperparams("ppo", "diffgym/GMM2D-v0")
    assert cfg.env_id == "diffgym/GMM2D-v0" and cfg.task == "gmm2d"
    assert cfg.algo_kwargs["n_steps"] == block["n_steps"]
    assert cfg.run == {"n_envs": 8, "n_timesteps": block["n_timesteps"]}
    assert "n_envs" not in cfg.algo_kwargs and "n_timesteps" not in cfg.algo_kwargs
    assert cfg.algo_kwargs["device"] == "cpu"
    # The file's PPO minibatch (576) is capped at this venv's rollout (36 steps x 8 envs).
    assert block["batch_size"] == 576 and cfg.algo_kwargs["batch_size"] == 36 * 8

    policy_kwargs = {
        "neutral_bias": 3.0,
        "activation_fn": torch.nn.ReLU,
        "features_extractor_kwargs": {"hidden": 16},
    }
    cfg = agent_config("ppo", gmm_env, n_steps=4, batch_size=32, policy_kwargs=policy_kwargs)
    assert cfg.algo_kwargs["n_steps"] == 4
    assert cfg.policy_kwargs["neutral_bias"] == 3.0
    assert cfg.policy_kwargs["activation_fn"] == "relu"
    # Nested extractor settings merge key by key with the file's.
    file_feats = block["policy_kwargs"]["features_extractor_kwargs"]
    assert cfg.policy_kwargs["features_extractor_kwargs"] == {**file_feats, "hidden": 16}
    agent = cfg.build(gmm_env)
    assert agent.policy.neutral_bias == 3.0
    assert agent.policy.features_extractor.head[0].out_features == 16


def test_config_roundtrip_and_task_check(gmm_env):
    cfg = agent_config("reinforce", gmm_env, seed=3)
    again = AgentConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg
    a, b = cfg.build(gmm_env), again.build(gmm_env)
    for k, v in a.policy.state_dict().items():
        assert torch.equal(v, b.policy.state_dict()[k]), k
    with pytest.raises(ValueError, match="resolved for task 'gmm2d'.*'gmm2d-bias'"):
        cfg.build(DiffusionSamplingEnv("gmm2d-bias", 2))


def test_wrapped_venv_and_custom_task(image_task):
    env = DiffusionSamplingEnv(image_task, 2)
    with pytest.warns(UserWarning, match="no ppo hyperparameters for 'tiny-image'"):
        agent = make_agent("ppo", VecMonitor(to_sb3(env)), n_steps=6, batch_size=12)
    assert agent.policy.features_extractor.feature_kind == "image"
    agent = make_agent("reinforce", env, env_id="diffgym/Digits-v0", n_steps=6)
    agent.learn(24)
    with pytest.raises(TypeError, match="expected a DiffusionSamplingEnv or a wrapper of one"):
        make_agent("ppo", object())


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_hyperparameter_files_cover_every_task(name):
    with open(HYPERPARAMS_DIR / f"{name}.yml") as f:
        table = yaml.safe_load(f)
    assert set(table) == set(ENV_IDS)
    for env_id in ENV_IDS:
        block = load_hyperparams(name, env_id)
        policy_kwargs = block.pop("policy_kwargs")
        run = {k: block.pop(k) for k in ("n_envs", "n_timesteps")}
        assert run["n_envs"] >= 1 and run["n_timesteps"] > 0
        AgentConfig(name=name, task=ENV_IDS[env_id], env_id=env_id, algo_kwargs=block,
                    policy_kwargs=policy_kwargs)  # validates every key
