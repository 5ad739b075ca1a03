"""make_irl_trainer: imitation's GAIL / AIRL on the sampling env with sigma-matched experts."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from imitation.algorithms.adversarial.airl import AIRL
from imitation.algorithms.adversarial.gail import GAIL
from imitation.util.logger import configure
from stable_baselines3 import PPO

from diffgym.envs import DiffusionSamplingEnv, to_sb3
from diffgym.rewards import (
    DIVERGENCES,
    NoiseConditionedDiscriminator,
    NoisedDataExpert,
    RewardTransform,
    make_irl_trainer,
)

IRL_KEYS = (
    "irl/disc_loss",
    "irl/disc_acc",
    "irl/disc_acc_expert",
    "irl/disc_acc_gen",
    "irl/logit_expert_mean",
    "irl/logit_gen_mean",
    "irl/reward_mean",
)
NUM_ENVS, N_STEPS = 4, 16


def _ppo(venv, device="cpu") -> PPO:
    return PPO(
        "MlpPolicy", venv, n_steps=N_STEPS, batch_size=32, n_epochs=1, seed=0, device=device,
        policy_kwargs={"net_arch": [32]},
    )


def _venv(task="gmm2d", device="cpu", **kwargs):
    venv = to_sb3(DiffusionSamplingEnv(task, NUM_ENVS, device=device, **kwargs))
    venv.seed(0)
    return venv


def _rows(folder) -> list[dict[str, str]]:
    with open(folder / "progress.csv") as f:
        return list(csv.DictReader(f))


def _random_actions(venv, rng) -> np.ndarray:
    return np.stack([rng.integers(0, n, venv.num_envs) for n in venv.action_space.nvec], axis=1)


def test_gail_ppo_end_to_end(tmp_path):
    venv = _venv()
    trainer = make_irl_trainer(
        "gail", "js", venv=venv, gen_algo=_ppo(venv), seed=0,
        custom_logger=configure(tmp_path, ["csv"]), n_disc_updates_per_round=2,
    )
    assert isinstance(trainer, GAIL)
    assert trainer.demo_batch_size == NUM_ENVS * N_STEPS
    trainer.train(2 * NUM_ENVS * N_STEPS)  # two rounds
    rows = _rows(tmp_path)
    assert len(rows) == 2
    for row in rows:
        for key in IRL_KEYS:
            assert math.isfinite(float(row[key])), (key, row[key])
        assert 0.0 <= float(row["irl/disc_acc"]) <= 1.0
        assert float(row["irl/disc_loss"]) > 0
        assert float(row["irl/reward_mean"]) > 0  # softplus
        assert "mean/disc/disc_loss" in row  # imitation's own keys stay

    # the discriminator batches of the real replay buffer are sigma-matched
    batches = list(trainer._make_disc_train_batches())
    assert len(batches) == 1
    b = batches[0]
    m = trainer.demo_minibatch_size
    assert torch.equal(b["labels_expert_is_one"], torch.cat([torch.ones(m), torch.zeros(m)]).long())
    for key in ("state", "next_state"):
        assert isinstance(b[key], torch.Tensor) and b[key].shape == (2 * m, 5)
        assert torch.equal(b[key][:m, 2:], b[key][m:, 2:])  # sigma, step, budget: matched
        assert not torch.equal(b[key][:m, :2], b[key][m:, :2])
    assert b["log_policy_act_prob"] is None  # GAIL's logit ignores it: never computed


@pytest.mark.parametrize("divergence", list(DIVERGENCES))
def test_rewards_have_shape_num_envs(divergence):
    venv = _venv()
    trainer = make_irl_trainer(divergence=divergence, venv=venv, gen_algo=_ppo(venv), lam=2.0,
                               pr_temperature=0.5 if divergence == "pr" else 0.0)
    venv_train = trainer.venv_train
    rng = np.random.default_rng(0)
    obs = venv_train.reset()
    for _ in range(3):
        acts = _random_actions(venv, rng)
        next_obs, rew, dones, _ = venv_train.step(acts)
        assert rew.shape == (NUM_ENVS,) and np.isfinite(rew).all()
        direct = trainer.reward_train.predict_processed(obs, acts, next_obs, dones)
        assert direct.shape == (NUM_ENVS,)
        np.testing.assert_allclose(direct, rew, rtol=1e-5)
        logit = trainer._reward_net.predict(obs, acts, next_obs, dones)
        expected = RewardTransform(divergence, lam=2.0,
                                   temperature=0.5 if divergence == "pr" else 0.0)(
            torch.as_tensor(logit)
        )
        np.testing.assert_allclose(direct, expected.numpy(), rtol=1e-5, atol=1e-6)
        obs = next_obs


def test_train_disc_with_given_tensor_batches(device):
    """Tensors on the env/policy device go through without a numpy round trip."""
    venv = _venv("gmm2d-bias", device=device)
    trainer = make_irl_trainer("gail", "rkl", venv=venv, gen_algo=_ppo(venv, device),
                               demo_batch_size=8, seed=0)
    env = venv.env
    obs, _ = env.reset(seed=1)
    acts = torch.zeros(NUM_ENVS, 2, dtype=torch.long, device=device)
    next_obs, _, term, trunc, _ = env.step(acts)
    gen = {
        "obs": torch.cat([obs, obs]), "acts": torch.cat([acts, acts]),
        "next_obs": torch.cat([next_obs, next_obs]), "dones": torch.cat([term, term]),
    }
    stats = trainer.train_disc(gen_samples=gen)
    assert 0.0 <= stats["disc_acc"] <= 1.0
    b = next(iter(trainer._make_disc_train_batches(gen_samples=gen)))
    assert b["next_state"].device.type == torch.device(device).type
    assert torch.equal(b["next_state"][:8, 2:], b["next_state"][8:, 2:])


def test_airl_one_round(tmp_path):
    venv = _venv()
    trainer = make_irl_trainer(
        "airl", "rkl", venv=venv, gen_algo=_ppo(venv), seed=0,
        custom_logger=configure(tmp_path, ["csv"]), n_disc_updates_per_round=1,
    )
    assert isinstance(trainer, AIRL)
    trainer.train(NUM_ENVS * N_STEPS)
    row = _rows(tmp_path)[-1]
    for key in IRL_KEYS:
        assert math.isfinite(float(row[key])), key
    # rkl is the identity: the train reward is imitation's AIRL reward r_theta
    obs = venv.reset()
    acts = np.zeros((NUM_ENVS, 2), dtype=np.int64)
    dones = np.zeros(NUM_ENVS, dtype=bool)
    np.testing.assert_allclose(
        trainer.reward_train.predict_processed(obs, acts, obs, dones),
        trainer.reward_test.predict_processed(obs, acts, obs, dones),
        rtol=1e-6,
    )


def test_gail_on_conditional_image_task_uses_cnn(image_mixture_task, tmp_path):
    venv = to_sb3(DiffusionSamplingEnv(image_mixture_task, 2))
    venv.seed(0)
    ppo = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    trainer = make_irl_trainer("gail", "chi2", venv=venv, gen_algo=ppo, seed=0,
                               custom_logger=configure(tmp_path, ["csv"]))
    assert isinstance(trainer._reward_net.layers[0], torch.nn.Conv2d)
    trainer.train(16)
    assert math.isfinite(float(_rows(tmp_path)[-1]["irl/reward_mean"]))
    b = next(iter(trainer._make_disc_train_batches()))
    assert torch.equal(b["next_state"][:16, 16:], b["next_state"][16:, 16:])  # sigma and label
    assert b["action"].shape == (32, 2)  # Discrete(2), one-hot by imitation's preprocessing


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gmm_venv_ppo():
    venv = _venv()
    return venv, _ppo(venv)


def test_unknown_method(gmm_venv_ppo):
    venv, ppo = gmm_venv_ppo
    with pytest.raises(ValueError, match=r"unknown method 'bc'; valid methods: gail, airl"):
        make_irl_trainer("bc", venv=venv, gen_algo=ppo)


def test_unknown_divergence(gmm_venv_ppo):
    venv, ppo = gmm_venv_ppo
    with pytest.raises(ValueError, match=r"unknown divergence 'tv'; valid.*js, rkl, fkl, chi2, pr"):
        make_irl_trainer("gail", "tv", venv=venv, gen_algo=ppo)


@pytest.mark.parametrize("lam", [0.0, -0.5])
def test_bad_lambda(gmm_venv_ppo, lam):
    venv, ppo = gmm_venv_ppo
    with pytest.raises(ValueError, match=r"lam .* must be finite and > 0"):
        make_irl_trainer("gail", "pr", venv=venv, gen_algo=ppo, lam=lam)


def test_expert_observation_space_differs(gmm_venv_ppo):
    venv, ppo = gmm_venv_ppo
    other = DiffusionSamplingEnv("gmm2d", 1, means=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="expert observation space .* differs from the env's"):
        make_irl_trainer("gail", venv=venv, gen_algo=ppo, expert=NoisedDataExpert(other))
    with pytest.raises(ValueError, match="reward net observation space .* differs"):
        make_irl_trainer("gail", venv=venv, gen_algo=ppo,
                         reward_net=NoiseConditionedDiscriminator.for_env(other))


def test_expert_schedule_differs(gmm_venv_ppo):
    venv, ppo = gmm_venv_ppo
    other = DiffusionSamplingEnv("gmm2d", 1, num_steps=10)
    with pytest.raises(ValueError, match="noise schedule differs"):
        make_irl_trainer("gail", venv=venv, gen_algo=ppo, expert=NoisedDataExpert(other))


def test_demonstrations_rejected(gmm_venv_ppo):
    venv, ppo = gmm_venv_ppo
    with pytest.raises(TypeError, match="pass `expert=`"):
        make_irl_trainer("gail", venv=venv, gen_algo=ppo, demonstrations=[])


@pytest.mark.parametrize(("task", "centred"), [("gmm2d", False), ("gmm2d-bias", True)])
def test_reward_centred_by_default_exactly_when_episodes_vary(task, centred):
    venv = _venv(task)
    trainer = make_irl_trainer("gail", "js", venv=venv, gen_algo=_ppo(venv), seed=0)
    assert trainer.reward_transform.center is centred
    forced = make_irl_trainer(
        "gail", "js", venv=venv, gen_algo=_ppo(venv), seed=0, center_reward=not centred
    )
    assert forced.reward_transform.center is (not centred)


def _given_batches(venv, trainer, n):
    """A fixed generator batch of ``n`` rows and a sigma-matched expert batch for it."""
    env = venv.env
    obs, _ = env.reset(seed=1)
    acts = torch.zeros(NUM_ENVS, 2, dtype=torch.long)
    next_obs, _, term, _, _ = env.step(acts)
    reps = n // NUM_ENVS
    gen = {
        "obs": obs.repeat(reps, 1), "acts": acts.repeat(reps, 1),
        "next_obs": next_obs.repeat(reps, 1), "dones": term.repeat(reps),
    }
    expert = trainer.expert.transitions_like(gen["obs"], gen["next_obs"], gen["dones"])
    return gen, expert


@pytest.mark.parametrize("method", ["gail", "airl"])
def test_logged_means_come_from_the_training_forward(method, tmp_path):
    """irl/logit_*_mean and irl/reward_mean equal the discriminator output on the update's
    batches before its step (every minibatch), and the update forwards the net once per
    minibatch: no logging re-forward."""
    venv = _venv("gmm2d-bias")
    trainer = make_irl_trainer(
        method, "js", venv=venv, gen_algo=_ppo(venv), seed=0, demo_batch_size=16,
        demo_minibatch_size=8, custom_logger=configure(tmp_path, ["csv"]),
    )
    gen, expert = _given_batches(venv, trainer, 16)
    net = trainer._reward_net
    with torch.no_grad():
        outputs = [
            net(b["state"], b["action"], b["next_state"], b["done"])
            for b in trainer._make_disc_train_batches(gen_samples=gen, expert_samples=expert)
        ]
    out = torch.stack(outputs)
    assert out.shape == (2, 16)
    calls = []
    handle = net.register_forward_hook(lambda *_: calls.append(1))
    trainer.train_disc(gen_samples=gen, expert_samples=expert)
    handle.remove()
    assert len(calls) == 2  # one forward per minibatch, none for logging
    values = trainer.logger.default_logger.name_to_value
    assert values["irl/logit_expert_mean"] == pytest.approx(float(out[:, :8].mean()), rel=1e-5)
    assert values["irl/logit_gen_mean"] == pytest.approx(float(out[:, 8:].mean()), rel=1e-5)
    reward = trainer.reward_transform(out[:, 8:]).mean()
    assert values["irl/reward_mean"] == pytest.approx(float(reward), rel=1e-5)


def test_gail_never_evaluates_policy_log_probabilities(monkeypatch):
    venv = _venv()
    gail = make_irl_trainer("gail", "js", venv=venv, gen_algo=_ppo(venv), seed=0,
                            demo_batch_size=8)

    def fail(*_):
        raise AssertionError("GAIL evaluated the policy's log-probabilities")

    monkeypatch.setattr(gail, "_get_log_policy_act_prob", fail)
    gen, expert = _given_batches(venv, gail, 8)
    gail.train_disc(gen_samples=gen, expert_samples=expert)

    airl = make_irl_trainer("airl", "rkl", venv=venv, gen_algo=_ppo(venv), seed=0,
                            demo_batch_size=8)
    batch = next(iter(airl._make_disc_train_batches(gen_samples=gen, expert_samples=expert)))
    assert batch["log_policy_act_prob"].shape == (16,)
