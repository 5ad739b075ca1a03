"""Every counted NFE is one evaluated row: denoiser and guide wrapped in counting modules (rows
passed to ``forward``) against the NFE that the env, ``sample``, the policy sampler and a grid
point report, for random per-sample knob mixes (guidance, churn, renoise, ragged episodes), on
every task, a user task included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffgym.envs import (
    BatchNoise,
    DiffusionSamplingEnv,
    GaussianMixture,
    GMMDenoiser,
    Knobs,
    PerSampleNoise,
    Task,
    make_task,
    make_user_task,
    sample,
)
from diffgym.envs.denoisers import CountingDenoiser


class Counted(CountingDenoiser):
    """The library's row counter, also checking the shapes every call receives."""

    def forward(self, x, sigma, class_labels=None):
        assert sigma.shape == (x.shape[0],)
        assert class_labels is None or class_labels.shape == (x.shape[0],)
        return super().forward(x, sigma, class_labels)


def rows(task: Task) -> int:
    """Rows evaluated so far by the task's counted denoiser and guide."""
    return task.denoiser.rows + (task.guide.rows if task.guide is not None else 0)


MEANS = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.0, 2.0]])


def user_task(tmp_path) -> Task:
    """A user task from an ``edm-module`` file (a conditional mixture, classifier-free guidance)
    and an ``.npz`` of data."""
    mixture = GaussianMixture(MEANS, 0.3, component_labels=[0, 1, 1])
    path = tmp_path / "cond.pt"
    torch.save(GMMDenoiser(mixture, sigma_max=20.0), path)
    x, labels = mixture.sample(60, torch.Generator().manual_seed(0))
    np.savez(tmp_path / "data.npz", x=x.numpy(), labels=labels.numpy())
    return make_user_task(f"edm-module:{path}", tmp_path / "data.npz", num_steps=5)


TASKS = ["gmm2d", "gmm2d-bias", "digits", "user"]


@pytest.fixture(params=TASKS)
def task(request, tmp_path) -> Task:
    """The task with short episodes, every knob on (guidance where it has a guide), renoise
    with a budget (ragged episodes), and counted denoiser and guide."""
    name = request.param
    base = user_task(tmp_path) if name == "user" else make_task(name, num_steps=5)
    guided = base.guide is not None
    return base.replace(
        denoiser=Counted(base.denoiser),
        guide=Counted(base.guide) if guided else None,
        churn_levels=(0.0, 0.3),
        guidance_levels=(1.0, 2.0, 0.5) if guided else (1.0,),
        renoise_jumps=(0, 1, 3),
        renoise_budget=2,
    )


def random_knobs(task: Task, seed: int):
    """An action function of independent random menu levels per sample and step."""
    gen = torch.Generator().manual_seed(seed)

    def act(x, step_index, budget, labels) -> Knobs:
        b = x.shape[0]

        def pick(levels, dtype):
            i = torch.randint(0, len(levels), (b,), generator=gen)
            return torch.as_tensor(levels, dtype=dtype)[i].to(x.device)

        return Knobs(
            churn=pick(task.churn_levels, x.dtype),
            guidance=pick(task.guidance_levels, x.dtype),
            renoise=pick(task.renoise_jumps, torch.long),
        )

    return act


@pytest.mark.parametrize("noise", ["batch", "per_sample"])
def test_env_rows_equal_nfe(task, noise):
    env = DiffusionSamplingEnv(task, 12, noise=noise)
    env.reset(seed=0)
    env.action_space.seed(1)
    before, counted, finished = rows(task), 0, 0
    for _ in range(3 * task.num_steps + 4):
        start = rows(task)
        _, _, terminated, _, info = env.step(torch.as_tensor(env.action_space.sample()))
        assert rows(task) - start == int(info["nfe"].sum())  # every step, not only in total
        counted += int(info["nfe"].sum())
        finished += int(terminated.sum())
    assert rows(task) - before == counted > 0
    assert finished > 0  # episodes ended (at different steps: renoise makes them ragged)


@pytest.mark.parametrize("noise", ["batch", "per_sample"])
def test_sample_rows_equal_nfe(task, noise):
    n = 16
    source = (BatchNoise(n, seed=3) if noise == "batch"
              else PerSampleNoise(range(3, 3 + n)))
    labels = task.sample_labels(n, torch.Generator().manual_seed(0))
    start = rows(task)
    res = sample(
        task.denoiser, task.sigmas(), noise=source, data_shape=task.data_shape, labels=labels,
        guide=task.guide, actions=random_knobs(task, 4), renoise_budget=task.renoise_budget,
    )
    assert rows(task) - start == int(res.nfe.sum()) == res.rows_evaluated
    assert len(set(res.steps.tolist())) > 1  # ragged episodes


def test_plain_sample_is_one_full_batch_call_per_stage(task):
    """No knobs: 2N - 1 full-batch calls of the denoiser, none of the guide."""
    n = 8
    calls = task.denoiser.calls
    res = sample(task.denoiser, task.sigmas(), noise=BatchNoise(n, seed=0),
                 data_shape=task.data_shape, labels=task.sample_labels(n), guide=task.guide)
    assert task.denoiser.calls - calls == 2 * task.num_steps - 1
    assert int(res.nfe.sum()) == res.rows_evaluated == n * (2 * task.num_steps - 1)
    assert task.guide is None or task.guide.rows == 0


@pytest.mark.filterwarnings("ignore:no ppo hyperparameters")
def test_policy_sampler_rows_equal_nfe(task):
    from diffgym.agents import make_agent
    from diffgym.agents.policy_sampling import PolicySampler

    env = DiffusionSamplingEnv(task, 4)
    policy = make_agent("ppo", env, seed=0, n_steps=4, batch_size=16).policy  # untrained
    # guidance reshaped (shrunk or amplified, and cut above a sigma in the middle of the
    # schedule) where the task has a guidance menu
    sigma_mid = float(task.sigmas()[task.num_steps // 2])
    reshape = [{}] + ([{"guidance_factor": 0.5}, {"guidance_factor": 1.5,
                                                  "guidance_max_sigma": sigma_mid}]
                      if task.guide is not None else [])
    for mean_action in (False, True):  # tau = 1 choices, and mean-action inference
        for kw in reshape:
            sampler = PolicySampler(policy, task, temperature=1.0, mean_action=mean_action, **kw)
            for per_sample in (False, True):
                start = rows(task)
                res = sampler.sample(16, seed=2, per_sample=per_sample)
                assert rows(task) - start == int(res.nfe.sum()) == res.rows_evaluated > 0


def test_grid_point_rows_equal_nfe(task):
    from diffgym.benchmarks.grid import ChurnFamily, IntervalFamily, evaluate_point

    guided = task.guide is not None
    family = IntervalFamily.preset(task, "small") if guided else ChurnFamily.preset(task, "small")
    start = rows(task)
    point = evaluate_point(task, family, family.points()[0], n=8, seed=0)
    assert rows(task) - start == point.cost.nfe
    assert point.cost.nfe < 8 * 2 * (2 * task.num_steps - 1) if guided else True


# --------------------------------------------------------------------------------------------
# Mixed step sizes (the step knob)
# --------------------------------------------------------------------------------------------


def with_steps(task: Task) -> Task:
    """``task`` with the step knob on: base grid twice as fine, advances 2 (neutral), 1, 3, 4."""
    return task.replace(schedule_factor=2, step_advances=(2, 1, 3, 4))


@pytest.mark.parametrize("noise", ["batch", "per_sample"])
def test_env_rows_equal_nfe_mixed_steps(task, noise):
    task = with_steps(task)
    env = DiffusionSamplingEnv(task, 12, noise=noise, autoreset_mode="SameStep")
    env.reset(seed=0)
    env.action_space.seed(1)
    before, counted, lengths = rows(task), 0, set()
    for _ in range(3 * task.base_steps):
        start = rows(task)
        _, _, terminated, _, info = env.step(torch.as_tensor(env.action_space.sample()))
        assert rows(task) - start == int(info["nfe"].sum())
        counted += int(info["nfe"].sum())
        if terminated.any():
            lengths.update(info["final_info"]["episode_length"][terminated].tolist())
    assert rows(task) - before == counted > 0
    assert len(lengths) > 1  # mixed advances: episodes of different lengths


@pytest.mark.parametrize("noise", ["batch", "per_sample"])
def test_sample_rows_equal_nfe_mixed_steps(task, noise):
    task = with_steps(task)
    n = 16
    source = (BatchNoise(n, seed=3) if noise == "batch"
              else PerSampleNoise(range(3, 3 + n)))
    labels = task.sample_labels(n, torch.Generator().manual_seed(0))
    others = random_knobs(task, 4)
    gen = torch.Generator().manual_seed(5)
    menu = torch.as_tensor(task.step_advances)

    def act(x, step_index, budget, labels) -> Knobs:
        knobs = others(x, step_index, budget, labels)
        knobs.renoise = knobs.renoise * 2  # default steps -> base-grid levels
        knobs.step = menu[torch.randint(0, len(menu), (x.shape[0],), generator=gen)]
        return knobs

    start = rows(task)
    res = sample(
        task.denoiser, task.base_sigmas(), noise=source, data_shape=task.data_shape,
        labels=labels, guide=task.guide, actions=act, renoise_budget=task.renoise_budget,
        advance=2,
    )
    assert rows(task) - start == int(res.nfe.sum()) == res.rows_evaluated
    assert len(set(res.steps.tolist())) > 1


@pytest.mark.filterwarnings("ignore:no ppo hyperparameters")
def test_policy_sampler_rows_equal_nfe_mixed_steps(task):
    from diffgym.agents import make_agent
    from diffgym.agents.policy_sampling import PolicySampler

    task = with_steps(task)
    env = DiffusionSamplingEnv(task, 4)
    policy = make_agent("ppo", env, seed=0, n_steps=4, batch_size=16).policy  # untrained
    sampler = PolicySampler(policy, task, temperature=1.0)
    start = rows(task)
    res = sampler.sample(16, seed=2, per_sample=True)
    assert rows(task) - start == int(res.nfe.sum()) == res.rows_evaluated > 0
    assert len(set(res.steps.tolist())) > 1
