"""The batched sampling env (design §3): vector-env contract (spaces, SAME_STEP autoreset,
episode statistics), the observation layout against an independent computation, equivalence with
the plain sampler, rewards, seeding and per-sample noise, invalid choices, registration, the
Gymnasium/SB3 env checkers, and bad input."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

import diffgym
import diffgym.envs
from diffgym.envs import (
    BatchNoise,
    DiffusionSamplingEnv,
    DiffusionSamplingSingleEnv,
    GaussianMixture,
    GMMDenoiser,
    Task,
    UncondBranch,
    featurize,
    make_task,
    sample,
)
from diffgym.envs.features import TERMINAL_SIGMA

N = 18  # default number of steps
SAME = AutoresetMode.SAME_STEP  # tests of the final_obs / final_info path
DIGITS_WEIGHTS = Path(diffgym.envs.__file__).parent / "assets" / "digits_denoiser.pt"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------



def cond_task(**changes) -> Task:
    """A small class-conditional mixture task with all three knobs (labels 0, 1, 1, 2)."""
    mix = GaussianMixture(
        [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]], 0.3, component_labels=[0, 1, 1, 2]
    )
    model = GMMDenoiser(mix)
    fields = dict(
        name="cond-gmm",
        denoiser=model,
        guide=UncondBranch(model),
        guide_kind="cfg",
        data=lambda n, generator=None, class_labels=None: mix.sample(n, generator, class_labels),
        label_probs=mix.label_probs(),
        target=mix,
        num_steps=8,
        churn_levels=(0.0, 0.3),
        guidance_levels=(1.0, 2.0),
        renoise_jumps=(0, 2),
        renoise_budget=1,
    )
    fields.update(changes)
    return Task(**fields)


def random_actions(env: DiffusionSamplingEnv, rng: np.random.Generator) -> np.ndarray:
    """Uniform menu indices in the shape of ``env.action_space``."""
    sizes = [len(env.menus[k]) for k in env.knob_names] or [1]
    a = np.stack([rng.integers(0, n, env.num_envs) for n in sizes], axis=1)
    return a if isinstance(env.single_action_space, spaces.MultiDiscrete) else a[:, 0]


def zero_actions(env: DiffusionSamplingEnv) -> np.ndarray:
    return np.zeros(env.action_space.shape, dtype=np.int64)


def rollout(env: DiffusionSamplingEnv, seed, actions: list[np.ndarray]) -> dict[str, list]:
    """Reset with ``seed``, apply ``actions``; the per-step outputs (cloned, on the CPU)."""
    obs, _ = env.reset(seed=seed)
    out: dict[str, list] = {"obs": [obs.cpu()], "reward": [], "terminated": [], "final": []}
    for a in actions:
        obs, reward, terminated, _, info = env.step(a)
        out["obs"].append(obs.cpu())
        out["reward"].append(reward.cpu())
        out["terminated"].append(terminated.cpu())
        if "final_obs" in info:
            out["final"].append(
                (info["final_obs"].cpu(), info["final_info"]["final_x"].cpu(), terminated.cpu())
            )
    return out


def state_of(env: DiffusionSamplingEnv) -> dict[str, torch.Tensor]:
    """A copy of every state tensor of the env (and the batch generator's state)."""
    names = ["x", "step_index", "budget", "episode_nfe", "episode_return", "episode_length"]
    state = {name: getattr(env, name).clone() for name in names}
    if env.labels is not None:
        state["labels"] = env.labels.clone()
    if env.noise_mode == "batch":
        state["generator"] = env._noise.generator.get_state().clone()
    return state


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --------------------------------------------------------------------------------------------
# Spaces
# --------------------------------------------------------------------------------------------


def test_spaces_multidiscrete_for_several_knobs():
    env = DiffusionSamplingEnv("gmm2d", 5)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP == env.autoreset_mode
    assert env.knob_names == ("churn", "guidance")
    assert env.single_action_space == spaces.MultiDiscrete([4, 5])
    assert env.action_space == batch_space(env.single_action_space, 5)
    assert env.observation_space == batch_space(env.single_observation_space, 5)
    box = env.single_observation_space
    assert isinstance(box, spaces.Box) and box.dtype == np.float32
    assert box.shape == (2 + 3,)
    assert env.sigmas.shape == (N + 1,) and env.sigmas[-1].item() == 0.0
    assert env.task.name == "gmm2d"
    three = DiffusionSamplingEnv(cond_task(), 2)
    assert three.knob_names == ("churn", "guidance", "renoise")
    assert three.single_action_space == spaces.MultiDiscrete([2, 2, 2])
    assert three.single_observation_space.shape == (2 + 3 + 3,)


@pytest.mark.parametrize(
    "task, menus, knob, n",
    [
        ("gmm2d", dict(churn_levels=(0, 0.1), guidance_levels=(1,)), "churn", 2),
        ("gmm2d", dict(churn_levels=(0,), guidance_levels=(1, 1.5, 2)), "guidance", 3),
        ("gmm2d-bias", dict(churn_levels=(0,)), "renoise", 3),
    ],
)
def test_spaces_discrete_for_one_knob(task, menus, knob, n):
    env = DiffusionSamplingEnv(task, 3, **menus)
    assert env.knob_names == (knob,)
    assert env.single_action_space == spaces.Discrete(n)
    assert env.action_space == batch_space(spaces.Discrete(n), 3)
    assert env.action_space == spaces.MultiDiscrete([n, n, n])
    env.reset(seed=0)
    for a in (np.full(3, n - 1), torch.full((3,), n - 1), np.full((3, 1), n - 1)):
        env.step(a)  # (num_envs,) and (num_envs, 1) both accepted


def test_obs_within_space_float32(device):
    env = DiffusionSamplingEnv("gmm2d-bias", 6, device=device, autoreset_mode=SAME)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    seen_final = 0
    for _ in range(30):
        assert obs.dtype == torch.float32 and obs.device.type == torch.device(device).type
        assert env.observation_space.contains(obs.cpu().numpy())
        obs, reward, terminated, truncated, info = env.step(random_actions(env, rng))
        assert reward.dtype == torch.float32 and reward.shape == (6,)
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        assert not truncated.any()
        if "final_obs" in info:
            final = info["final_obs"][info["_final_obs"]].cpu().numpy()
            assert all(env.single_observation_space.contains(o) for o in final)
            seen_final += len(final)
    assert seen_final > 0


# --------------------------------------------------------------------------------------------
# Observation layout
# --------------------------------------------------------------------------------------------


def expected_obs(env: DiffusionSamplingEnv) -> torch.Tensor:
    """The observation of the env's current state, computed here in float64 from design §3."""
    sd = env.task.denoiser.sigma_data
    rows = []
    for b in range(env.num_envs):
        i = int(env.step_index[b])
        sigma = float(env.sigmas[i])
        x = env.x[b].double().reshape(-1) / math.sqrt(sigma**2 + sd**2)
        c_noise = math.log(max(sigma, TERMINAL_SIGMA)) / 4
        budget = float(env.budget[b]) / env.renoise_budget if env.renoise_budget else 0.0
        label = torch.zeros(env.num_classes, dtype=torch.float64)
        if env.num_classes:
            label[int(env.labels[b])] = 1.0
        tail = torch.tensor([c_noise, i / env.num_steps, budget], dtype=torch.float64)
        rows.append(torch.cat([x.cpu(), tail, label]))
    return torch.stack(rows)


@pytest.mark.parametrize("neutral", [False, True])
@pytest.mark.parametrize("task", ["gmm2d", "gmm2d-bias", "cond"])
def test_observation_layout(task, neutral):
    """Random actions, and neutral ones (every sub-env at one step: the env's fast path that
    tabulates the per-step columns, terminal observations included)."""
    env = DiffusionSamplingEnv(cond_task() if task == "cond" else task, 5, autoreset_mode=SAME)
    assert abs(env.task.denoiser.sigma_data - 0.5) > 0.1  # a wrong sigma_data would show
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=0)
    checked_terminal = False
    for _ in range(2 * env.num_steps + 3):
        torch.testing.assert_close(obs.double(), expected_obs(env), rtol=1e-6, atol=1e-6)
        # the one featurisation: the env's observation is featurize() of its state, exactly
        budget = env.budget.float() / env.renoise_budget if env.renoise_budget else 0 * env.budget
        shared = featurize(
            env.x, env.sigmas[env.step_index], env.step_index.float() / env.num_steps,
            budget.float(), env.labels, sigma_data=env.task.sigma_data,
            num_classes=env.num_classes,
        )
        assert torch.equal(obs, shared)
        pre = {k: v.clone() for k, v in (("x", env.x), ("budget", env.budget))}
        actions = random_actions(env, rng)
        obs, _, terminated, _, info = env.step(torch.as_tensor(0 * actions) if neutral else actions)
        if terminated.any():
            b = int(terminated.nonzero()[0, 0])
            final = info["final_obs"][b].double()
            d = 2
            sd = env.task.denoiser.sigma_data
            torch.testing.assert_close(final[:d], info["final_info"]["final_x"][b].double() / sd)
            assert final[d].item() == pytest.approx(math.log(TERMINAL_SIGMA) / 4, rel=1e-6)
            assert final[d + 1].item() == 1.0
            # the new episode starts at step 0 with a full budget and fresh noise
            assert obs[b, d + 1].item() == 0.0
            assert obs[b, d + 2].item() == (1.0 if env.renoise_budget else 0.0)
            assert not torch.equal(env.x[b], pre["x"][b])
            checked_terminal = True
    assert checked_terminal


def test_label_columns_follow_every_write_to_the_labels():
    """The env keeps the one-hot label columns between steps; a write to ``labels`` in place, a
    new ``labels`` tensor, and a state restore each show in the next observation."""
    env = DiffusionSamplingEnv(cond_task(), 6, autoreset_mode=SAME)
    neutral = np.zeros(env.action_space.shape, dtype=np.int64)
    env.reset(seed=0)
    saved = env.state_dict()

    def label_cols(obs):
        return obs[:, -env.num_classes:]

    def one_hot(labels):
        return torch.nn.functional.one_hot(labels, env.num_classes).float()

    obs = env.step(neutral)[0]
    assert torch.equal(label_cols(obs), one_hot(env.labels))
    env.labels[:] = torch.tensor([2, 1, 0, 2, 1, 0])  # in place
    obs = env.step(neutral)[0]
    assert torch.equal(label_cols(obs), one_hot(torch.tensor([2, 1, 0, 2, 1, 0])))
    env.labels = torch.tensor([0, 0, 1, 1, 2, 2])  # a new tensor
    obs = env.step(neutral)[0]
    assert torch.equal(label_cols(obs), one_hot(torch.tensor([0, 0, 1, 1, 2, 2])))
    env.load_state_dict(saved)
    obs = env.step(neutral)[0]
    assert torch.equal(label_cols(obs), one_hot(saved["labels"]))


# --------------------------------------------------------------------------------------------
# Autoreset and episode statistics
# --------------------------------------------------------------------------------------------


def test_same_step_autoreset_and_episode_record():
    env = DiffusionSamplingEnv("gmm2d", 3, autoreset_mode=SAME)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP == env.autoreset_mode
    # the mode is per instance; the class default stays NEXT_STEP
    assert DiffusionSamplingEnv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = env.reset(seed=0)
    assert info == {}
    for t in range(N):
        x_before = env.x.clone()
        obs, reward, terminated, truncated, info = env.step(zero_actions(env))
        if t < N - 1:
            assert not terminated.any() and "final_obs" not in info
    assert terminated.all() and not truncated.any()
    for key in ("final_obs", "_final_obs", "final_info", "_final_info"):
        assert key in info, key
    assert "episode" not in info and "episode" not in info["final_info"]  # the wrappers' key
    assert torch.equal(info["_final_obs"], terminated)
    assert torch.equal(info["_final_info"], terminated)
    record = info["final_info"]
    for key in ("episode_nfe", "episode_return", "episode_length", "final_x"):
        assert torch.equal(record["_" + key], terminated), key
    assert record["episode_length"].tolist() == [N] * 3
    assert record["episode_nfe"].tolist() == [2 * N - 1] * 3  # Heun: 2 per step, 1 at the last
    assert record["episode_return"].tolist() == [0.0] * 3
    # final obs is the terminal state; the returned obs is the new episode's first one
    assert torch.equal(info["final_obs"][:, 3], torch.ones(3))
    assert torch.equal(obs[:, 3], torch.zeros(3))
    assert not torch.equal(record["final_x"], x_before)
    assert env.step_index.tolist() == [0] * 3
    assert env.episode_length.tolist() == [0] * 3 and env.episode_nfe.tolist() == [0] * 3
    assert torch.equal(obs, env._observe())
    # and the next episode runs as normal
    obs, _, terminated, _, info = env.step(zero_actions(env))
    assert not terminated.any() and env.step_index.tolist() == [1] * 3


def test_episodes_of_different_lengths_reset_per_env():
    """gmm2d-bias with renoise: sub-env 0 is plain Heun, 1 renoises once at step 1 (jump 3 -> 0),
    2 renoises at step 10 (jump 6 -> 4) and again at step 6 (jump 3 -> 3)."""
    # knobs churn (2), renoise (0, 3, 6), budget 2
    env = DiffusionSamplingEnv("gmm2d-bias", 3, autoreset_mode=SAME)
    assert env.knob_names == ("churn", "renoise") and env.renoise_budget == 2
    plans = {1: {1: 1}, 2: {10: 2, 6: 1}}  # sub-env -> {step index: renoise menu index}
    env.reset(seed=0)
    used = {1: set(), 2: set()}
    finished_at: dict[int, list[int]] = {0: [], 1: [], 2: []}
    lengths: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for t in range(60):
        a = zero_actions(env)
        for b, plan in plans.items():
            i = int(env.step_index[b])
            if i in plan and i not in used[b] and not finished_at[b]:
                a[b, 1] = plan[i]
                used[b].add(i)
        before_index = env.step_index.clone()
        before_budget = env.budget.clone()
        obs, _, terminated, _, info = env.step(a)
        renoised = info["renoised"]
        assert torch.equal(renoised, torch.as_tensor(a[:, 1] > 0))
        for b in range(3):
            if renoised[b]:
                jump = env.task.renoise_jumps[a[b, 1]]
                assert env.step_index[b] == max(int(before_index[b]) - jump, 0)
                assert env.budget[b] == before_budget[b] - 1 and info["nfe"][b] == 0
                assert obs[b, 4].item() == pytest.approx(float(env.budget[b]) / 2)
        if terminated.any():
            assert torch.equal(info["_final_obs"], terminated)
            for b in terminated.nonzero().squeeze(1).tolist():
                finished_at[b].append(t)
                lengths[b].append(int(info["final_info"]["episode_length"][b]))
                assert env.step_index[b] == 0 and env.budget[b] == 2  # reset alone
                assert obs[b, 3].item() == 0.0 and obs[b, 4].item() == 1.0
            for b in (~terminated).nonzero().squeeze(1).tolist():
                assert env.step_index[b] > 0  # the others go on
    assert lengths[0][:3] == [N, N, N]
    assert lengths[1][0] == N + 2  # 1 renoise transition + step 0 again
    assert lengths[2][0] == N + 1 + 6 + 1 + 3  # two renoises, levels 4..9 and 3..5 again
    assert finished_at[0][0] == N - 1 and finished_at[1][0] == N + 1
    assert finished_at[2][0] == lengths[2][0] - 1


# --------------------------------------------------------------------------------------------
# The env is the sampler
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["gmm2d", "cond"])
def test_zero_actions_reproduce_plain_heun_sample(task, device):
    env = DiffusionSamplingEnv(
        cond_task() if task == "cond" else task, 7, device=device, autoreset_mode=SAME
    )
    env.reset(seed=11)
    labels = None if env.labels is None else env.labels.clone()
    nfe = torch.zeros(7, dtype=torch.long, device=device)
    for _ in range(env.num_steps):
        _, _, terminated, _, info = env.step(zero_actions(env))
        nfe += info["nfe"]
    assert terminated.all()
    ref = sample(
        env.task.denoiser, env.sigmas, noise=BatchNoise(7, device=device, seed=11),
        data_shape=env.data_shape, labels=labels,
    )
    assert torch.equal(info["final_info"]["final_x"], ref.x)
    assert torch.equal(nfe, ref.nfe)
    assert torch.equal(info["final_info"]["episode_nfe"], ref.nfe)
    if labels is not None:
        assert torch.equal(info["final_info"]["label"], labels)


# --------------------------------------------------------------------------------------------
# Rewards
# --------------------------------------------------------------------------------------------


def test_nfe_penalty_reward_is_exact():
    lam = 0.37
    env = DiffusionSamplingEnv("gmm2d", 8, nfe_penalty=lam, autoreset_mode=SAME)
    rng = np.random.default_rng(3)
    env.reset(seed=0)
    total = torch.zeros(8, dtype=torch.float64)
    for t in range(N):
        a = random_actions(env, rng)
        _, reward, terminated, _, info = env.step(a)
        guided = torch.as_tensor(np.asarray(env.task.guidance_levels)[a[:, 1]] != 1.0)
        expected_nfe = (1 + guided.long()) * (1 if t == N - 1 else 2)
        assert torch.equal(info["nfe"], expected_nfe)
        assert torch.equal(reward, (-lam * expected_nfe.double()).float())
        total += -lam * expected_nfe.double()
    assert terminated.all()
    record = info["final_info"]
    torch.testing.assert_close(record["episode_return"], total, rtol=1e-12, atol=0)
    assert torch.equal(record["episode_nfe"], (total / -lam).round().long())


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_terminal_logp_reward_paid_at_last_step(lam):
    env = DiffusionSamplingEnv(
        "gmm2d", 6, reward="terminal_logp", nfe_penalty=lam, autoreset_mode=SAME
    )
    rng = np.random.default_rng(4)
    env.reset(seed=2)
    for _ in range(N):
        _, reward, terminated, _, info = env.step(random_actions(env, rng))
        if not terminated.any():
            torch.testing.assert_close(reward, (-lam * info["nfe"].double()).float())
    assert terminated.all()
    logp = env.task.target.log_prob(info["final_info"]["final_x"].double())
    assert bool((logp > -50).all())  # a sensible density, not a penalty
    torch.testing.assert_close(reward, (logp - lam * info["nfe"].double()).float())


def test_terminal_logp_needs_a_mixture():
    task = make_task("gmm2d").replace(target=None)
    with pytest.raises(ValueError, match="terminal_logp.*mixture"):
        DiffusionSamplingEnv(task, 2, reward="terminal_logp")


# --------------------------------------------------------------------------------------------
# Seeding and noise
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", ["batch", "per_sample"])
def test_seeding_reproducible(noise, device):
    env = DiffusionSamplingEnv("gmm2d", 4, noise=noise, device=device, autoreset_mode=SAME)
    rng = np.random.default_rng(5)
    actions = [random_actions(env, rng) for _ in range(N + 5)]
    assert any(a[:, 0].any() for a in actions)  # churn draws noise
    a = rollout(env, 7, actions)
    b = rollout(env, 7, actions)  # the same env, reset again
    c = rollout(env, 8, actions)
    for key in ("obs", "reward"):
        assert all(torch.equal(u, v) for u, v in zip(a[key], b[key])), key
    assert len(a["final"]) == len(b["final"]) == 1
    assert torch.equal(a["final"][0][1], b["final"][0][1])  # identical final samples
    assert not torch.equal(a["final"][0][1], c["final"][0][1])
    assert not torch.equal(a["obs"][0], c["obs"][0])


def test_per_sample_starts_are_the_same_on_every_device(device):
    """Per-sample streams are counter-based: the start noise of a reset matches the CPU env's on
    any device (up to float rounding), the labels exactly."""
    envs = [DiffusionSamplingEnv(cond_task(), 3, noise="per_sample", device=d)
            for d in ("cpu", device)]
    for env in envs:
        env.reset(seed=4)
    assert envs[1].x.device.type == torch.device(device).type
    torch.testing.assert_close(envs[1].x.cpu(), envs[0].x, rtol=1e-6, atol=1e-6)
    assert torch.equal(envs[1].labels.cpu(), envs[0].labels)


@pytest.mark.parametrize("task", ["gmm2d-bias", "cond"])
def test_per_sample_noise_is_independent_of_the_batch(task):
    """Sub-env b of a batch reset with seed s = sub-env 0 of a one-env env reset with s + b,
    across episodes of different lengths (renoise) and resets (labels)."""

    def make(n: int) -> DiffusionSamplingEnv:
        return DiffusionSamplingEnv(
            cond_task() if task == "cond" else task, n, noise="per_sample", autoreset_mode=SAME
        )

    n, seed, steps = 3, 21, 2 * N + 5
    env = make(n)
    rng = np.random.default_rng(6)
    actions = [random_actions(env, rng) for _ in range(steps)]
    batch = rollout(env, seed, actions)
    listed = rollout(env, [seed + 5, seed + 6, seed + 7], actions)
    assert len(batch["final"]) >= 2  # several resets, at different steps per sub-env
    for b in range(n):
        for run, s in ((batch, seed + b), (listed, seed + 5 + b)):
            single = rollout(make(1), s, [a[b : b + 1] for a in actions])
            for key in ("obs", "reward", "terminated"):
                assert all(torch.equal(u[b], v[0]) for u, v in zip(run[key], single[key])), key
            finals = [(o[b], x[b]) for o, x, m in run["final"] if m[b]]
            assert len(finals) == len(single["final"]) >= 1
            for (o, x), (o1, x1, _) in zip(finals, single["final"]):
                assert torch.equal(o, o1[0]) and torch.equal(x, x1[0])


def test_batch_noise_draws_nothing_on_neutral_steps():
    env = DiffusionSamplingEnv("gmm2d", 4, autoreset_mode=SAME)
    env.reset(seed=0)
    gen = env._noise.generator
    for t in range(N - 1):
        state = gen.get_state().clone()
        a = zero_actions(env)
        a[:, 1] = 2  # guidance spends NFE but no noise
        env.step(a)
        assert torch.equal(gen.get_state(), state), t
    a = zero_actions(env)
    a[0, 0] = 1  # churn at the last step is ignored: still no draw
    state = gen.get_state().clone()
    _, _, terminated, _, info = env.step(a)
    assert info["churn_ignored"].tolist() == [True, False, False, False]
    assert terminated.all()
    after_reset = gen.get_state().clone()
    assert not torch.equal(after_reset, state)  # the autoreset drew the new x
    a = zero_actions(env)
    a[2, 0] = 1  # churn on one sub-env draws
    env.step(a)
    assert not torch.equal(gen.get_state(), after_reset)


def test_invalid_choices_act_neutral_and_are_flagged():
    def twins():
        pair = [DiffusionSamplingEnv("gmm2d-bias", 2, autoreset_mode=SAME) for _ in range(2)]
        for e in pair:
            e.reset(seed=9)
        return pair

    # renoise at step 0
    plain, asked = twins()
    a = zero_actions(asked)
    a[:, 1] = [2, 1]
    obs0, _, _, _, info0 = plain.step(zero_actions(plain))
    obs1, _, _, _, info1 = asked.step(a)
    assert torch.equal(obs0, obs1) and torch.equal(plain.budget, asked.budget)
    assert info1["renoise_ignored"].tolist() == [True, True]
    assert not info1["renoised"].any() and not info0["renoise_ignored"].any()
    assert torch.equal(info0["nfe"], info1["nfe"])
    # churn at the last step
    for _ in range(N - 2):
        plain.step(zero_actions(plain))
        asked.step(zero_actions(asked))
    a = zero_actions(asked)
    a[1, 0] = 1
    _, _, t0, _, info0 = plain.step(zero_actions(plain))
    _, _, t1, _, info1 = asked.step(a)
    assert t0.all() and t1.all()
    assert info1["churn_ignored"].tolist() == [False, True] and not info0["churn_ignored"].any()
    assert torch.equal(info0["final_info"]["final_x"], info1["final_info"]["final_x"])
    assert torch.equal(info0["final_info"]["episode_nfe"], info1["final_info"]["episode_nfe"])
    # renoise without budget: budget 0 -> flagged
    env = DiffusionSamplingEnv("gmm2d-bias", 1, renoise_budget=0, renoise_jumps=(0, 3))
    env.reset(seed=0)
    env.step(np.zeros((1, 2), dtype=np.int64))
    _, _, _, _, info = env.step(np.array([[0, 1]]))
    assert info["renoise_ignored"].tolist() == [True] and env.step_index.tolist() == [2]


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------


def test_registered_ids():
    assert set(diffgym.ENV_IDS) == {
        "diffgym/GMM2D-v0", "diffgym/GMM2DBias-v0", "diffgym/Digits-v0", "diffgym/GMM2DNet-v0",
        "diffgym/CMix-v0", "diffgym/DigitsWeak-v0", "diffgym/GMM2DNet4Step-v0",
    }
    for env_id in diffgym.ENV_IDS:
        spec = gym.spec(env_id)
        assert spec.entry_point == "diffgym.envs.env:DiffusionSamplingSingleEnv"
        assert spec.vector_entry_point == "diffgym.envs.env:DiffusionSamplingEnv"


def test_make_single_env_with_overrides():
    env = gym.make("diffgym/GMM2D-v0")
    assert isinstance(env.unwrapped, DiffusionSamplingSingleEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,) and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and info["nfe"] in (2, 4)
    env = gym.make(
        "diffgym/GMM2D-v0", num_steps=6, churn_levels=(0, 0.5), guidance_levels=(1,),
        means=[[0.0, 0.0], [3.0, 3.0]], weights=[0.25, 0.75], device="cpu",
    )
    u = env.unwrapped
    assert u.task.num_steps == 6 and u.sigmas.shape == (7,)
    assert env.action_space == spaces.Discrete(2)
    weights = torch.tensor([0.25, 0.75], dtype=torch.float64)
    torch.testing.assert_close(u.task.target.weights, weights)
    env.reset(seed=1)
    for _ in range(6):
        _, _, terminated, _, info = env.step(0)
    assert terminated and info["episode_length"] == 6 and "episode" not in info


def test_make_vec_vector_entry_point_with_overrides():
    env = gym.make_vec(
        "diffgym/GMM2DBias-v0", num_envs=16, vectorization_mode="vector_entry_point",
        device="cpu", num_steps=7, renoise_jumps=(0, 2), renoise_budget=1,
    )
    assert isinstance(env.unwrapped, DiffusionSamplingEnv) and env.num_envs == 16
    assert env.unwrapped.num_steps == 7 and env.unwrapped.renoise_budget == 1
    assert env.single_action_space == spaces.MultiDiscrete([2, 2])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16, 5)
    env.step(zero_actions(env.unwrapped))


@pytest.mark.skipif(not DIGITS_WEIGHTS.is_file(), reason="digits denoiser weights not shipped yet")
def test_make_vec_digits_1024():
    env = gym.make_vec(
        "diffgym/Digits-v0", num_envs=1024, vectorization_mode="vector_entry_point", device="cpu"
    )
    assert isinstance(env.unwrapped, DiffusionSamplingEnv) and env.num_envs == 1024
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1024, 64 + 3 + 10) and obs.dtype == torch.float32
    assert bool((obs[:, -10:].sum(1) == 1).all())
    obs, _, _, _, info = env.step(zero_actions(env.unwrapped))
    assert env.observation_space.contains(obs.numpy()) and bool((info["nfe"] == 2).all())


# --------------------------------------------------------------------------------------------
# Env checkers
# --------------------------------------------------------------------------------------------

OUR_CODE = re.compile(r"[/\\](diffgym|envs|agents|rewards|benchmarks)[/\\]")
ABOUT_US = re.compile(r"(?i)space|observation|action|dtype|bound|precision|seed|determinis|reset")


def _assert_no_warnings_about_us(record: list[warnings.WarningMessage]) -> None:
    ours = [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in record
        if (OUR_CODE.search(w.filename) and ".venv" not in w.filename)
        or ABOUT_US.search(str(w.message))
    ]
    assert not ours, ours


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("diffgym/GMM2D-v0", {}),
        ("diffgym/GMM2D-v0", dict(churn_levels=(0, 0.1), guidance_levels=(1,))),
        ("diffgym/GMM2DBias-v0", dict(num_steps=5)),
    ],
)
def test_gymnasium_and_sb3_env_checkers(env_id, kwargs):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        check_env(gym.make(env_id, **kwargs).unwrapped)
        sb3_check_env(gym.make(env_id, **kwargs).unwrapped, warn=True)
    _assert_no_warnings_about_us(record)


def test_single_env_episode():
    env = DiffusionSamplingSingleEnv("gmm2d-bias", num_steps=4)
    obs, info = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.shape == (5,) and info == {}
    for t in range(4):
        obs, reward, terminated, truncated, info = env.step(np.array([0, 0]))
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        assert terminated == (t == 3)
    assert obs[3] == 1.0  # the terminal observation, not the next episode's first
    assert info["episode_length"] == 4 and info["episode_nfe"] == 7 and "episode" not in info
    assert isinstance(info["final_x"], np.ndarray) and info["final_x"].shape == (2,)
    assert env.observation_space.contains(obs)
    with pytest.raises(RuntimeError, match="reset"):  # a single env does not autoreset
        env.step(np.array([0, 0]))
    assert env.reset(seed=1)[0][3] == 0.0


def test_single_env_rejects_autoreset_mode():
    with pytest.raises(TypeError, match="unexpected keyword argument 'autoreset_mode'"):
        DiffusionSamplingSingleEnv("gmm2d", autoreset_mode="SameStep")


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def _bad_action_cases():
    ok = np.zeros((4, 3), dtype=np.int64)
    out_of_range = ok.copy()
    out_of_range[2, 1] = 2  # guidance menu has 2 entries
    negative = ok.copy()
    negative[3, 0] = -1
    nan = ok.astype(np.float64)
    nan[1, 2] = np.nan
    frac = ok.astype(np.float64)
    frac[0, 0] = 0.5
    tensor_bad = torch.zeros((4, 3), dtype=torch.long)
    tensor_bad[1, 2] = 7
    tensor_nan = torch.zeros((4, 3))
    tensor_nan[3, 1] = float("nan")
    return [
        pytest.param(np.zeros((5, 3), dtype=np.int64), r"shape \(4, 3\)", id="rows"),
        pytest.param(np.zeros((4, 2), dtype=np.int64), r"shape \(4, 3\)", id="knobs"),
        pytest.param(np.zeros(4, dtype=np.int64), r"shape \(4, 3\)", id="flat"),
        pytest.param(torch.zeros((4,)), r"shape \(4, 3\)", id="tensor-shape"),
        pytest.param(ok.astype(bool), "dtype bool", id="bool"),
        pytest.param(ok.astype(str), "dtype <U", id="str"),
        pytest.param(torch.zeros((4, 3), dtype=torch.complex64), "dtype", id="complex"),
        pytest.param(out_of_range, r"invalid action 2 .*'guidance'.* sub-env 2\b", id="range"),
        pytest.param(negative, r"invalid action -1 .*'churn'.* sub-env 3\b", id="negative"),
        pytest.param(nan, r"invalid action nan .*'renoise'.* sub-env 1\b", id="nan"),
        pytest.param(frac, r"invalid action 0.5 .*'churn'.* sub-env 0\b", id="fraction"),
        pytest.param(tensor_bad, r"invalid action 7 .*'renoise'.* sub-env 1\b", id="tensor"),
        pytest.param(tensor_nan, r"invalid action nan .*'guidance'.* sub-env 3\b", id="tensor-nan"),
    ]


@pytest.mark.parametrize("actions, match", _bad_action_cases())
def test_bad_actions_raise_and_leave_state_unchanged(actions, match):
    env = DiffusionSamplingEnv(cond_task(), 4)
    env.reset(seed=0)
    rng = np.random.default_rng(8)
    for _ in range(3):
        env.step(random_actions(env, rng))
    before = state_of(env)
    with pytest.raises(ValueError, match=match):
        env.step(actions)
    assert_same_state(before, state_of(env))
    env.step(random_actions(env, rng))  # still usable


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float64])
def test_each_knobs_last_index_is_valid_and_one_more_is_not(dtype):
    """Menus of different sizes: the largest index of every knob passes and marks only that knob
    as used (an all-neutral batch marks none); one past it fails and names that knob."""
    env = DiffusionSamplingEnv(cond_task(guidance_levels=(1.0, 1.5, 2.0, 3.0)), 4)
    sizes = env.action_menus.sizes
    assert len(set(sizes)) > 1  # unequal menus: the per-knob bound matters
    zeros = np.zeros((4, len(sizes)), dtype=dtype)
    assert env._validate_actions(zeros, used=True)[1] == [False] * len(sizes)
    for j, (name, m) in enumerate(zip(env.knob_names, sizes)):
        last = zeros.copy()
        last[2, j] = m - 1
        idx, knob_used = env._validate_actions(last, used=True)
        assert idx.dtype == torch.long and int(idx[2, j]) == m - 1
        assert knob_used == [i == j for i in range(len(sizes))]
        past = zeros.copy()
        past[2, j] = m
        with pytest.raises(ValueError, match=rf"invalid action {m}\b.*'{name}'.* sub-env 2\b"):
            env._validate_actions(past, used=True)


def test_tensor_actions_of_every_kind_step_like_their_numpy_copy():
    """CPU tensors are checked as numpy views when numpy can view them, by torch ops otherwise
    (a view with the negative bit, one that needs grad, a dtype numpy lacks): every kind steps
    the env exactly as the same indices as a numpy array do."""
    rng = np.random.default_rng(3)
    env = DiffusionSamplingEnv(cond_task(), 4)
    idx = random_actions(env, rng)
    neg = torch.complex(torch.zeros(4, 3), -torch.as_tensor(idx, dtype=torch.float32)).conj()
    kinds = {
        "int64": torch.as_tensor(idx),
        "int32": torch.as_tensor(idx, dtype=torch.int32),
        "float32": torch.as_tensor(idx, dtype=torch.float32),
        "bfloat16": torch.as_tensor(idx, dtype=torch.bfloat16),
        "negative-bit view": neg.imag,
        "needs grad": torch.as_tensor(idx, dtype=torch.float32).requires_grad_(),
    }
    assert kinds["negative-bit view"].is_neg()
    ref = DiffusionSamplingEnv(cond_task(), 4)
    ref.reset(seed=0)
    want = ref.step(idx)[0]
    for name, actions in kinds.items():
        env.reset(seed=0)
        obs = env.step(actions)[0]
        assert torch.equal(obs, want), name
    assert torch.equal(kinds["int64"], torch.as_tensor(idx))  # the caller's tensor untouched


def test_step_before_reset():
    with pytest.raises(RuntimeError, match="reset"):
        DiffusionSamplingEnv("gmm2d", 2).step(np.zeros((2, 2), dtype=np.int64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_envs=0), "num_envs must be an int >= 1, got 0"),
        (dict(num_envs=-3), "num_envs must be an int >= 1, got -3"),
        (dict(num_envs=2.0), "num_envs must be an int >= 1"),
        (dict(num_envs=True), "num_envs must be an int >= 1"),
        (dict(device="tpu"), "unknown device 'tpu'"),
        (dict(device="not a device"), "unknown device"),
        (dict(churn_levels=(0.1, 0.2)), r"churn_levels\[0\] must be the neutral choice 0"),
        (dict(guidance_levels=(2.0, 1.0)), r"guidance_levels\[0\] must be the neutral choice 1"),
        (dict(renoise_jumps=(2, 0)), r"renoise_jumps\[0\] must be the neutral choice 0"),
        (dict(churn_levels=(0, -0.1)), "churn_levels must be >= 0"),
        (dict(renoise_jumps=(0, -2)), "renoise_jumps must be integers >= 0"),
        (dict(renoise_budget=-1), "renoise_budget must be >= 0"),
        (dict(churn_levels=()), "churn_levels must not be empty"),
        (dict(churn_levels=(0, float("nan"))), "churn_levels must be finite"),
        (dict(nfe_penalty=-0.1), "nfe_penalty must be finite and >= 0"),
        (dict(reward="fid"), "unknown reward 'fid'"),
        (dict(noise="sobol"), "unknown noise mode 'sobol'"),
        (dict(autoreset_mode="Sometimes"), r"unknown autoreset_mode 'Sometimes'; allowed: "
         r"AutoresetMode.NEXT_STEP \('NextStep'\), AutoresetMode.SAME_STEP"),
    ],
)
def test_construction_errors(kwargs, match):
    kwargs = {"num_envs": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        DiffusionSamplingEnv("gmm2d", **kwargs)


@pytest.mark.parametrize("cls", [DiffusionSamplingEnv, DiffusionSamplingSingleEnv])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        # Python's own words: SB3's make_vec_env and TorchRL's GymEnv retry without these
        (dict(render_mode="human"), r"render_mode='human' is not supported.*"
         r"__init__\(\) got an unexpected keyword argument 'render_mode'"),
        (dict(render_mode="rgb_array"),
         r"__init__\(\) got an unexpected keyword argument 'render_mode'"),
        (dict(frameskip=4), r"unexpected keyword argument 'frameskip'.*allowed: means"),
    ],
)
def test_foreign_keywords_are_type_errors(cls, kwargs, match):
    with pytest.raises(TypeError, match=match):
        cls("gmm2d", **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        DiffusionSamplingEnv("gmm2d", 2, device="cuda")


def test_reset_seed_forms():
    env = DiffusionSamplingEnv("gmm2d", 3, noise="per_sample")
    with pytest.raises(ValueError, match="list of 3 ints"):
        env.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="list of 3 ints"):
        env.reset(seed=[1, 2, "3"])
    by_int, _ = env.reset(seed=4)
    by_list, _ = env.reset(seed=[4, 5, 6])
    by_numpy, _ = env.reset(seed=np.int64(4))
    assert torch.equal(by_int, by_list) and torch.equal(by_int, by_numpy)


@pytest.mark.parametrize("noise", ["batch", "per_sample"])
@pytest.mark.parametrize(
    "seed, match",
    [
        (2**70, r"seed 1180591620717411303424 is out of range: "
                r"seeds must be ints in \[0, 2\*\*64 - 1\]"),
        (2**64 - 2, r"seed 18446744073709551616 is out of range"),  # seed + 2 for sub-env 2
        (-1, r"seed -1 is out of range"),
        ([0, 1, 2**64], r"seed 18446744073709551616 is out of range"),
    ],
)
def test_reset_seed_out_of_range(noise, seed, match):
    env = DiffusionSamplingEnv("gmm2d", 3, noise=noise)
    with pytest.raises(ValueError, match=match):
        env.reset(seed=seed)
    with pytest.raises(ValueError, match="out of range"):
        DiffusionSamplingSingleEnv("gmm2d").reset(seed=2**70)
    env.reset(seed=2**64 - 3)  # the largest int seed for 3 sub-envs works


# --------------------------------------------------------------------------------------------
# Autoreset modes (Gymnasium's conventions)
# --------------------------------------------------------------------------------------------


def _run(env: DiffusionSamplingEnv, seed: int, actions: list[np.ndarray]) -> list[tuple]:
    """``(obs, reward, terminated, info)`` per step, cloned."""
    env.reset(seed=seed)
    out = []
    for a in actions:
        obs, reward, terminated, _, info = env.step(a)
        out.append((obs.clone(), reward.clone(), terminated.clone(), info))
    return out


@pytest.mark.parametrize("noise", ["batch", "per_sample"])
def test_next_step_autoreset_is_same_step_shifted(noise):
    """NEXT_STEP (the default): the terminal step returns the terminal obs and the episode record
    at the top level; the next step only resets (action ignored, reward 0, no NFE); episodes of
    different lengths (renoise) reset per sub-env. Terminal obs and records equal SAME_STEP's
    final_obs / final_info for the same seed and actions (batch noise)."""
    rng = np.random.default_rng(12)
    kw = dict(nfe_penalty=0.1, noise=noise)
    nxt = DiffusionSamplingEnv("gmm2d-bias", 3, **kw)
    assert nxt.autoreset_mode == AutoresetMode.NEXT_STEP
    actions = [random_actions(nxt, rng) for _ in range(4 * N)]
    steps = _run(nxt, 3, actions)
    records = []
    pending = torch.zeros(3, dtype=torch.bool)
    for obs, reward, terminated, info in steps:
        for b in pending.nonzero().squeeze(1).tolist():  # the autoreset step
            assert obs[b, 3] == 0.0 and obs[b, 4] == 1.0 and reward[b] == 0.0
            assert info["nfe"][b] == 0 and not terminated[b] and not info["renoised"][b]
        assert "final_obs" not in info and "final_info" not in info and "episode" not in info
        if terminated.any():
            assert torch.equal(info["_episode_nfe"], terminated)
            assert torch.equal(obs[terminated, 3], torch.ones(int(terminated.sum())))
            for b in terminated.nonzero().squeeze(1).tolist():
                records.append((b, obs[b], info["final_x"][b], int(info["episode_nfe"][b]),
                                float(info["episode_return"][b]),
                                int(info["episode_length"][b])))
                assert info["episode_return"][b] == pytest.approx(-0.1 * info["episode_nfe"][b])
        else:
            assert "episode_nfe" not in info
        pending = terminated
    assert len({r[0] for r in records}) == 3 and len(records) >= 4
    if noise == "per_sample":
        return
    # the first episode of each sub-env is the same as under SAME_STEP
    same = _run(DiffusionSamplingEnv("gmm2d-bias", 3, autoreset_mode=SAME, **kw), 3, actions)
    firsts = {}
    for _, _, terminated, info in same:
        for b in terminated.nonzero().squeeze(1).tolist():
            rec = info["final_info"]
            firsts.setdefault(b, (info["final_obs"][b], rec["final_x"][b],
                                  int(rec["episode_nfe"][b]), float(rec["episode_return"][b]),
                                  int(rec["episode_length"][b])))
    for b, *rest in records:
        if b in firsts:
            ref = firsts.pop(b)
            assert torch.equal(rest[0], ref[0]) and torch.equal(rest[1], ref[1])
            assert tuple(rest[2:]) == ref[2:]
    assert not firsts


def test_next_step_per_sample_noise_is_independent_of_the_batch():
    """Per-sample noise under NEXT_STEP: sub-env b of a batch = a one-env env seeded s + b, even
    when the other sub-envs reset at different steps."""
    make = lambda n: DiffusionSamplingEnv("gmm2d-bias", n, noise="per_sample")  # noqa: E731
    rng = np.random.default_rng(13)
    env = make(3)
    actions = [random_actions(env, rng) for _ in range(2 * N + 6)]
    batch = _run(env, 21, actions)
    for b in range(3):
        single = _run(make(1), 21 + b, [a[b : b + 1] for a in actions])
        for (o, r, t, _), (o1, r1, t1, _) in zip(batch, single):
            assert torch.equal(o[b], o1[0]) and r[b] == r1[0] and t[b] == t1[0]


def test_disabled_autoreset_and_reset_mask():
    env = DiffusionSamplingEnv("gmm2d", 3, autoreset_mode="Disabled", num_steps=4)
    assert env.autoreset_mode == AutoresetMode.DISABLED
    env.reset(seed=0)
    for _ in range(4):
        obs, _, terminated, _, info = env.step(zero_actions(env))
    assert terminated.all() and info["episode_nfe"].tolist() == [7] * 3
    with pytest.raises(RuntimeError, match=r"sub-env\(s\) \[0, 1, 2\] finished.*reset_mask"):
        env.step(zero_actions(env))
    obs, _ = env.reset(options={"reset_mask": np.array([True, False, True])})
    assert obs[:, 3].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(RuntimeError, match=r"sub-env\(s\) \[1\] finished"):
        env.step(zero_actions(env))
    obs, _ = env.reset(options={"reset_mask": torch.tensor([False, True, False])})
    obs, _, terminated, _, _ = env.step(zero_actions(env))
    assert obs[:, 3].tolist() == [0.25] * 3 and not terminated.any()


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"reset_mask": [True, False]}, TypeError, "numpy array or torch tensor, got list"),
        ({"reset_mask": np.array([1, 0])}, ValueError,
         r"\(2,\) bool array, got shape \(2,\) and dtype int64"),
        ({"reset_mask": np.array([True])}, ValueError, r"\(2,\) bool array, got shape \(1,\)"),
        ({"reset_mask": np.array([False, False])}, ValueError, "at least one sub-env"),
    ],
)
def test_bad_reset_mask(options, error, match):
    env = DiffusionSamplingEnv("gmm2d", 2)
    with pytest.raises(RuntimeError, match="without a reset_mask first"):
        env.reset(options={"reset_mask": np.array([True, True])})
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.reset(options=options)
    with pytest.raises(ValueError, match="seed cannot be combined"):
        env.reset(seed=1, options={"reset_mask": np.array([True, True])})


def test_set_autoreset_mode_refuses_pending_resets():
    env = DiffusionSamplingEnv("gmm2d", 2, num_steps=2)
    env.reset(seed=0)
    env.set_autoreset_mode("SameStep")
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    env.set_autoreset_mode(AutoresetMode.NEXT_STEP)
    for _ in range(2):
        env.step(zero_actions(env))
    with pytest.raises(ValueError, match=r"cannot switch autoreset_mode to SAME_STEP while sub"):
        env.set_autoreset_mode(AutoresetMode.SAME_STEP)
    env.reset()
    env.set_autoreset_mode(AutoresetMode.SAME_STEP)
