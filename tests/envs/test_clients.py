"""Every standard client, unmodified: Gymnasium's vector and single-env wrappers, SB3's
``make_vec_env``, a CleanRL-style PPO loop, TorchRL's ``GymEnv``/``GymWrapper`` and rl_zoo3's
train entry point (the last two skip when not installed). Each test names the failure it pins."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import vector as vw

import diffgym  # noqa: F401  (registers the env ids)
from diffgym.envs import DiffusionSamplingEnv, TorchToNumpy

ENV_ID = "diffgym/GMM2D-v0"
STEPS = 4  # episode length of the small env used here
NFE = 2 * STEPS - 1  # Heun: 2 per step, 1 at the last (neutral actions)
KW = {"num_steps": STEPS, "churn_levels": (0.0,), "guidance_levels": (1.0,), "nfe_penalty": 0.5}
"""A one-knob-free env: every action is neutral, so every episode has NFE = 7 and return -3.5."""


def make_vector(num_envs: int, mode: str) -> gym.vector.VectorEnv:
    """The registered env as a numpy vector env: the batched torch env behind
    :class:`TorchToNumpy` (``vector_entry_point``), or a ``SyncVectorEnv`` of single envs."""
    env = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode=mode, **KW)
    return TorchToNumpy(env) if mode == "vector_entry_point" else env


# --------------------------------------------------------------------------------------------
# Gymnasium vector wrappers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["vector_entry_point", "sync"])
def test_gymnasium_vector_wrappers(mode):
    """Before: RecordEpisodeStatistics was a TypeError on torch rewards and, on "sync", "key
    'episode' already exists in info"; NormalizeObservation refused the SAME_STEP autoreset;
    NormalizeReward and DictInfoToList crashed on torch outputs."""
    env = make_vector(3, mode)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    env = vw.RecordEpisodeStatistics(env)
    env = vw.NormalizeObservation(env)
    env = vw.NormalizeReward(env, gamma=1.0)
    env = vw.TransformReward(env, lambda r: r + 5.0)
    env = vw.DictInfoToList(env)
    obs, infos = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.shape == (3, 5) and isinstance(infos, list)
    episodes = []
    for t in range(3 * (STEPS + 1)):
        obs, reward, terminated, truncated, infos = env.step(env.action_space.sample())
        assert isinstance(obs, np.ndarray) and np.isfinite(obs).all()
        assert isinstance(reward, np.ndarray) and reward.shape == (3,)
        assert isinstance(terminated, np.ndarray) and terminated.dtype == np.bool_
        assert len(infos) == 3 and all(isinstance(i, dict) for i in infos)
        for b in np.flatnonzero(terminated):
            episodes.append(infos[b])
        if t % (STEPS + 1) == STEPS:  # NEXT_STEP: the step after the terminal one only resets
            # (the batched env reports nfe 0; SyncVectorEnv returns the reset's empty info)
            assert all(i.get("nfe", 0) == 0 for i in infos) and not terminated.any()
    assert len(episodes) == 3 * 3
    for info in episodes:
        # the wrapper's statistics (raw rewards, before NormalizeReward/TransformReward) ...
        assert info["episode"]["l"] == STEPS
        assert info["episode"]["r"] == pytest.approx(-0.5 * NFE)
        # ... next to diffgym's own record
        assert info["episode_nfe"] == NFE and info["episode_length"] == STEPS
        assert info["final_x"].shape == (2,)
    env.close()


def test_torch_env_needs_torch_to_numpy_for_numpy_wrappers():
    """The documented path: the env's outputs are torch; TorchToNumpy gives numpy, infos too."""
    base = DiffusionSamplingEnv("gmm2d", 2, **KW)
    env = TorchToNumpy(base)
    assert env.metadata is base.metadata and env.unwrapped is base
    obs, info = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and info == {}
    for _ in range(STEPS):
        obs, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.int64))
    assert reward.dtype == np.float32 and terminated.all() and truncated.dtype == np.bool_
    assert all(isinstance(v, np.ndarray) for v in info.values())
    assert info["episode_nfe"].tolist() == [NFE, NFE] and info["_episode_nfe"].all()
    # same-step autoreset: the nested final_info is converted too
    base = DiffusionSamplingEnv("gmm2d", 2, autoreset_mode=AutoresetMode.SAME_STEP, **KW)
    env = TorchToNumpy(base)
    env.reset(seed=0)
    for _ in range(STEPS):
        _, _, terminated, _, info = env.step(np.zeros(2, dtype=np.int64))
    assert isinstance(info["final_obs"], np.ndarray)
    assert isinstance(info["final_info"]["episode_nfe"], np.ndarray)


# --------------------------------------------------------------------------------------------
# Single-env wrappers and checkers
# --------------------------------------------------------------------------------------------


def test_gymnasium_single_env_wrappers():
    """Before: the single env wrote its own ``episode`` key and RecordEpisodeStatistics asserted
    at the end of an episode."""
    env = gym.make(ENV_ID, **KW)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = gym.wrappers.NormalizeObservation(env)
    env = gym.wrappers.NormalizeReward(env, gamma=1.0)
    env = gym.wrappers.TransformReward(env, lambda r: r + 5.0)
    for episode in range(3):
        obs, info = env.reset(seed=episode)
        terminated = False
        while not terminated:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert isinstance(obs, np.ndarray) and isinstance(reward, float)
        assert info["episode"]["l"] == STEPS and info["episode"]["r"] == pytest.approx(-3.5)
        assert info["episode_nfe"] == NFE
    env.close()


def test_gymnasium_env_checker_on_the_made_env():
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning from the passive checker either
        env = gym.make(ENV_ID, num_steps=STEPS)
        check_env(env.unwrapped)
        env.reset(seed=0)
        for _ in range(STEPS):
            env.step(env.action_space.sample())


# --------------------------------------------------------------------------------------------
# Stable-Baselines3
# --------------------------------------------------------------------------------------------


def test_sb3_make_vec_env_and_ppo():
    """Before: make_vec_env passed render_mode="rgb_array", the env raised ValueError and SB3
    (which retries only on TypeError) failed."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*render_mode='rgb_array'.*")
        venv = make_vec_env(ENV_ID, n_envs=2, seed=0, env_kwargs=KW)
    model = PPO("MlpPolicy", venv, n_steps=2 * (STEPS + 1), batch_size=10, n_epochs=1, seed=0,
                device="cpu")
    model.learn(total_timesteps=4 * (STEPS + 1))
    episodes = list(model.ep_info_buffer)
    assert episodes and all(e["l"] == STEPS for e in episodes)
    assert all(e["r"] == pytest.approx(-0.5 * NFE) for e in episodes)


def test_sb3_with_the_batched_env_keeps_nfe_in_episode_infos():
    from stable_baselines3 import PPO

    from diffgym.envs import to_sb3

    venv = to_sb3(DiffusionSamplingEnv("gmm2d", 4, **KW))
    model = PPO("MlpPolicy", venv, n_steps=2 * STEPS, batch_size=16, n_epochs=1, seed=0,
                device="cpu")
    model.learn(total_timesteps=4 * 2 * STEPS)
    episodes = list(model.ep_info_buffer)
    assert episodes and all(set(e) == {"r", "l", "t", "nfe"} for e in episodes)
    assert all(e["nfe"] == NFE and e["l"] == STEPS for e in episodes)


# --------------------------------------------------------------------------------------------
# A CleanRL-style PPO loop (numpy env I/O, RecordEpisodeStatistics), as in cleanrl's ppo.py
# --------------------------------------------------------------------------------------------


class _Agent(torch.nn.Module):
    def __init__(self, obs_dim: int, nvec: list[int]) -> None:
        super().__init__()
        self.nvec = nvec
        self.critic = torch.nn.Sequential(
            torch.nn.Linear(obs_dim, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        )
        self.actor = torch.nn.Sequential(
            torch.nn.Linear(obs_dim, 32), torch.nn.Tanh(), torch.nn.Linear(32, sum(nvec))
        )

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        split = torch.split(self.actor(x), self.nvec, dim=1)
        dists = [torch.distributions.Categorical(logits=logits) for logits in split]
        if action is None:
            action = torch.stack([d.sample() for d in dists], dim=1)
        logprob = torch.stack([d.log_prob(a) for d, a in zip(dists, action.T)]).sum(0)
        entropy = torch.stack([d.entropy() for d in dists]).sum(0)
        return action, logprob, entropy, self.critic(x)


def cleanrl_ppo(envs: gym.vector.VectorEnv, iterations: int, num_steps: int) -> list[float]:
    """cleanrl's ppo.py, compressed (GAE, clipped surrogate, value loss, entropy bonus);
    returns the episodic returns that RecordEpisodeStatistics reported."""
    torch.manual_seed(0)
    n = envs.num_envs
    nvec = [int(k) for k in envs.single_action_space.nvec]
    agent = _Agent(int(np.prod(envs.single_observation_space.shape)), nvec)
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    obs = torch.zeros((num_steps, n, *envs.single_observation_space.shape))
    actions = torch.zeros((num_steps, n, len(nvec)), dtype=torch.long)
    logprobs, rewards, dones, values = (torch.zeros((num_steps, n)) for _ in range(4))
    next_obs, _ = envs.reset(seed=1)
    next_obs, next_done = torch.Tensor(next_obs), torch.zeros(n)
    returns_seen = []
    for _ in range(iterations):
        for step in range(num_steps):
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            values[step], actions[step], logprobs[step] = value.flatten(), action, logprob
            next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            next_done = np.logical_or(terminations, truncations)
            rewards[step] = torch.tensor(reward).view(-1)
            next_obs, next_done = torch.Tensor(next_obs), torch.Tensor(next_done)
            if "episode" in infos:
                returns_seen += infos["episode"]["r"][infos["_episode"]].tolist()
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages, lastgaelam = torch.zeros_like(rewards), 0
            for t in reversed(range(num_steps)):
                nextnonterminal = 1.0 - (next_done if t == num_steps - 1 else dones[t + 1])
                nextvalues = next_value if t == num_steps - 1 else values[t + 1]
                delta = rewards[t] + 0.99 * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + 0.99 * 0.95 * nextnonterminal * lastgaelam
            returns = advantages + values
        b_obs = obs.reshape((-1, *envs.single_observation_space.shape))
        _, newlogprob, entropy, newvalue = agent.get_action_and_value(
            b_obs, actions.reshape(-1, len(nvec))
        )
        ratio = (newlogprob - logprobs.reshape(-1)).exp()
        b_adv = advantages.reshape(-1)
        b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
        pg_loss = torch.max(-b_adv * ratio, -b_adv * ratio.clamp(0.8, 1.2)).mean()
        v_loss = 0.5 * ((newvalue.view(-1) - returns.reshape(-1)) ** 2).mean()
        loss = pg_loss - 0.01 * entropy.mean() + 0.5 * v_loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
        optimizer.step()
    return returns_seen


@pytest.mark.parametrize("mode", ["sync", "vector_entry_point"])
def test_cleanrl_style_ppo_loop(mode):
    """cleanrl's pattern as written: SyncVectorEnv of gym.make envs each in
    RecordEpisodeStatistics ("sync"), or the batched env behind TorchToNumpy with the vector
    RecordEpisodeStatistics; a few hundred steps."""
    kw = {"num_steps": 6, "nfe_penalty": 0.1}
    if mode == "sync":

        def make_env():
            return gym.wrappers.RecordEpisodeStatistics(gym.make(ENV_ID, **kw))

        envs = gym.vector.SyncVectorEnv([make_env for _ in range(4)])
    else:
        envs = vw.RecordEpisodeStatistics(
            TorchToNumpy(gym.make_vec(ENV_ID, 4, vectorization_mode=mode, **kw))
        )
    returns = cleanrl_ppo(envs, iterations=3, num_steps=28)  # 3 * 28 * 4 = 336 steps
    envs.close()
    assert len(returns) >= 4 * 3 * 28 // 7 - 4  # one episode per 6 steps + 1 autoreset step
    assert all(r < 0 for r in returns)  # -0.1 per NFE


# --------------------------------------------------------------------------------------------
# TorchRL (optional: pip install "diffgym[torchrl]")
# --------------------------------------------------------------------------------------------


def _torchrl():
    try:
        import torchrl  # noqa: F401
        from torchrl.envs import GymEnv, GymWrapper
        from torchrl.envs.utils import check_env_specs
    except Exception as err:  # ImportError, or a version clash with torch
        pytest.skip(f"torchrl is not usable here ({type(err).__name__}: {err})")
    return GymEnv, GymWrapper, check_env_specs


def test_torchrl_gym_env():
    """Before: GymEnv passes frameskip, which the env rejected as an unknown task override
    (not in the TypeError words GymEnv retries on)."""
    GymEnv, _, check_env_specs = _torchrl()
    env = GymEnv(ENV_ID, **KW)
    check_env_specs(env)
    td = env.rollout(2 * STEPS, break_when_any_done=False)
    done = td["next", "done"].squeeze(-1).tolist()
    assert done == [False] * (STEPS - 1) + [True] + [False] * (STEPS - 1) + [True]


@pytest.mark.parametrize("mode", [AutoresetMode.DISABLED, AutoresetMode.SAME_STEP])
def test_torchrl_gym_wrapper_on_the_batched_env(mode):
    """Before: GymWrapper(batched env) failed because the env had no ``autoreset_mode``.
    TorchRL takes SAME_STEP or DISABLED (it refuses NEXT_STEP with its own error)."""
    _, GymWrapper, check_env_specs = _torchrl()
    env = GymWrapper(DiffusionSamplingEnv("gmm2d", 3, autoreset_mode=mode, **KW))
    assert tuple(env.batch_size) == (3,)
    check_env_specs(env)
    td = env.rollout(2 * STEPS, break_when_any_done=False)
    step_frac = td["observation"][..., 3]
    expected = [i / STEPS for i in range(STEPS)] * 2  # every sub-env restarts after STEPS steps
    assert torch.allclose(step_frac, torch.tensor([expected] * 3))
    with pytest.raises(RuntimeError, match="NEXT_STEP"):
        GymWrapper(DiffusionSamplingEnv("gmm2d", 3, **KW))


# --------------------------------------------------------------------------------------------
# rl_zoo3 (only when installed)
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="rl_zoo3 not installed")
def test_rl_zoo3_train_entry_point(tmp_path):
    conf = tmp_path / "ppo.yml"
    conf.write_text(
        f"{ENV_ID}:\n  policy: MlpPolicy\n  n_envs: 2\n  n_timesteps: 80\n  n_steps: 20\n"
        f"  batch_size: 20\n  n_epochs: 1\n  env_kwargs:\n    num_steps: {STEPS}\n"
    )
    cmd = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", ENV_ID,
        "--gym-packages", "diffgym", "--conf-file", str(conf), "-f", str(tmp_path / "logs"),
        "--seed", "0", "--device", "cpu",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
