"""The ``step`` knob: a per-sample advance along a base grid finer than the task's
schedule. All-neutral actions reproduce the default sampler bit for bit on every task (also with
the other knobs on, renoise included); episodes of different lengths autoreset correctly; the
observation gives the base-grid position; bad menus are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffgym.envs import (
    DiffusionSamplingEnv,
    GaussianMixture,
    GMMDenoiser,
    Knobs,
    PerSampleNoise,
    Task,
    make_task,
    make_user_task,
    sample,
    sampler_step,
)
from diffgym.envs.menus import KNOBS
from diffgym.envs.schedule import edm_sigmas
from diffgym.envs.tasks import RECOMMENDED_STEP_MENU

N = 5  # short episodes: base grid of 2 (N - 1) + 1 = 9 levels
M = 2 * (N - 1) + 1
TASKS = ["gmm2d", "gmm2d-bias", "digits", "user"]


def user_task(tmp_path) -> Task:
    mixture = GaussianMixture([[-1.0, 0.5], [1.0, -0.5], [0.0, 2.0]], 0.3,
                              component_labels=[0, 1, 1])
    path = tmp_path / "cond.pt"
    torch.save(GMMDenoiser(mixture, sigma_max=20.0), path)
    x, labels = mixture.sample(60, torch.Generator().manual_seed(0))
    np.savez(tmp_path / "data.npz", x=x.numpy(), labels=labels.numpy())
    return make_user_task(f"edm-module:{path}", tmp_path / "data.npz", num_steps=N)


@pytest.fixture(params=TASKS)
def task(request, tmp_path) -> Task:
    """The task (short episodes) with its other knobs on: churn, guidance where it has a guide,
    renoise with a budget."""
    base = user_task(tmp_path) if request.param == "user" else make_task(request.param,
                                                                         num_steps=N)
    guided = base.guide is not None
    return base.replace(
        churn_levels=(0.0, 0.3),
        guidance_levels=(1.0, 2.0) if guided else (1.0,),
        renoise_jumps=(0, 1, 2),
        renoise_budget=2,
    )


def stepped(task: Task, advances=(2, 1, 3, 4)) -> Task:
    return task.replace(schedule_factor=advances[0], step_advances=tuple(advances))


# --------------------------------------------------------------------------------------------
# The base grid
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1, 2, 3])
@pytest.mark.parametrize("num_steps", [2, 5, 18])
def test_base_grid_contains_the_schedule_exactly(factor, num_steps):
    task = make_task("gmm2d", num_steps=num_steps, schedule_factor=factor,
                     step_advances=(factor,))
    base = task.base_sigmas()
    assert task.base_steps == factor * (num_steps - 1) + 1
    assert base.shape == (task.base_steps + 1,)
    assert torch.equal(base[:-1:factor], task.sigmas()[:-1]) and base[-1] == 0
    assert bool((base[1:] < base[:-1]).all())
    reference = edm_sigmas(task.base_steps, task.sigma_min, task.sigma_max, task.rho)
    torch.testing.assert_close(base, reference.float())  # the same rho-schedule


def test_step_menu_override_sets_the_factor_and_is_off_by_default():
    assert make_task("gmm2d").step_advances == (1,)
    task = make_task("gmm2d", step_advances=[2, 1, 3, 4])
    assert (task.schedule_factor, task.step_advances) == (2, (2, 1, 3, 4))
    assert make_task("gmm2d", **RECOMMENDED_STEP_MENU).step_advances == (2, 1, 3, 4)
    env = DiffusionSamplingEnv("gmm2d", 2, step_advances=(2, 1, 3))
    assert env.knob_names == ("churn", "guidance", "step") and KNOBS[-1] == "step"
    assert env.menus["step"] == (2, 1, 3) and env.num_steps == 2 * 17 + 1
    off = DiffusionSamplingEnv("gmm2d", 2)
    assert "step" not in off.knob_names and off.num_steps == 18


# --------------------------------------------------------------------------------------------
# Neutral = the default sampler, bit for bit
# --------------------------------------------------------------------------------------------


def test_neutral_sample_reproduces_the_default_bit_exactly(task):
    step = stepped(task)
    n = 16
    labels = task.sample_labels(n, torch.Generator().manual_seed(0))
    plain = sample(task.denoiser, task.sigmas(), noise=PerSampleNoise(range(n)),
                   data_shape=task.data_shape, labels=labels)
    walked = sample(step.denoiser, step.base_sigmas(), noise=PerSampleNoise(range(n)),
                    data_shape=task.data_shape, labels=labels, advance=2)
    assert torch.equal(plain.x, walked.x) and torch.equal(plain.nfe, walked.nfe)
    # per-sample neutral advances (the per-sample path) give the same bits too
    two = torch.full((n,), 2, dtype=torch.long)
    knobbed = sample(step.denoiser, step.base_sigmas(), noise=PerSampleNoise(range(n)),
                     data_shape=task.data_shape, labels=labels,
                     actions=lambda x, i, b, y: Knobs(step=two))
    assert torch.equal(plain.x, knobbed.x) and torch.equal(plain.nfe, knobbed.nfe)


def run_env(env: DiffusionSamplingEnv, actions: list[np.ndarray]):
    """Final samples, NFE and lengths of every episode that ends while ``actions`` are played."""
    env.reset(seed=7)
    finals = []
    for a in actions:
        _, reward, terminated, _, info = env.step(a)
        if terminated.any():
            ep = info["final_info"]  # SAME_STEP: the end-of-episode record
            for b in terminated.nonzero().squeeze(1).tolist():
                finals.append((b, ep["final_x"][b].clone(), int(ep["episode_nfe"][b]),
                               int(ep["episode_length"][b])))
    return finals


def test_neutral_step_in_the_env_reproduces_the_default_with_the_other_knobs(task):
    """Random churn/guidance/renoise choices with the step knob at its neutral entry: the same
    episodes (samples, NFE, lengths) as the env without the step knob; renoise jumps are in the
    task's default steps."""
    n = 6
    plain = DiffusionSamplingEnv(task, n, noise="per_sample", autoreset_mode="SameStep")
    walk = DiffusionSamplingEnv(stepped(task), n, noise="per_sample", autoreset_mode="SameStep")
    assert walk.knob_names == (*plain.knob_names, "step")
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, plain._menu_sizes, size=(n, len(plain._menu_sizes)))
               for _ in range(4 * N)]
    a = run_env(plain, actions)
    b = run_env(walk, [np.concatenate([x, np.zeros((n, 1), np.int64)], 1) for x in actions])
    assert len(a) == len(b) > n
    assert len({ln for *_, ln in a}) > 1  # renoise made episodes of different lengths
    for (ea, xa, nfe_a, la), (eb, xb, nfe_b, lb) in zip(a, b):
        assert (ea, nfe_a, la) == (eb, nfe_b, lb)
        assert torch.equal(xa, xb)


# --------------------------------------------------------------------------------------------
# Steps taken, NFE, observation, autoreset
# --------------------------------------------------------------------------------------------


def test_episodes_of_different_lengths_autoreset():
    """Sub-env b always advances ``advances[b]``: episodes of ceil(M / a) steps and 2 L - 1 NFE;
    each finished sub-env restarts at level 0 within the step while the others carry on."""
    env = DiffusionSamplingEnv("gmm2d", 4, num_steps=N, step_advances=(2, 1, 3, 4),
                               churn_levels=(0.0,), guidance_levels=(1.0,),
                               autoreset_mode="SameStep")
    assert env.knob_names == ("step",)
    obs, _ = env.reset(seed=0)
    d = 2
    assert torch.equal(obs[:, d + 1], torch.zeros(4))
    action = np.arange(4)  # advances 2, 1, 3, 4
    advances = np.array([2, 1, 3, 4])
    lengths = -(-M // advances)  # ceil(9 / a) = 5, 9, 3, 3
    pos = np.zeros(4, np.int64)
    ended = {b: [] for b in range(4)}
    for t in range(1, 2 * 9 + 1):
        obs, _, terminated, _, info = env.step(action)
        pos = np.minimum(pos + advances, M)
        done = pos == M
        assert terminated.numpy().tolist() == done.tolist()
        if done.any():
            ep = info["final_info"]
            final = info["final_obs"]
            for b in np.flatnonzero(done):
                ended[b].append(t)
                assert int(ep["episode_length"][b]) == lengths[b]
                assert int(ep["episode_nfe"][b]) == 2 * lengths[b] - 1  # Heun steps, Euler to 0
                assert float(final[b, d + 1]) == 1.0  # terminal: base position M / M
            pos[done] = 0
        # the step-fraction column is the base-grid position i / M
        torch.testing.assert_close(obs[:, d + 1], torch.as_tensor(pos / M, dtype=torch.float32))
        assert torch.equal(env.step_index, torch.as_tensor(pos))
    for b in range(4):
        assert ended[b] == [lengths[b] * k for k in range(1, 18 // lengths[b] + 1)]


def test_the_step_taken_is_the_heun_step_between_base_levels():
    """One step with advance a from level i is EDM's Heun step from sigma_i to sigma_{i+a} of the
    base grid (Euler where it lands on 0), with churn applied at sigma_i."""
    task = make_task("gmm2d", num_steps=N, step_advances=(2, 1, 3, 4))
    sig = task.base_sigmas()
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    idx = torch.tensor([0, 3, 5, 7, 8, 6])
    adv = torch.tensor([1, 4, 3, 2, 4, 3])
    out = sampler_step(task.denoiser, x, idx, sig, knobs=Knobs(step=adv))
    nxt = (idx + adv).clamp_max(M)
    assert torch.equal(out.step_index, nxt)
    assert out.nfe.tolist() == [2, 2, 2, 1, 1, 1]  # the last three land on sigma = 0
    for b in range(6):
        t0, t1 = sig[idx[b]], sig[nxt[b]]
        d = (x[b] - task.denoiser(x[b:b + 1], t0[None])[0]) / t0
        xe = x[b] + (t1 - t0) * d
        if t1 > 0:
            d2 = (xe - task.denoiser(xe[None], t1[None])[0]) / t1
            xe = x[b] + (t1 - t0) * (0.5 * d + 0.5 * d2)
        torch.testing.assert_close(out.x[b], xe)


def test_sample_with_mixed_steps_finishes_every_sample():
    task = make_task("gmm2d", num_steps=N, step_advances=(2, 1, 3, 4))
    gen = torch.Generator().manual_seed(1)

    def act(x, step_index, budget, labels):
        return Knobs(step=torch.tensor([2, 1, 3, 4])[torch.randint(0, 4, (x.shape[0],),
                                                                    generator=gen)])

    res = sample(task.denoiser, task.base_sigmas(), noise=PerSampleNoise(range(32)),
                 data_shape=task.data_shape, actions=act, advance=2)
    assert bool(torch.isfinite(res.x).all())
    assert len(set(res.steps.tolist())) > 1
    assert torch.equal(res.nfe, 2 * res.steps - 1)  # one Euler step to 0, Heun otherwise


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"step_advances": (2, 0)}, r"step advance 0 .* must be in 1\.\.9"),
        ({"step_advances": (2, -1)}, r"step advance -1 .* must be in 1\.\.9"),
        ({"step_advances": (2, 10)}, r"step advance 10 .* must be in 1\.\.9"),
        ({"step_advances": (0, 1)}, r"schedule_factor must be an int >= 1, got 0"),
        ({"step_advances": (2, 1.5)}, r"step_advances must be integers"),
        ({"step_advances": ()}, r"step_advances must not be empty"),
        ({"schedule_factor": 2, "step_advances": (1, 2)},
         r"step_advances\[0\] must be the neutral advance schedule_factor=2, got 1"),
        ({"schedule_factor": 2}, r"step_advances\[0\] must be the neutral advance"),
    ],
)
def test_bad_step_menu_is_a_clear_error(changes, match):
    with pytest.raises(ValueError, match=match):
        make_task("gmm2d", num_steps=N, **changes)
    with pytest.raises(ValueError, match=match):
        DiffusionSamplingEnv("gmm2d", 1, num_steps=N, **changes)


def test_bad_step_knob_values_are_errors():
    task = make_task("gmm2d", num_steps=N)
    x = torch.zeros(2, 2)
    idx = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"knob step=0 at sample 1 is not allowed; must be an"):
        sampler_step(task.denoiser, x, idx, task.sigmas(), knobs=Knobs(step=torch.tensor([1, 0])))
    with pytest.raises(TypeError, match="knob step must be an integer tensor"):
        sampler_step(task.denoiser, x, idx, task.sigmas(), knobs=Knobs(step=torch.ones(2)))
    with pytest.raises(ValueError, match="advance must be an int >= 1, got 0"):
        sampler_step(task.denoiser, x, idx, task.sigmas(), advance=0)
