"""Policy-guided sampling: equivalence with the shared sampler, menus, noise, and the writer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffgym.agents import PolicySampler, make_agent, save_samples
from diffgym.agents.policies import action_menu_sizes
from diffgym.envs import (
    BatchNoise,
    DiffusionSamplingEnv,
    PerSampleNoise,
    make_task,
    sample,
    schedule_actions,
)


def _policy(env: DiffusionSamplingEnv, **policy_kwargs):
    return make_agent("ppo", env, seed=0, n_steps=4, policy_kwargs=policy_kwargs).policy


def _force(policy, index: int, margin: float = 50.0) -> None:
    """Make the greedy choice menu entry ``index`` of every knob, whatever the state."""
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.zero_()
        offset = 0
        for n in action_menu_sizes(policy.action_space):
            policy.action_net.bias[offset + index] = margin
            offset += n


@pytest.mark.parametrize("per_sample", [False, True])
def test_neutral_policy_reproduces_plain_sampler(per_sample, device):
    env = DiffusionSamplingEnv("gmm2d", 2, device=device)
    sampler = PolicySampler(_policy(env, neutral_bias=5.0), env.task, greedy=True)
    n, seed = 16, 7
    out = sampler.sample(n, seed=seed, per_sample=per_sample)
    noise = (
        PerSampleNoise([seed + b for b in range(n)], device=device)
        if per_sample
        else BatchNoise(n, device=device, seed=seed)
    )
    ref = sample(env.task.denoiser, env.task.sigmas(device), noise=noise, data_shape=(2,))
    assert torch.equal(out.x, ref.x)
    assert torch.equal(out.nfe, ref.nfe) and torch.equal(out.steps, ref.steps)
    assert out.nfe.tolist() == [35] * n


def test_forced_greedy_policy_uses_the_menu_levels(gmm_env):
    policy = _policy(gmm_env)
    _force(policy, 2)
    sampler = PolicySampler(policy, gmm_env.task, greedy=True)
    obs, _ = gmm_env.reset(seed=0)
    index = sampler.select(obs)
    assert index.tolist() == [[2, 2]] * 8
    knobs = sampler.knobs(index)
    assert knobs.churn.tolist() == [gmm_env.menus["churn"][2]] * 8
    assert knobs.guidance.tolist() == [gmm_env.menus["guidance"][2]] * 8
    levels = {k: [m[2]] * gmm_env.num_steps for k, m in gmm_env.menus.items()}
    out = sampler.sample(32, seed=1)
    ref = sample(gmm_env.task.denoiser, sampler.sigmas, noise=BatchNoise(32, seed=1),
                 data_shape=(2,), guide=gmm_env.task.guide, actions=schedule_actions(**levels))
    assert torch.equal(out.x, ref.x) and torch.equal(out.nfe, ref.nfe)
    assert out.nfe.tolist() == [4 * 17 + 2] * 32  # guided Heun steps, guided Euler last step


def test_policy_sees_the_env_observation(gmm_env):
    """The sampler's featurisation of a state is the env's observation of it."""
    sampler = PolicySampler(_policy(gmm_env), gmm_env.task)
    obs, _ = gmm_env.reset(seed=3)
    obs, *_ = gmm_env.step(np.zeros((8, 2), dtype=np.int64))
    again = sampler.observe(gmm_env.x, gmm_env.step_index, gmm_env.budget, gmm_env.labels)
    assert torch.equal(obs, again)


def test_stochastic_sampling_is_seeded_and_per_sample_reproducible(gmm_env):
    policy = _policy(gmm_env, neutral_bias=0.0)
    sampler = PolicySampler(policy, gmm_env.task, temperature=2.0)
    a, b = sampler.sample(16, seed=5), sampler.sample(16, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.nfe, b.nfe)
    assert len(set(a.nfe.tolist())) > 1  # random guidance choices change the NFE
    # Common random numbers: sample b depends only on seed + b, not on the batch.
    big = sampler.sample(6, seed=5, per_sample=True)
    small = sampler.sample(3, seed=5, per_sample=True)
    assert torch.equal(big.x[:3], small.x) and torch.equal(big.nfe[:3], small.nfe)


@pytest.mark.parametrize("factor, cut", [(0.5, None), (1.0, 2.0), (0.5, 1.0), (0.0, None)])
def test_guidance_factor_and_max_sigma_reshape_the_policy_guidance(gmm_env, factor, cut):
    """``guidance_factor`` alpha uses ``1 + alpha (w - 1)``; ``guidance_max_sigma`` c leaves the
    steps from sigma_i > c unguided: the same as the schedule of those levels, bit for bit, and
    the guide is evaluated (and counted) only on the steps still guided."""
    policy = _policy(gmm_env)
    _force(policy, 2)  # churn 0.25, guidance 2.0 at every step
    sampler = PolicySampler(policy, gmm_env.task, greedy=True, guidance_factor=factor,
                            guidance_max_sigma=cut)
    out = sampler.sample(32, seed=1)
    n = gmm_env.num_steps
    sigmas = sampler.sigmas.tolist()
    w = 1.0 + factor * (gmm_env.menus["guidance"][2] - 1.0)
    guidance = [1.0 if cut is not None and sigmas[i] > cut else w for i in range(n)]
    ref = sample(gmm_env.task.denoiser, sampler.sigmas, noise=BatchNoise(32, seed=1),
                 data_shape=(2,), guide=gmm_env.task.guide,
                 actions=schedule_actions(churn=[gmm_env.menus["churn"][2]] * n,
                                          guidance=guidance))
    assert torch.equal(out.x, ref.x) and torch.equal(out.nfe, ref.nfe)
    guided = sum(g != 1.0 for g in guidance[:-1])  # Heun steps, then the Euler last step
    last = 2 if guidance[-1] != 1.0 else 1
    assert out.nfe.tolist() == [2 * (n - 1) + 2 * guided + last] * 32
    assert (guided < n - 1) == (cut is not None or factor == 0.0)
    plain = PolicySampler(policy, gmm_env.task, greedy=True).sample(32, seed=1)
    assert torch.equal(out.x, plain.x) == (factor == 1.0 and cut is None)


def test_guidance_reshaping_is_refused_on_bad_values(gmm_env):
    policy = _policy(gmm_env)
    for bad in (-0.5, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="guidance_factor must be finite and >= 0"):
            PolicySampler(policy, gmm_env.task, guidance_factor=bad)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="guidance_max_sigma must be None or finite"):
            PolicySampler(policy, gmm_env.task, guidance_max_sigma=bad)
    churn_only = DiffusionSamplingEnv(make_task("gmm2d", guidance_levels=(1.0,)), 2)
    other = _policy(churn_only)
    with pytest.raises(ValueError, match="need a guidance menu"):
        PolicySampler(other, churn_only.task, guidance_factor=0.5)
    with pytest.raises(ValueError, match="need a guidance menu"):
        PolicySampler(other, churn_only.task, guidance_max_sigma=1.0)
    PolicySampler(other, churn_only.task)  # neutral values need no menu


def _set_logits(policy, biases: list[list[float]]) -> None:
    """Make the actor's logits the given per-knob ``biases``, whatever the state."""
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.copy_(torch.tensor([b for knob in biases for b in knob]))


def test_mean_action_uses_the_expected_levels(gmm_env):
    """Mean-action inference: each continuous knob at its softmax(logits / tau)-weighted level;
    the same as a schedule of those levels, deterministic, and every guided row counted."""
    policy = _policy(gmm_env)
    menus = gmm_env.menus
    churn_logits = [0.0] + [-1.0] * (len(menus["churn"]) - 1)
    guide_logits = [0.5 * j for j in range(len(menus["guidance"]))]
    _set_logits(policy, [churn_logits, guide_logits])
    tau = 2.0
    sampler = PolicySampler(policy, gmm_env.task, mean_action=True, temperature=tau)
    obs, _ = gmm_env.reset(seed=0)
    with torch.no_grad():
        knobs = sampler.expected_knobs(obs)
    expect = {}
    for name, logits in (("churn", churn_logits), ("guidance", guide_logits)):
        p = torch.softmax(torch.tensor(logits, dtype=torch.float64) / tau, dim=0)
        expect[name] = float(p @ torch.tensor(menus[name], dtype=torch.float64))
        assert knobs.__dict__[name].tolist() == pytest.approx([expect[name]] * 8, rel=1e-6)
    assert expect["guidance"] > 1.0 and expect["churn"] > 0.0
    out = sampler.sample(32, seed=1)
    again = sampler.sample(32, seed=1, action_noise=BatchNoise(32, seed=99))  # unused
    assert torch.equal(out.x, again.x)
    # State-dependent logits: each row's knobs are its own softmax-weighted levels.
    with torch.no_grad():
        policy.action_net.weight.normal_(generator=torch.Generator().manual_seed(0))
        obs2, *_ = gmm_env.step(np.zeros((8, 2), dtype=np.int64))
        logits = sampler.logits(obs2).double()
        per_row = sampler.expected_knobs(obs2)
    g = len(menus["churn"])
    w = torch.softmax(logits[:, g:] / tau, dim=1) @ torch.tensor(menus["guidance"],
                                                                  dtype=torch.float64)
    assert per_row.guidance.double().tolist() == pytest.approx(w.tolist(), rel=1e-6)
    assert len(set(per_row.guidance.tolist())) > 1
    levels = {k: [float(knobs.__dict__[k][0])] * gmm_env.num_steps for k in expect}
    ref = sample(gmm_env.task.denoiser, sampler.sigmas, noise=BatchNoise(32, seed=1),
                 data_shape=(2,), guide=gmm_env.task.guide, actions=schedule_actions(**levels))
    assert torch.equal(out.x, ref.x) and torch.equal(out.nfe, ref.nfe)
    assert out.nfe.tolist() == [4 * 17 + 2] * 32  # w != 1 at every step: both branches


def test_mean_action_of_a_neutral_policy_is_plain_heun(gmm_env):
    """All the weight on the neutral entries: w = 1 and churn = 0 exactly, no guide call."""
    policy = _policy(gmm_env)
    _force(policy, 0, margin=1e4)
    out = PolicySampler(policy, gmm_env.task, mean_action=True).sample(16, seed=3)
    ref = sample(gmm_env.task.denoiser, gmm_env.task.sigmas("cpu"),
                 noise=BatchNoise(16, seed=3), data_shape=(2,))
    assert torch.equal(out.x, ref.x) and out.nfe.tolist() == [35] * 16


def test_mean_action_takes_the_argmax_of_integer_knobs():
    """Renoise jumps (0, 3, 6) with logits (0, 1, 0.9): the argmax 3, not the mean 3.7 or its
    rounding; churn (0, 0.25) at equal logits: the mean 0.125; S_noise passed on."""
    env = DiffusionSamplingEnv("gmm2d-bias", 2)
    assert env.menus["renoise"] == (0, 3, 6) and env.menus["churn"] == (0.0, 0.25)
    policy = _policy(env)
    _set_logits(policy, [[0.0, 0.0], [0.0, 1.0, 0.9]])
    sampler = PolicySampler(policy, env.task, mean_action=True, s_noise=0.5)
    obs, _ = env.reset(seed=0)
    with torch.no_grad():
        knobs = sampler.expected_knobs(obs)
    assert knobs.renoise.dtype == torch.long
    assert knobs.renoise.tolist() == [3 * env.task.schedule_factor] * 2
    assert knobs.churn.tolist() == pytest.approx([0.125] * 2)
    assert knobs.s_noise.tolist() == [0.5] * 2


def test_renoise_and_conditional_image_tasks(image_task):
    env = DiffusionSamplingEnv("gmm2d-bias", 2)
    policy = _policy(env)
    _force(policy, 1)  # churn 0.25 and renoise jump 3 at every step, budget 2
    out = PolicySampler(policy, env.task, greedy=True).sample(8, seed=0)
    # Step 0 cannot renoise; at i = 1 each jump of 3 lands on level 0, twice (budget 2): 18 Heun
    # steps + 2 renoise transitions + 2 steps redone.
    assert out.steps.tolist() == [18 + 2 + 2] * 8
    assert out.nfe.tolist() == [2 * 19 + 1] * 8

    env = DiffusionSamplingEnv(image_task, 2)
    agent = make_agent("reinforce", env, env_id="diffgym/Digits-v0", seed=0)
    sampler = PolicySampler(agent.policy, image_task, temperature=0.5)
    labels = torch.arange(8) % 10
    out = sampler.sample(8, labels=labels, seed=0)
    assert out.x.shape == (8, 1, 8, 8) and torch.equal(out.labels, labels)
    drawn = sampler.sample(8, seed=0)
    assert drawn.labels.shape == (8,)


def test_bad_inputs(gmm_env, image_task):
    policy = _policy(gmm_env)
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        PolicySampler(policy, gmm_env.task, temperature=0.0)
    with pytest.raises(ValueError, match="greedy and mean_action are exclusive"):
        PolicySampler(policy, gmm_env.task, greedy=True, mean_action=True)
    other = make_task("gmm2d", guidance_levels=(1.0, 2.0))
    with pytest.raises(ValueError, match="does not match task 'gmm2d' menus"):
        PolicySampler(policy, other)
    with pytest.raises(ValueError, match="does not match task"):
        PolicySampler(policy, image_task)
    sampler = PolicySampler(policy, gmm_env.task)
    with pytest.raises(ValueError, match="give n >= 1 or a noise source"):
        sampler.sample()
    with pytest.raises(ValueError, match="does not match the noise batch size"):
        sampler.sample(3, noise=BatchNoise(4, seed=0))
    with pytest.raises(ValueError, match="unconditional; labels must be None"):
        sampler.sample(2, labels=torch.zeros(2, dtype=torch.long))


def test_save_samples(tmp_path, gmm_env, image_task):
    out = PolicySampler(_policy(gmm_env), gmm_env.task, greedy=True).sample(64, seed=0)
    save_samples(out, tmp_path / "s.npz", tmp_path / "s.png", gmm_env.task)
    data = np.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(data["x"], out.x.numpy())
    assert (data["labels"] == -1).all() and (data["nfe"] == 35).all()
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    env = DiffusionSamplingEnv(image_task, 2)
    agent = make_agent("ppo", env, env_id="diffgym/Digits-v0", seed=0, n_steps=4)
    img = PolicySampler(agent.policy, image_task, greedy=True).sample(12, seed=0)
    save_samples(img, None, tmp_path / "grid" / "digits.png", image_task)
    assert (tmp_path / "grid" / "digits.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid", "s.npz", "s.png"]
