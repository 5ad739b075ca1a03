"""The SB3 face of the env (``to_sb3``): numpy shapes and dtypes, terminal infos, episode
statistics read by SB3, attribute access and seeding, and a PPO smoke run that learns to avoid
costly actions from the ``nfe_penalty`` reward alone."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

from diffgym.envs import DiffusionSamplingEnv, SB3VecEnv, to_sb3

N = 18



def random_actions(venv: VecEnv, rng: np.random.Generator) -> np.ndarray:
    nvec = venv.action_space.nvec
    return np.stack([rng.integers(0, n, venv.num_envs) for n in nvec], axis=1)


def test_is_an_sb3_vecenv_with_numpy_io(device):
    env = DiffusionSamplingEnv("gmm2d", 5, device=device)
    venv = to_sb3(env)
    assert isinstance(venv, VecEnv) and isinstance(venv, SB3VecEnv)
    assert venv.num_envs == 5
    assert venv.observation_space == env.single_observation_space
    assert venv.action_space == env.single_action_space
    assert venv.render_mode is None
    obs = venv.reset()
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (5, 5)
    rng = np.random.default_rng(0)
    obs, reward, done, infos = venv.step(random_actions(venv, rng))
    assert obs.dtype == np.float32 and obs.shape == (5, 5)
    assert isinstance(reward, np.ndarray) and reward.dtype == np.float32 and reward.shape == (5,)
    assert isinstance(done, np.ndarray) and done.dtype == np.bool_ and done.shape == (5,)
    assert isinstance(infos, list) and len(infos) == 5
    assert all(set(i) == {"nfe"} and i["nfe"] in (2, 4) for i in infos)
    assert all(venv.observation_space.contains(o) for o in obs)


def test_terminal_infos_match_the_vector_env():
    same = AutoresetMode.SAME_STEP
    twin = DiffusionSamplingEnv("gmm2d", 4, nfe_penalty=0.1, autoreset_mode=same)
    venv = to_sb3(DiffusionSamplingEnv("gmm2d", 4, nfe_penalty=0.1))
    assert venv.env.autoreset_mode == AutoresetMode.SAME_STEP  # switched for SB3
    rng = np.random.default_rng(1)
    venv.seed(3)
    obs = venv.reset()
    obs_t, _ = twin.reset(seed=3)
    np.testing.assert_array_equal(obs, obs_t.numpy())
    for t in range(N):
        a = random_actions(venv, rng)
        obs, reward, done, infos = venv.step(a)
        obs_t, reward_t, term_t, _, info_t = twin.step(a)
        np.testing.assert_array_equal(obs, obs_t.numpy())
        np.testing.assert_array_equal(reward, reward_t.numpy())
        np.testing.assert_array_equal(done, term_t.numpy())
        if t < N - 1:
            assert not done.any() and not any("episode" in i for i in infos)
    assert done.all()
    for b, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is False
        np.testing.assert_array_equal(info["terminal_observation"], info_t["final_obs"][b].numpy())
        assert info["terminal_observation"][3] == 1.0 and obs[b, 3] == 0.0
        ep = info["episode"]
        assert set(ep) == {"r", "l", "t", "nfe"}
        assert ep["l"] == N and ep["nfe"] == int(info_t["final_info"]["episode_nfe"][b])
        assert ep["r"] == pytest.approx(-0.1 * ep["nfe"], rel=1e-9)
        assert isinstance(ep["r"], float) and isinstance(ep["t"], float) and ep["t"] >= 0


def test_attributes_methods_and_indices():
    env = DiffusionSamplingEnv("gmm2d", 3)
    venv = to_sb3(env)
    assert venv.get_attr("render_mode") == [None] * 3
    assert venv.get_attr("num_steps") == [N] * 3
    assert venv.get_attr("nfe_penalty", indices=[0, 2]) == [0.0, 0.0]
    assert venv.get_attr("num_steps", indices=1) == [N]
    venv.set_attr("nfe_penalty", 0.5)
    assert env.nfe_penalty == 0.5
    venv.reset()
    _, reward, _, infos = venv.step(np.zeros((3, 2), dtype=np.int64))
    np.testing.assert_allclose(reward, [-0.5 * i["nfe"] for i in infos])
    levels = venv.env_method("knob_values", np.array([[1, 2], [0, 0], [3, 4]]))
    assert len(levels) == 3
    assert levels[0]["churn"].tolist() == pytest.approx([0.1, 0.0, 0.5])
    assert levels[0]["guidance"].tolist() == pytest.approx([2.0, 1.0, 4.0])
    assert venv.env_method("knob_values", np.zeros((3, 2)), indices=[1])[0]["churn"].shape == (3,)
    assert venv.env_is_wrapped(object) == [False] * 3
    assert venv.task is env.task
    with pytest.raises(IndexError, match="out of range"):
        venv.get_attr("num_steps", indices=[3])


@pytest.mark.parametrize("noise", ["batch", "per_sample"])
def test_seed_then_reset_is_reproducible(noise):
    venv = to_sb3(DiffusionSamplingEnv("gmm2d", 4, noise=noise))
    rng = np.random.default_rng(2)
    actions = [random_actions(venv, rng) for _ in range(N + 3)]

    def run(seed):
        assert venv.seed(seed) == [seed + b for b in range(4)]
        out = [venv.reset()]
        for a in actions:
            obs, _, done, infos = venv.step(a)
            out.append(obs)
            out += [i["terminal_observation"] for i in infos if "terminal_observation" in i]
        return out

    a, b, c = run(5), run(5), run(6)
    assert len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[-1], c[-1])
    # without a new seed the next reset starts a different episode
    assert not np.array_equal(venv.reset(), a[0])


def test_to_sb3_unwraps_and_rejects_others():
    import gymnasium as gym

    env = gym.make_vec(
        "diffgym/GMM2D-v0", num_envs=2, vectorization_mode="vector_entry_point", num_steps=4
    )
    assert to_sb3(env).env is env.unwrapped
    with pytest.raises(TypeError, match="DiffusionSamplingEnv"):
        SB3VecEnv(gym.make_vec("CartPole-v1", num_envs=2))


def test_to_sb3_refuses_gymnasium_wrappers():
    """Before, to_sb3 unwrapped silently: TransformReward(env, r + 5) gave SB3 rewards of 0."""
    from gymnasium.wrappers.vector import NormalizeObservation, TransformReward

    from diffgym.envs import TorchToNumpy

    env = DiffusionSamplingEnv("gmm2d", 2)
    wrapped = NormalizeObservation(TransformReward(TorchToNumpy(env), lambda r: r + 5))
    with pytest.raises(
        TypeError,
        match=r"inside Gymnasium wrapper\(s\) NormalizeObservation, TransformReward, TorchToNumpy"
        r", which SB3 would bypass; wrap the SB3 VecEnv instead.*VecNormalize",
    ):
        to_sb3(wrapped)
    assert to_sb3(wrapped.unwrapped).env is env  # dropping them on purpose is explicit


def test_to_sb3_refuses_an_env_awaiting_a_next_step_reset():
    env = DiffusionSamplingEnv("gmm2d", 2, num_steps=2)
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="await a reset; call reset"):
        to_sb3(env)
    env.reset()
    assert to_sb3(env).env.autoreset_mode == AutoresetMode.SAME_STEP


def test_ppo_learns_to_avoid_costly_guidance():
    """Only the NFE penalty: guided steps (w != 1) cost 2x NFE, so PPO should stop guiding.

    Rollouts of 64 envs x 18 steps (one episode each), a large learning rate and 8 updates; the
    fraction of guided actions (stochastic policy, one seeded episode) falls from ~0.8 (4 of 5
    menu entries) to near 0, and the deterministic policy stops guiding.
    """
    env = DiffusionSamplingEnv("gmm2d", 64, nfe_penalty=0.1)
    venv = to_sb3(env)
    model = PPO(
        "MlpPolicy", venv, n_steps=N, batch_size=576, n_epochs=4, learning_rate=1e-2,
        gamma=0.9, ent_coef=0.0, seed=0, device="cpu",
    )

    def guided_fraction(deterministic: bool) -> float:
        venv.seed(123)
        obs, guided = venv.reset(), []
        for _ in range(N):
            a, _ = model.predict(obs, deterministic=deterministic)
            guided.append(a[:, 1] != 0)  # guidance menu (1, 1.5, 2, 3, 4): index 0 is w = 1
            obs, *_ = venv.step(a)
        return float(np.mean(guided))

    before = guided_fraction(deterministic=False)
    model.learn(total_timesteps=8 * 64 * N)
    after, after_det = guided_fraction(deterministic=False), guided_fraction(deterministic=True)
    assert before > 0.7, before
    assert after < 0.2 and after < before - 0.5, (before, after)
    assert after_det < 0.05, after_det
    # SB3 read the episode statistics (ep_info_buffer -> rollout/ep_rew_mean)
    episodes = list(model.ep_info_buffer)
    assert len(episodes) == 100 and all(e["l"] == N for e in episodes)
    last = episodes[-64:]
    assert np.mean([e["nfe"] for e in last]) < 1.2 * (2 * N - 1)
    assert np.mean([e["r"] for e in last]) == pytest.approx(
        -0.1 * np.mean([e["nfe"] for e in last]), rel=1e-6
    )
