"""REINFORCE: Monte-Carlo returns, the baseline switch, learning, save/load."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from diffgym.agents import REINFORCE, make_agent, monte_carlo_returns
from diffgym.envs import DiffusionSamplingEnv, to_sb3


def test_monte_carlo_returns_match_hand_computation():
    # env 0: an episode ends at t=1 (t=2 starts a new one), which is cut by the rollout end.
    # env 1: an episode that began before the rollout ends at t=2; a new one ends at t=4.
    rewards = torch.tensor(
        [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0], [5.0, 1.0]], dtype=torch.float64
    )
    starts = torch.tensor([[1, 0], [0, 0], [1, 0], [0, 1], [0, 0]], dtype=torch.float32)
    last_dones = torch.tensor([False, True])
    returns, complete = monte_carlo_returns(rewards, starts, last_dones)
    expected = torch.tensor(
        [[3.0, 3.0], [2.0, 2.0], [12.0, 1.0], [9.0, 2.0], [5.0, 1.0]], dtype=torch.float64
    )
    torch.testing.assert_close(returns, expected)
    assert complete.tolist() == [
        [True, True], [True, True], [False, True], [False, True], [False, True]
    ]


def _agent(env: DiffusionSamplingEnv, **kwargs) -> REINFORCE:
    kwargs.setdefault("seed", 0)
    agent = make_agent("reinforce", env, **kwargs)
    assert isinstance(agent, REINFORCE)
    return agent


def _collect(agent: REINFORCE, n_steps: int):
    _, callback = agent._setup_learn(n_steps * agent.n_envs, None)
    agent.collect_rollouts(agent.env, callback, agent.rollout_buffer, n_rollout_steps=n_steps)


def test_train_step_is_the_hand_computed_policy_gradient():
    """One SGD step of train() equals the gradient of -sum_{complete} G_t log pi / n_complete."""
    env = DiffusionSamplingEnv("gmm2d", 2)
    lr = 0.05
    agent = _agent(
        env, n_steps=5, use_baseline=False, normalize_advantage=False, ent_coef=0.0,
        learning_rate=lr, max_grad_norm=1e9, policy_kwargs={"neutral_bias": None},
    )
    agent.policy.optimizer = torch.optim.SGD(agent.policy.parameters(), lr=lr)
    _collect(agent, 5)
    buf = agent.rollout_buffer
    buf.rewards[:] = np.arange(10, dtype=np.float32).reshape(5, 2) / 10
    buf.episode_starts[:] = np.array([[1, 0], [0, 0], [1, 0], [0, 1], [0, 0]], np.float32)
    agent._last_episode_starts = np.array([False, True])

    ref = copy.deepcopy(agent.policy)
    obs = torch.as_tensor(buf.observations).reshape(10, -1)
    acts = torch.as_tensor(buf.actions).reshape(10, -1).long()
    _, log_prob, _ = ref.evaluate_actions(obs, acts)
    returns, complete = monte_carlo_returns(
        torch.as_tensor(buf.rewards), torch.as_tensor(buf.episode_starts),
        torch.tensor([False, True]),
    )
    w = complete.flatten().float()
    loss = -(w * returns.flatten() * log_prob).sum() / w.sum()
    ref.zero_grad()
    loss.backward()
    expected = {n: p - lr * p.grad if p.grad is not None else p for n, p in ref.named_parameters()}

    agent.train()
    for name, p in agent.policy.named_parameters():
        torch.testing.assert_close(p, expected[name].detach(), msg=name)


def test_baseline_switch():
    env = DiffusionSamplingEnv("gmm2d", 4)
    for use_baseline in (False, True):
        agent = _agent(env, n_steps=18, use_baseline=use_baseline)
        value_before = copy.deepcopy(agent.policy.value_net.state_dict())
        actor_before = agent.policy.action_net.weight.detach().clone()
        agent.learn(18 * 4)
        value_after = agent.policy.value_net.state_dict()
        value_moved = any(not torch.equal(value_before[k], value_after[k]) for k in value_before)
        assert value_moved == use_baseline
        assert not torch.equal(actor_before, agent.policy.action_net.weight)
        assert agent.logger.name_to_value["train/complete_fraction"] == 1.0


def test_no_complete_episode_without_baseline_warns_and_skips():
    env = DiffusionSamplingEnv("gmm2d", 2)
    agent = _agent(env, n_steps=5, use_baseline=False)
    before = copy.deepcopy(agent.policy.state_dict())
    _collect(agent, 5)
    with pytest.warns(UserWarning, match="no episode ended inside the rollout"):
        agent.train()
    after = agent.policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bad_arguments():
    env = DiffusionSamplingEnv("gmm2d", 2)
    with pytest.raises(ValueError, match="n_epochs must be >= 1"):
        _agent(env, n_epochs=0)
    with pytest.raises(ValueError, match="ent_coef and vf_coef must be >= 0"):
        _agent(env, ent_coef=-0.1)


def _guided_fraction(agent: REINFORCE, obs: torch.Tensor) -> float:
    """Mean probability of a guidance weight other than the neutral w = 1."""
    env = agent.env.env
    j = env.knob_names.index("guidance")
    with torch.no_grad():
        dist = agent.policy.get_distribution(obs)
        probs = dist.distribution[j].probs
    return float(1.0 - probs[:, 0].mean())


def test_reinforce_learns_to_save_nfe():
    """With only the NFE penalty as reward, guided steps (2x NFE) become rarer."""
    env = DiffusionSamplingEnv("gmm2d", 16, nfe_penalty=0.05)
    agent = _agent(
        env, n_steps=18, learning_rate=2e-2, ent_coef=0.0, policy_kwargs={"neutral_bias": 0.0}
    )
    obs, _ = DiffusionSamplingEnv("gmm2d", 64).reset(seed=1)
    before = _guided_fraction(agent, obs)
    agent.learn(16 * 18 * 15)
    after = _guided_fraction(agent, obs)
    assert before > 0.7  # uniform start: 4 of the 5 guidance levels are guided
    assert after < before - 0.2, (before, after)


def test_save_load_roundtrip(tmp_path):
    env = DiffusionSamplingEnv("gmm2d", 4)
    agent = _agent(env, n_steps=18, use_baseline=False, n_epochs=2)
    agent.learn(18 * 4)
    agent.save(tmp_path / "agent.zip")
    loaded = REINFORCE.load(tmp_path / "agent.zip", env=to_sb3(env))
    assert (loaded.use_baseline, loaded.n_epochs, loaded.gamma) == (False, 2, 1.0)
    for k, v in agent.policy.state_dict().items():
        assert torch.equal(v, loaded.policy.state_dict()[k]), k
    obs, _ = env.reset(seed=0)
    a1, _ = agent.predict(obs.numpy(), deterministic=True)
    a2, _ = loaded.predict(obs.numpy(), deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    loaded.learn(18 * 4)
