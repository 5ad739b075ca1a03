"""Reward options that see mode masses: the R1 penalty, spectral norm, the terminal MMD witness,
the terminal cell mass ratio and the menu-position cost; each gives shaped ``(batch,)`` outputs
and ranks a mode the policy over-represents below one it under-represents."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from imitation.util.logger import configure
from stable_baselines3 import PPO

from diffgym.envs import DiffusionSamplingEnv, to_sb3
from diffgym.envs.features import TERMINAL_SIGMA
from diffgym.rewards import (
    DivergenceReward,
    NoiseConditionedDiscriminator,
    RewardTransform,
    ShapedReward,
    make_irl_trainer,
    menu_position,
    mmd_witness,
    r1_penalty,
)
from diffgym.rewards.shaping import (
    add_to_loss,
    apply_spectral_norm,
    cell_log_ratio,
    cell_masses,
    kmeans_centres,
)

NUM_ENVS, N_STEPS = 4, 18
LEFT, RIGHT = (-3.0, 0.0), (3.0, 0.0)


def _two_modes(n: int, frac_left: float, seed: int) -> torch.Tensor:
    """``(n, 2)`` points: ``frac_left`` of them around LEFT, the rest around RIGHT (std 0.3)."""
    g = torch.Generator().manual_seed(seed)
    n_left = int(round(frac_left * n))
    centres = torch.tensor([LEFT] * n_left + [RIGHT] * (n - n_left), dtype=torch.float64)
    return centres + 0.3 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _terminal_obs(x: torch.Tensor) -> torch.Tensor:
    """gmm2d terminal observations ``(n, 5)`` with sample part ``x`` (already scaled)."""
    n = x.shape[0]
    cond = torch.tensor([math.log(TERMINAL_SIGMA) / 4, 1.0, 0.0]).expand(n, 3)
    return torch.cat([x.float(), cond], dim=1)


def _venv(task="gmm2d"):
    venv = to_sb3(DiffusionSamplingEnv(task, NUM_ENVS))
    venv.seed(0)
    return venv


def _ppo(venv) -> PPO:
    return PPO("MlpPolicy", venv, n_steps=N_STEPS, batch_size=36, n_epochs=1, seed=0,
               policy_kwargs={"net_arch": [16]})


# --- the terminal MMD witness ---------------------------------------------------------------


def test_mmd_witness_shape_and_sign_on_an_over_represented_mode():
    data = _two_modes(400, 0.5, seed=0)
    policy = _two_modes(400, 0.8, seed=1)  # LEFT over-represented, RIGHT under-represented
    x = torch.tensor([LEFT, RIGHT], dtype=torch.float64)
    w = mmd_witness(x, data, policy)
    assert w.shape == (2,)
    assert w[0] < 0 < w[1]
    # Same distribution: the witness is small next to the mass error's.
    same = mmd_witness(x, data, _two_modes(400, 0.5, seed=2))
    assert same.abs().max() < 0.25 * w.abs().min()


def test_mmd_witness_rejects_bad_shapes():
    with pytest.raises(ValueError, match="must be 2-d"):
        mmd_witness(torch.zeros(3), torch.zeros(4, 2), torch.zeros(4, 2))


def test_shaped_reward_terminal_term_sign_and_only_at_terminal_states():
    venv = _venv()
    disc = NoiseConditionedDiscriminator.for_env(venv)
    base = DivergenceReward(disc, RewardTransform("js"))
    data = _two_modes(512, 0.5, seed=0)
    shaped = ShapedReward(base, data_shape=(2,), sample_data=lambda n: data[:n],
                          terminal_mmd_weight=2.0)
    obs = _terminal_obs(torch.tensor([LEFT, RIGHT]))
    acts = np.zeros((2, 2), dtype=np.int64)
    done = np.ones(2, dtype=bool)
    before = shaped.predict_processed(obs.numpy(), acts, obs.numpy(), done)
    np.testing.assert_allclose(before, base.predict_processed(obs.numpy(), acts, obs.numpy(), done),
                               rtol=1e-6)  # no witness before the first round ends
    # One round in which the policy ended 80 % of its samples in the LEFT mode.
    shaped.begin_round()
    pol = _terminal_obs(_two_modes(400, 0.8, seed=1)).numpy()
    shaped.predict_processed(pol, np.zeros((400, 2), dtype=np.int64), pol, np.ones(400, bool))
    shaped.end_round()
    assert shaped.policy_terminals.shape == (400, 2)
    after = shaped.predict_processed(obs.numpy(), acts, obs.numpy(), done)
    assert after.shape == (2,)
    bonus = after - before
    assert bonus[0] < 0 < bonus[1]
    # Non-terminal transitions get no witness term.
    not_done = shaped.predict_processed(obs.numpy(), acts, obs.numpy(), np.zeros(2, bool))
    np.testing.assert_allclose(not_done, before, rtol=1e-6)


# --- the terminal cell mass ratio -----------------------------------------------------------


def test_kmeans_centres_find_the_modes_and_are_deterministic():
    data = _two_modes(400, 0.5, seed=0)
    c = kmeans_centres(data, 2, generator=torch.Generator().manual_seed(3))
    assert c.shape == (2, 2) and c.dtype == data.dtype
    got = sorted(c[:, 0].tolist())
    assert got[0] == pytest.approx(LEFT[0], abs=0.1) and got[1] == pytest.approx(RIGHT[0], abs=0.1)
    again = kmeans_centres(data, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(c, again, rtol=0, atol=0)
    # More cells than distinct points is allowed (a repeated centre), more than points is not.
    assert kmeans_centres(torch.zeros(3, 2), 3, generator=torch.Generator()).shape == (3, 2)
    for bad, match in [((data, 0), r"k must be an int in \[1, 400\]"),
                       ((data, 401), r"got 401"), ((data, 2.0), r"got 2.0"),
                       ((torch.zeros(5), 2), r"must be 2-d"),
                       ((torch.full((4, 2), float("nan")), 2), r"must be finite")]:
        with pytest.raises(ValueError, match=match):
            kmeans_centres(*bad, generator=torch.Generator())


def test_cell_masses_and_log_ratio_sign_on_an_over_represented_mode():
    centres = torch.tensor([LEFT, RIGHT], dtype=torch.float64)
    data_mass = cell_masses(_two_modes(1000, 0.5, seed=0), centres)
    policy_mass = cell_masses(_two_modes(1000, 0.8, seed=1), centres)
    assert data_mass.shape == (2,) and float(data_mass.sum()) == pytest.approx(1.0)
    want = torch.tensor([800.5, 200.5], dtype=torch.float64) / 1001
    torch.testing.assert_close(policy_mass, want)
    ratio = cell_log_ratio(torch.tensor([LEFT, RIGHT, (-2.0, 1.0)]), centres, data_mass,
                           policy_mass)
    assert ratio.shape == (3,)
    assert ratio[0] < 0 < ratio[1] and ratio[2] == ratio[0]  # the point is in LEFT's cell
    assert float(ratio[0]) == pytest.approx(math.log(0.5 / 0.8), abs=0.01)
    with pytest.raises(ValueError, match=r"x must be \(B, 2\)"):
        cell_log_ratio(torch.zeros(3, 5), centres, data_mass, policy_mass)
    with pytest.raises(ValueError, match="same width"):
        cell_masses(torch.zeros(3, 5), centres)


def _mass_round(shaped, x):
    """One round in which the policy's terminal samples were ``x`` (already scaled)."""
    shaped.begin_round()
    pol = _terminal_obs(x).numpy()
    n = pol.shape[0]
    shaped.predict_processed(pol, np.zeros((n, 2), dtype=np.int64), pol, np.ones(n, bool))
    shaped.end_round()


def test_shaped_reward_mass_term_sign_and_only_at_terminal_states():
    venv = _venv()
    base = DivergenceReward(NoiseConditionedDiscriminator.for_env(venv), RewardTransform("js"))
    data = _two_modes(8192, 0.5, seed=0)
    shaped = ShapedReward(base, data_shape=(2,), sample_data=lambda n: data[:n],
                          terminal_mass_weight=2.0, mass_cells=2)
    assert shaped.records_terminals
    obs = _terminal_obs(torch.tensor([LEFT, RIGHT]))
    acts = np.zeros((2, 2), dtype=np.int64)
    done = np.ones(2, dtype=bool)
    before = shaped.predict_processed(obs.numpy(), acts, obs.numpy(), done)
    np.testing.assert_allclose(before, base.predict_processed(obs.numpy(), acts, obs.numpy(), done),
                               rtol=1e-6)  # no mass term before the first round ends
    # One round in which the policy ended 80 % of its samples in the LEFT mode.
    _mass_round(shaped, _two_modes(400, 0.8, seed=1))
    assert shaped.mass_centres.shape == (2, 2) and shaped.mass_terminals.shape == (400, 2)
    assert shaped.policy_terminals is None  # the witness is off and keeps nothing
    centres = shaped.mass_centres
    bonus = shaped.predict_processed(obs.numpy(), acts, obs.numpy(), done) - before
    assert bonus.shape == (2,)
    assert bonus[0] < 0 < bonus[1]
    # About 2 log(0.5 / 0.8) and 2 log(0.5 / 0.2): one cell per mode.
    assert bonus[0] == pytest.approx(2 * math.log(0.5 / 0.8), abs=0.25)
    assert bonus[1] == pytest.approx(2 * math.log(0.5 / 0.2), abs=0.25)
    # The term is scored at the transition's next state, not its state.
    swapped = _terminal_obs(torch.tensor([RIGHT, LEFT])).numpy()
    at_next = shaped.predict_processed(swapped, acts, obs.numpy(), done) - (
        base.predict_processed(swapped, acts, obs.numpy(), done))
    np.testing.assert_allclose(at_next, bonus, rtol=1e-5)
    # Non-terminal transitions get no mass term.
    not_done = shaped.predict_processed(obs.numpy(), acts, obs.numpy(), np.zeros(2, bool))
    np.testing.assert_allclose(not_done, before, rtol=1e-6)
    # The newest mass_samples samples are kept: a second round moves the policy masses, and the
    # cells are the ones fitted at the first round end.
    shaped.mass_samples = 400
    _mass_round(shaped, _two_modes(400, 0.5, seed=2))
    assert shaped.mass_centres is centres
    balanced = shaped.predict_processed(obs.numpy(), acts, obs.numpy(), done) - before
    assert np.abs(balanced).max() < 0.25 * np.abs(bonus).min()


def test_mass_term_with_one_cell_per_mode_ignores_the_spread_inside_a_mode():
    """Same 80/20 masses, each mode four times tighter: the same policy masses, the same term."""
    venv = _venv()
    base = DivergenceReward(NoiseConditionedDiscriminator.for_env(venv), RewardTransform("js"))
    data = _two_modes(8192, 0.5, seed=0)
    obs = _terminal_obs(torch.tensor([LEFT, RIGHT])).numpy()
    acts, done = np.zeros((2, 2), dtype=np.int64), np.ones(2, dtype=bool)
    terms = []
    for spread in (1.0, 0.25):
        shaped = ShapedReward(base, data_shape=(2,), sample_data=lambda n: data[:n],
                              terminal_mass_weight=1.0, mass_cells=2)
        x = _two_modes(400, 0.8, seed=1)
        centre = torch.where(x[:, :1] < 0, torch.tensor(LEFT), torch.tensor(RIGHT))
        _mass_round(shaped, centre + spread * (x - centre))
        terms.append(shaped.predict_processed(obs, acts, obs, done)
                     - base.predict_processed(obs, acts, obs, done))
    np.testing.assert_allclose(terms[0], terms[1], rtol=1e-6)


def test_mass_and_mmd_terms_add_up():
    venv = _venv()
    base = DivergenceReward(NoiseConditionedDiscriminator.for_env(venv), RewardTransform("js"))
    data = _two_modes(8192, 0.5, seed=0)
    kw = dict(data_shape=(2,), sample_data=lambda n: data[:n], mass_cells=2)
    both = ShapedReward(base, terminal_mmd_weight=2.0, terminal_mass_weight=3.0, **kw)
    _mass_round(both, _two_modes(400, 0.8, seed=1))
    obs = _terminal_obs(torch.tensor([LEFT, RIGHT, (0.5, 0.5)]))
    acts, done = np.zeros((3, 2), dtype=np.int64), np.ones(3, dtype=bool)
    got = both.predict_processed(obs.numpy(), acts, obs.numpy(), done)
    want = (base.predict_processed(obs.numpy(), acts, obs.numpy(), done)
            + 2.0 * both.witness(obs.double()).numpy() + 3.0 * both.mass_term(obs.double()).numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (both.mass_term(obs.double()) != 0).all() and (both.witness(obs.double()) != 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mass_term_on_cuda():
    venv = to_sb3(DiffusionSamplingEnv("gmm2d", NUM_ENVS, device="cuda"))
    base = DivergenceReward(NoiseConditionedDiscriminator.for_env(venv).to("cuda"),
                            RewardTransform("js"))
    data = _two_modes(8192, 0.5, seed=0)
    shaped = ShapedReward(base, data_shape=(2,), sample_data=lambda n: data[:n],
                          terminal_mass_weight=1.0, mass_cells=2)
    _mass_round(shaped, _two_modes(400, 0.8, seed=1))
    obs = _terminal_obs(torch.tensor([LEFT, RIGHT])).cuda()
    term = shaped.mass_term(obs)
    assert term.device.type == "cuda" and term[0] < 0 < term[1]


def test_mass_helpers_refuse_bad_input():
    centres = torch.tensor([LEFT, RIGHT], dtype=torch.float64)
    mass = torch.full((2,), 0.5, dtype=torch.float64)
    for call, match in [
        (lambda: kmeans_centres(torch.zeros(0, 2), 1, generator=torch.Generator()),
         r"N >= 1, got shape \(0, 2\)"),
        (lambda: kmeans_centres(torch.tensor([[0.0, float("inf")]] * 3), 1,
                                generator=torch.Generator()), r"got 3 non-finite entries of 6"),
        (lambda: cell_masses(torch.zeros(3, 2), centres, prior=0), r"prior must be .* got 0"),
        (lambda: cell_masses(torch.zeros(3, 2), torch.zeros(0, 2)), r"at least one row"),
        (lambda: cell_log_ratio(torch.zeros(3, 2), centres, mass, torch.ones(3)),
         r"must have shape \(2,\), got \(2,\) and \(3,\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()


# --- the menu-position cost ------------------------------------------------------------------


def test_menu_position_and_action_cost():
    sizes = (4, 5)  # gmm2d: churn, guidance
    onehot = torch.zeros(3, 9)
    onehot[0, [0, 4]] = 1  # neutral, neutral
    onehot[1, [0, 8]] = 1  # neutral churn, top guidance
    onehot[2, [2, 6]] = 1  # churn 2/3, guidance 2/4
    pos = menu_position(onehot, sizes)
    assert pos.shape == (3,)
    torch.testing.assert_close(pos, torch.tensor([0.0, 1.0, 2 / 3 + 0.5]))
    with pytest.raises(ValueError, match="do not match menus"):
        menu_position(torch.zeros(2, 8), sizes)

    venv = _venv()
    base = DivergenceReward(NoiseConditionedDiscriminator.for_env(venv), RewardTransform("js"))
    shaped = ShapedReward(base, data_shape=(2,), sample_data=lambda n: torch.zeros(n, 2),
                          action_cost=0.1)
    obs = _terminal_obs(torch.zeros(2, 2)).numpy()
    acts = np.array([[0, 0], [0, 4]])  # neutral vs top of the guidance menu
    diff = (shaped.predict_processed(obs, acts, obs, np.zeros(2, bool))
            - base.predict_processed(obs, acts, obs, np.zeros(2, bool)))
    np.testing.assert_allclose(diff, [0.0, -0.1], atol=1e-6)


@pytest.mark.parametrize(
    "kw, match",
    [({"terminal_mmd_weight": -1.0}, "terminal_mmd_weight must be"),
     ({"terminal_mass_weight": float("inf")}, "terminal_mass_weight must be"),
     ({"action_cost": float("nan")}, "action_cost must be"),
     ({"num_samples": 1}, "num_samples must be"),
     ({"mass_cells": 0}, r"mass_cells must be an int >= 1, got 0"),
     ({"mass_cells": 8193}, r"at most TERMINAL_MASS_FIT_SAMPLES = 8192 .* got 8193"),
     ({"mass_samples": 2.5}, r"mass_samples must be an int >= 1, got 2.5"),
     ({"seed": 1.5}, r"seed must be an int, got 1.5")],
)
def test_shaped_reward_bad_values(kw, match):
    venv = _venv()
    base = DivergenceReward(NoiseConditionedDiscriminator.for_env(venv), RewardTransform("js"))
    with pytest.raises(ValueError, match=match):
        ShapedReward(base, data_shape=(2,), sample_data=lambda n: torch.zeros(n, 2), **kw)


# --- discriminator regularisation ------------------------------------------------------------


def test_r1_penalty_shape_and_value():
    obs = torch.randn(6, 5, requires_grad=True)
    a = torch.tensor([2.0, -1.0, 5.0, 5.0, 5.0])  # the last three are conditioning
    pen = r1_penalty(obs @ a, obs, (2,))
    assert pen.shape == (6,)
    torch.testing.assert_close(pen, torch.full((6,), 5.0))  # 2^2 + 1^2: sample part only


def test_add_to_loss_adds_the_extra_term_to_the_gradient():
    v = torch.tensor([1.0, 2.0], requires_grad=True)
    p = torch.tensor(3.0, requires_grad=True)
    out = add_to_loss(v * 1.0, p * p)
    torch.testing.assert_close(out, v.detach())
    out.sum().backward()
    torch.testing.assert_close(v.grad, torch.ones(2))
    torch.testing.assert_close(p.grad, torch.tensor(6.0))  # d(p^2)/dp
    with pytest.raises(ValueError, match="must be a scalar"):
        add_to_loss(v, v)


def test_spectral_norm_bounds_the_trunk():
    venv = _venv()
    disc = apply_spectral_norm(NoiseConditionedDiscriminator.for_env(venv))
    for _ in range(20):  # one power iteration per forward in training mode
        disc.logit(torch.randn(8, 5))
    for layer in (*disc.layers, disc.head):  # power iteration: close to 1, not exact
        assert torch.linalg.matrix_norm(layer.weight, ord=2) <= 1.1
    assert not hasattr(disc.films[0].proj, "parametrizations")  # zero-initialised: left alone
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        apply_spectral_norm(torch.nn.ReLU())


@pytest.mark.parametrize("option", [{"disc_grad_penalty": 1.0}, {"disc_spectral_norm": True}])
def test_regularised_discriminator_ranks_an_over_represented_mode_lower(option):
    """Trained on terminal states (data 50/50, policy 80/20), the regularised discriminator's
    reward is lower on the mode the policy over-represents."""
    torch.manual_seed(0)
    venv = _venv()
    trainer = make_irl_trainer("gail", "js", venv=venv, gen_algo=_ppo(venv), seed=0,
                               demo_batch_size=256, disc_opt_kwargs={"lr": 3e-3}, **option)
    exp = _terminal_obs(_two_modes(256, 0.5, seed=0) / 0.5)
    gen = _terminal_obs(_two_modes(256, 0.8, seed=1) / 0.5)

    def batch(obs):
        n = obs.shape[0]
        return {"obs": obs, "acts": torch.zeros(n, 2, dtype=torch.long), "next_obs": obs,
                "dones": torch.ones(n, dtype=torch.bool)}

    for _ in range(60):
        stats = trainer.train_disc(expert_samples=batch(exp), gen_samples=batch(gen))
    assert math.isfinite(stats["disc_loss"])
    probe = _terminal_obs(torch.tensor([LEFT, RIGHT]) / 0.5).numpy()
    reward = trainer.reward_train.predict_processed(
        probe, np.zeros((2, 2), dtype=np.int64), probe, np.ones(2, bool)
    )
    assert reward.shape == (2,)
    assert reward[0] < reward[1]


def test_bad_grad_penalty_raises():
    venv = _venv()
    with pytest.raises(ValueError, match="disc_grad_penalty must be"):
        make_irl_trainer(venv=venv, gen_algo=_ppo(venv), disc_grad_penalty=-1.0)


def test_all_options_train_end_to_end(tmp_path):
    venv = _venv()
    trainer = make_irl_trainer(
        "gail", "js", venv=venv, gen_algo=_ppo(venv), seed=0,
        custom_logger=configure(tmp_path, ["csv"]), disc_grad_penalty=1.0,
        disc_spectral_norm=True, terminal_mmd_weight=1.0, terminal_mass_weight=1.0,
        action_cost=0.05,
    )
    assert isinstance(trainer.reward_train, ShapedReward)
    trainer.train(2 * NUM_ENVS * N_STEPS)  # two rounds
    # Each episode lasts 18 steps: one terminal sample per env per round.
    assert trainer.shaped_reward.policy_terminals.shape == (2 * NUM_ENVS, 2)
    assert trainer.shaped_reward.mass_terminals.shape == (2 * NUM_ENVS, 2)
    assert trainer.shaped_reward.mass_centres.shape == (16, 2)
    obs = venv.reset()
    acts = np.zeros((NUM_ENVS, 2), dtype=np.int64)
    rew = trainer.reward_train.predict_processed(obs, acts, obs, np.ones(NUM_ENVS, bool))
    assert rew.shape == (NUM_ENVS,) and np.isfinite(rew).all()


def test_check_reward_options_names_types_and_defaults():
    """The named options as plain values; options at their default are left out (the same run
    as none), anything else unknown or out of range is refused with the allowed values."""
    from diffgym.rewards import REWARD_OPTIONS, check_reward_options

    got = check_reward_options({"terminal_mmd_weight": 5, "disc_spectral_norm": True,
                                "action_cost": 0, "disc_grad_penalty": 0.5})
    assert got == {"terminal_mmd_weight": 5.0, "disc_spectral_norm": True,
                   "disc_grad_penalty": 0.5}
    assert check_reward_options({"disc_spectral_norm": False}) == {} == check_reward_options({})
    assert check_reward_options({"action_cost": np.float32(0.5), "disc_grad_penalty": np.int64(2),
                                 "disc_spectral_norm": np.bool_(True)}) == {
        "action_cost": 0.5, "disc_grad_penalty": 2.0, "disc_spectral_norm": True}
    assert set(REWARD_OPTIONS) == {"disc_grad_penalty", "disc_spectral_norm",
                                   "terminal_mmd_weight", "terminal_mass_weight", "action_cost"}
    for bad, match in [({"beta": 1.0}, r"unknown reward option 'beta'; allowed: disc_grad"),
                       ({"action_cost": -0.1}, r"action_cost must be a finite number >= 0"),
                       ({"action_cost": float("inf")}, r"finite number >= 0, got inf"),
                       ({"action_cost": True}, r"finite number >= 0, got True"),
                       ({"disc_spectral_norm": 1}, r"must be true or false, got 1"),
                       ([("action_cost", 1.0)], r"must be a mapping")]:
        with pytest.raises(ValueError, match=match):
            check_reward_options(bad)
