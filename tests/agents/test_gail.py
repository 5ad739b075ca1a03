"""REINFORCE (and the registry's agents) as imitation's GAIL generator."""

from __future__ import annotations

import numpy as np
import torch
from imitation.algorithms.adversarial.gail import GAIL
from imitation.data.types import Transitions
from imitation.rewards.reward_nets import BasicRewardNet
from imitation.util import logger as imit_logger

from diffgym.agents import REINFORCE, make_agent
from diffgym.envs import DiffusionSamplingEnv, to_sb3
from diffgym.envs.features import featurize


def _expert_transitions(env: DiffusionSamplingEnv, n: int) -> Transitions:
    """Noised data at the schedule's levels, featurised like env observations (design §4)."""
    gen = torch.Generator().manual_seed(0)
    x0, _ = env.task.sample_data(n, gen)
    i = torch.randint(0, env.num_steps, (n,), generator=gen)
    sigmas = env.sigmas

    def states(idx: torch.Tensor) -> np.ndarray:
        x = x0 + sigmas[idx, None] * torch.randn(x0.shape, generator=gen)
        zeros = torch.zeros(n)
        return featurize(x, sigmas[idx], idx / env.num_steps, zeros, None,
                         sigma_data=env.task.sigma_data, num_classes=0).numpy()

    acts = np.zeros((n, len(env.knob_names)), dtype=np.int64)
    return Transitions(
        obs=states(i), acts=acts, infos=np.array([{}] * n), next_obs=states(i + 1),
        dones=(i + 1 == env.num_steps).numpy(),
    )


def test_reinforce_is_a_gail_generator(tmp_path):
    env = DiffusionSamplingEnv("gmm2d", 8)
    venv = to_sb3(env)
    agent = make_agent("reinforce", venv, seed=0, n_steps=18)
    assert isinstance(agent, REINFORCE)
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space,
                                use_action=False, use_next_state=True, use_done=False)
    trainer = GAIL(
        demonstrations=_expert_transitions(env, 256),
        demo_batch_size=64,
        venv=venv,
        gen_algo=agent,
        reward_net=reward_net,
        n_disc_updates_per_round=1,
        custom_logger=imit_logger.configure(str(tmp_path), ["csv"]),
        log_dir=tmp_path,
    )
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    trainer.train(trainer.gen_train_timesteps)  # one round
    assert agent.num_timesteps == 18 * 8
    assert any(not torch.equal(before[k], v) for k, v in agent.policy.state_dict().items())
    assert "train/complete_fraction" in (tmp_path / "progress.csv").read_text()
