"""Smoke test of the dependency set: imitation 1.0.1 (installed ``--no-deps``) must train GAIL and
AIRL on our gymnasium 1.4 / stable-baselines3 2.9 versions, so a broken combination fails loudly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")

from imitation.algorithms.adversarial.airl import AIRL  # noqa: E402
from imitation.algorithms.adversarial.gail import GAIL  # noqa: E402
from imitation.data import rollout  # noqa: E402
from imitation.data.wrappers import RolloutInfoWrapper  # noqa: E402
from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet  # noqa: E402
from imitation.util import logger as imit_logger  # noqa: E402
from imitation.util.networks import RunningNorm  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

NUM_ENVS = 2
N_STEPS = 64
TOTAL_TIMESTEPS = 2 * N_STEPS * NUM_ENVS  # two adversarial rounds



@pytest.fixture
def venv():
    env = DummyVecEnv(
        [lambda: RolloutInfoWrapper(gym.make("CartPole-v1")) for _ in range(NUM_ENVS)]
    )
    env.seed(0)
    yield env
    env.close()


@pytest.fixture
def demonstrations(venv):
    """Transitions of a random policy (the smoke test checks plumbing, not imitation quality)."""
    rng = np.random.default_rng(0)
    trajs = rollout.rollout(
        None, venv, rollout.make_sample_until(min_timesteps=None, min_episodes=4), rng=rng
    )
    transitions = rollout.flatten_trajectories(trajs)
    assert len(transitions) >= 4 * 8  # CartPole episodes last at least 8 steps
    return transitions


@pytest.mark.parametrize(
    "trainer_cls, net_cls",
    [(GAIL, BasicRewardNet), (AIRL, BasicShapedRewardNet)],
    ids=["GAIL", "AIRL"],
)
def test_adversarial_trainer_runs(
    trainer_cls, net_cls, venv, demonstrations, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)  # anything written by default goes to the temp dir
    torch.manual_seed(0)
    learner = PPO(
        "MlpPolicy", venv, n_steps=N_STEPS, batch_size=32, n_epochs=1, seed=0, device="cpu"
    )
    reward_net = net_cls(
        venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm
    )
    before = [p.detach().clone() for p in reward_net.parameters()]
    trainer = trainer_cls(
        demonstrations=demonstrations,
        demo_batch_size=64,
        gen_replay_buffer_capacity=2 * N_STEPS * NUM_ENVS,
        n_disc_updates_per_round=2,
        venv=venv,
        gen_algo=learner,
        reward_net=reward_net,
        allow_variable_horizon=True,
        log_dir=tmp_path,
        custom_logger=imit_logger.configure(tmp_path, format_strs=[]),
    )
    trainer.train(total_timesteps=TOTAL_TIMESTEPS)

    assert learner.num_timesteps >= TOTAL_TIMESTEPS
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, reward_net.parameters())]
    assert any(changed), "the discriminator was not updated"
    # the learned reward is finite on a batch of expert transitions
    batch = demonstrations[:16]
    rewards = trainer.reward_test.predict_processed(
        batch.obs, batch.acts, batch.next_obs, batch.dones
    )
    assert rewards.shape == (16,) and np.isfinite(rewards).all()
