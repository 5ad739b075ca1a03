"""Expert occupancy: noised data, featurised like env observations, sigma-matched."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from imitation.algorithms.base import make_data_loader

from diffgym.envs import DiffusionSamplingEnv, c_in, featurize, to_sb3
from diffgym.rewards import ExpertDemonstrations, NoisedDataExpert


def _rollout_obs(env: DiffusionSamplingEnv, steps: int, seed: int = 0) -> torch.Tensor:
    """Observations of a random-action rollout (several episodes, renoise included)."""
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = [obs]
    for _ in range(steps):
        space = env.single_action_space
        if isinstance(space, spaces.Discrete):
            actions = rng.integers(0, space.n, env.num_envs)
        else:
            actions = np.stack([rng.integers(0, n, env.num_envs) for n in space.nvec], axis=1)
        obs, *_ , info = env.step(actions)
        out.append(obs)
        if "final_obs" in info:
            out.append(info["final_obs"][info["_final_obs"]])
    return torch.cat(out)


def _data_moments(task) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-coordinate mean and variance of a mixture task's data."""
    mix = task.target
    w = mix.weights[:, None]
    mean = (w * mix.means).sum(0)
    second = (w * (mix.means**2 + mix.stds[:, None] ** 2)).sum(0)
    return mean, second - mean**2


@pytest.mark.parametrize("task", ["gmm2d", "gmm2d-bias"])
def test_conditioning_columns_match_rollout(task, device):
    env = DiffusionSamplingEnv(task, 16, device=device)
    obs = _rollout_obs(env, 20 if task == "gmm2d" else 30)
    expert = NoisedDataExpert(env, seed=1)
    matched, x0 = expert.states_like(obs)
    d = math.prod(env.data_shape)
    assert matched.shape == obs.shape and matched.dtype == torch.float32
    assert matched.device == obs.device and x0.shape == (obs.shape[0], *env.data_shape)
    assert torch.equal(matched[:, d:], obs[:, d:])
    # the parsed conditioning reproduces the env's featurisation bit for bit
    step, budget, labels = expert.parse(obs)
    fresh, _ = expert.noised_states(step, budget, labels)
    assert torch.equal(fresh[:, d:], obs[:, d:])
    if task == "gmm2d-bias":  # renoise happened: budgets and steps vary
        assert len(torch.unique(budget)) > 1
    assert len(torch.unique(step)) == env.num_steps + 1
    # samples differ from the policy's
    assert not torch.equal(matched[:, :d], obs[:, :d])


@pytest.mark.parametrize("step", [4, 10, 14, 17])
def test_sample_part_is_data_plus_sigma_noise(step):
    env = DiffusionSamplingEnv("gmm2d", 1)
    expert = NoisedDataExpert(env, seed=2)
    n = 20000
    sigma = env.sigmas[step]
    policy = featurize(
        torch.zeros(n, 2), sigma.expand(n), torch.full((n,), step / env.num_steps),
        torch.zeros(n), None, sigma_data=env.task.sigma_data, num_classes=0,
    )
    matched, _ = expert.states_like(policy)
    x = matched[:, :2].double() / c_in(sigma.double(), env.task.sigma_data)
    mean, var = _data_moments(env.task)
    var = var + sigma.double() ** 2
    se = (var / n).sqrt()
    assert ((x.mean(0) - mean).abs() < 5 * se).all(), (x.mean(0), mean)
    torch.testing.assert_close(x.var(0), var, rtol=0.05, atol=0.0)


def test_terminal_states_are_clean_biased_data():
    env = DiffusionSamplingEnv("gmm2d-bias", 1)
    expert = NoisedDataExpert(env, seed=3)
    n = 15000
    policy = featurize(
        torch.zeros(n, 2), torch.zeros(n), torch.ones(n), torch.full((n,), 0.5), None,
        sigma_data=env.task.sigma_data, num_classes=0,
    )
    matched, x0 = expert.states_like(policy)
    x = matched[:, :2].double() / c_in(torch.tensor(0.0, dtype=torch.float64), env.task.sigma_data)
    torch.testing.assert_close(x, x0.double(), rtol=1e-5, atol=1e-5)
    assert torch.equal(matched[:, 2:], policy[:, 2:]) and bool((policy[:, 3] == 1.0).all())
    # unbalanced target: grid column c has mass (c + 1) / 15
    dist = torch.cdist(x, env.task.target.means)
    assert float(dist.min(1).values.max()) < 6 * 0.15
    column = dist.argmin(1) % 5
    freq = torch.bincount(column, minlength=5).double() / n
    expected = torch.arange(1, 6, dtype=torch.float64) / 15
    torch.testing.assert_close(freq, expected, atol=0.02, rtol=0)


def test_transitions_like_matches_both_states_shares_x0_neutral_actions():
    env = DiffusionSamplingEnv("gmm2d-bias", 8)
    obs_all = _rollout_obs(env, 10)
    obs, next_obs = obs_all[:-8], obs_all[8:]
    dones = torch.zeros(obs.shape[0], dtype=torch.bool)
    expert = NoisedDataExpert(env, seed=4)
    tr = expert.transitions_like(obs, next_obs, dones)
    assert set(tr) == {"obs", "acts", "next_obs", "dones", "infos"}
    assert torch.equal(tr["obs"][:, 2:], obs[:, 2:])
    assert torch.equal(tr["next_obs"][:, 2:], next_obs[:, 2:])
    assert tr["acts"].shape == (obs.shape[0], 2) and not tr["acts"].any()
    assert torch.equal(tr["dones"], dones) and len(tr["infos"]) == obs.shape[0]
    # one x0 per row: last step (sigma = 0.002) -> terminal (clean data) stays within the noise
    n, sd = 256, env.task.sigma_data
    last = featurize(torch.zeros(n, 2), env.sigmas[-2].expand(n), torch.full((n,), 17 / 18),
                     torch.ones(n), None, sigma_data=sd, num_classes=0)
    final = featurize(torch.zeros(n, 2), torch.zeros(n), torch.ones(n), torch.ones(n), None,
                      sigma_data=sd, num_classes=0)
    tr = expert.transitions_like(last, final, torch.ones(n, dtype=torch.bool))
    x_last = tr["obs"][:, :2] / c_in(env.sigmas[-2], sd)
    x_final = tr["next_obs"][:, :2] / c_in(torch.tensor(0.0), sd)
    assert float((x_last - x_final).abs().max()) < 6 * float(env.sigmas[-2])


def test_seeded_and_fresh_every_call():
    env = DiffusionSamplingEnv("gmm2d", 4)
    obs, _ = env.reset(seed=0)
    a1, _ = NoisedDataExpert(env, seed=5).states_like(obs)
    a2, _ = NoisedDataExpert(env, seed=5).states_like(obs)
    assert torch.equal(a1, a2)
    expert = NoisedDataExpert(env, seed=5)
    b1, _ = expert.states_like(obs)
    b2, _ = expert.states_like(obs)
    assert not torch.equal(b1, b2)


def test_demonstrations_accepted_by_imitation():
    venv = to_sb3(DiffusionSamplingEnv("gmm2d-bias", 2))
    expert = NoisedDataExpert(venv, seed=6)
    demos = expert.demonstrations(32)
    assert isinstance(demos, ExpertDemonstrations)
    loader = make_data_loader(demos, 32)
    batches = [b for _, b in zip(range(3), loader)]
    assert not torch.equal(batches[0]["obs"], batches[1]["obs"])  # fresh every batch
    for b in batches:
        assert b["obs"].shape == (32, 5) and b["next_obs"].shape == (32, 5)
        assert b["acts"].shape == (32, 2) and not b["acts"].any()
        assert b["dones"].shape == (32,) and len(b["infos"]) == 32
        for row in b["next_obs"].numpy():
            assert expert.observation_space.contains(row)
        # budget full (an ideal sampler never renoises); next state one step after the state
        assert bool((b["next_obs"][:, 4] == 1.0).all())
        torch.testing.assert_close(b["next_obs"][:, 3] - b["obs"][:, 3], torch.full((32,), 1 / 18))
        assert torch.equal(b["dones"], b["next_obs"][:, 3] == 1.0)
    with pytest.raises(ValueError, match="batch_size"):
        expert.demonstrations(0)


def test_conditional_image_task_labels_matched(image_mixture_task):
    env = DiffusionSamplingEnv(image_mixture_task, 32)
    obs = _rollout_obs(env, 8)
    expert = NoisedDataExpert(env, seed=7)
    matched, x0 = expert.states_like(obs)
    d = 16
    assert torch.equal(matched[:, d:], obs[:, d:])
    labels = obs[:, d + 3:].argmax(1)
    assert len(torch.unique(labels)) == 3
    # each x0 comes from a component of its row's label
    mix = image_mixture_task.target
    nearest = torch.cdist(x0.reshape(-1, 16).double(), mix.means.reshape(6, 16)).argmin(1)
    assert torch.equal(mix.component_labels[nearest], labels)


def test_bad_obs_and_env():
    expert = NoisedDataExpert(DiffusionSamplingEnv("gmm2d", 1), seed=0)
    with pytest.raises(ValueError, match=r"obs must have shape \(batch, 5\)"):
        expert.states_like(torch.zeros(3, 7))
    with pytest.raises(TypeError, match="DiffusionSamplingEnv"):
        NoisedDataExpert(object())
