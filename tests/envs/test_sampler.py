"""The batched sampler step (design §3) against independent computations: EDM's deterministic
Heun sampler (Karras et al. 2022, Alg. 1) written out here, hand-computed one-step cases for churn,
both guidance kinds and renoise, exact NFE counts, noise-source contracts and input errors."""

from __future__ import annotations

import math
import re

import pytest
import torch

from diffgym.envs import (
    BatchNoise,
    GaussianMixture,
    GMMDenoiser,
    Knobs,
    NoiseSource,
    NonFiniteDenoiserError,
    PerSampleNoise,
    UncondBranch,
    edm_sigmas,
    make_task,
    sample,
    sampler_step,
    schedule_actions,
)

F64 = torch.float64


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class FixedNoise(NoiseSource):
    """Returns the same known tensor on every draw."""

    per_sample = False

    def __init__(self, eps: torch.Tensor) -> None:
        self.eps = eps
        self.batch_size = eps.shape[0]
        self.device = eps.device
        self.calls = 0

    def randn(self, shape, *, needed: bool = True) -> torch.Tensor:
        assert tuple(shape) == tuple(self.eps.shape[1:])
        self.calls += 1
        return self.eps.clone()


class Shrink(torch.nn.Module):
    """Exact denoiser of ``N(m, s^2 I)``: ``D(x, sigma) = m + s^2/(s^2+sigma^2) (x - m)``."""

    def __init__(self, s: float, m: float = 0.0) -> None:
        super().__init__()
        self.s, self.m = s, m
        self.calls = 0

    def forward(self, x, sigma, class_labels=None):
        self.calls += 1
        shrink = self.s**2 / (self.s**2 + sigma**2)
        return self.m + shrink.reshape(-1, *([1] * (x.ndim - 1))) * (x - self.m)

    def scalar(self, x: float, sigma: float) -> float:
        return self.m + self.s**2 / (self.s**2 + sigma**2) * (x - self.m)


def conditional_gmm() -> GMMDenoiser:
    means = [[-2.0, 0.0], [2.0, 0.5], [0.0, -2.0], [0.5, 2.5]]
    mix = GaussianMixture(means, [0.4, 0.6, 0.3, 0.5], [0.2, 0.3, 0.1, 0.4], [0, 1, 1, 2])
    return GMMDenoiser(mix)


def edm_heun_reference(denoise, x: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """EDM Algorithm 1 (deterministic Heun), one sample at a time, plain Python over steps."""
    n = len(sigmas) - 1
    for i in range(n):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        d_cur = (x - denoise(x, t_cur)) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if t_next != 0:
            d_prime = (x_next - denoise(x_next, t_next)) / t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    return x


def one_heun_step(denoise, x, t_cur, t_next):
    """x_{i+1} from x_i with one (Euler +) Heun step, scalars or tensors."""
    d_cur = (x - denoise(x, t_cur)) / t_cur
    x_next = x + (t_next - t_cur) * d_cur
    if t_next == 0:
        return x_next
    d_prime = (x_next - denoise(x_next, t_next)) / t_next
    return x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)


def step(denoiser, x, i, sigmas, **kwargs):
    idx = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
    return sampler_step(denoiser, x, idx, sigmas, **kwargs)


SIGMAS6 = edm_sigmas(6, sigma_min=0.05, sigma_max=10.0)


# --------------------------------------------------------------------------------------------
# All-neutral actions = EDM deterministic Heun
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_steps", [1, 2, 18])
def test_neutral_reproduces_edm_heun_gmm2d(num_steps, device):
    task = make_task("gmm2d", num_steps=num_steps)
    den = task.denoiser.to(device)
    sigmas = task.sigmas(dtype=F64)
    batch = 16
    noise = BatchNoise(batch, device=device, dtype=F64, seed=123)
    res = sample(den, sigmas, noise=noise, data_shape=(2,), dtype=F64)

    gen = torch.Generator(device=device).manual_seed(123)
    x0 = torch.randn((batch, 2), generator=gen, device=device, dtype=F64) * sigmas[0].item()
    sig = sigmas.tolist()
    expected = torch.stack(
        [
            edm_heun_reference(
                lambda x, t: den(x[None], torch.tensor([t], dtype=F64, device=device))[0],
                x0[b],
                sig,
            )
            for b in range(batch)
        ]
    )
    assert res.x.dtype == F64
    torch.testing.assert_close(res.x, expected, rtol=1e-12, atol=1e-12)
    assert res.nfe.tolist() == [2 * num_steps - 1] * batch
    assert res.steps.tolist() == [num_steps] * batch
    if num_steps == 18:  # enough steps: samples land near the model's modes
        assert float(res.x.abs().max()) < 6.0


def test_neutral_reproduces_edm_heun_conditional_with_guide_at_w1():
    """Conditional mixture, labels per sample; a guide present with w = 1 changes nothing."""
    den = conditional_gmm()
    guide = UncondBranch(den)
    sigmas = edm_sigmas(10)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    noise = BatchNoise(6, dtype=F64, seed=7)
    w1 = schedule_actions(guidance=[1.0] * 10)
    res = sample(
        den, sigmas, noise=noise, data_shape=(2,), labels=labels, guide=guide, actions=w1, dtype=F64
    )
    x0 = torch.randn((6, 2), generator=torch.Generator().manual_seed(7), dtype=F64) * 80.0
    expected = torch.stack(
        [
            edm_heun_reference(
                lambda x, t, c=int(labels[b]): den(
                    x[None], torch.tensor([t], dtype=F64), torch.tensor([c])
                )[0],
                x0[b],
                sigmas.tolist(),
            )
            for b in range(6)
        ]
    )
    torch.testing.assert_close(res.x, expected, rtol=1e-12, atol=1e-12)
    assert res.nfe.tolist() == [19] * 6
    # each final sample sits on one of its own label's components
    owners = {0: [0], 1: [1, 2], 2: [3]}
    means = den.mixture.means
    for b in range(6):
        nearest = int(torch.cdist(res.x[b : b + 1], means).argmin())
        assert nearest in owners[int(labels[b])]


def test_constant_guidance_matches_reference_loop():
    """A constant autoguidance weight on every step = Alg. 1 with D_w = G + w (D - G)."""
    task = make_task("gmm2d", num_steps=8)
    den, guide = task.denoiser, task.guide
    sigmas = task.sigmas(dtype=F64)
    w = 2.5
    noise = BatchNoise(5, dtype=F64, seed=1)
    res = sample(
        den,
        sigmas,
        noise=noise,
        data_shape=(2,),
        guide=guide,
        actions=schedule_actions(guidance=[w] * 8),
        dtype=F64,
    )
    x0 = torch.randn((5, 2), generator=torch.Generator().manual_seed(1), dtype=F64) * 80.0

    def d_w(x, t):
        s = torch.tensor([t], dtype=F64)
        g = guide(x[None], s)[0]
        return g + w * (den(x[None], s)[0] - g)

    expected = torch.stack([edm_heun_reference(d_w, x0[b], sigmas.tolist()) for b in range(5)])
    torch.testing.assert_close(res.x, expected, rtol=1e-12, atol=1e-12)
    assert res.nfe.tolist() == [2 * (2 * 8 - 1)] * 5


# --------------------------------------------------------------------------------------------
# Hand-computed single steps
# --------------------------------------------------------------------------------------------


def test_churn_hand_computed():
    den = Shrink(s=1.3, m=0.2)
    sig = SIGMAS6.tolist()
    i, gamma, s_noise = 2, 0.4, 1.1
    x = torch.tensor([[0.7, -1.5]], dtype=F64)
    eps = torch.tensor([[0.3, -2.0]], dtype=F64)
    out = step(
        den,
        x,
        i,
        SIGMAS6,
        noise=FixedNoise(eps),
        knobs=Knobs(
            churn=torch.tensor([gamma], dtype=F64), s_noise=torch.tensor([s_noise], dtype=F64)
        ),
    )
    t_cur, t_next = sig[i], sig[i + 1]
    t_hat = t_cur * (1 + gamma)
    expected = []
    for xv, ev in zip(x[0].tolist(), eps[0].tolist()):
        x_hat = xv + math.sqrt(t_hat**2 - t_cur**2) * s_noise * ev
        d_cur = (x_hat - den.scalar(x_hat, t_hat)) / t_hat
        x_euler = x_hat + (t_next - t_hat) * d_cur
        d_prime = (x_euler - den.scalar(x_euler, t_next)) / t_next
        expected.append(x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime))
    torch.testing.assert_close(out.x, torch.tensor([expected], dtype=F64), rtol=1e-13, atol=0)
    assert out.step_index.tolist() == [i + 1]
    assert out.nfe.tolist() == [2]
    assert not out.churn_ignored.any() and not out.renoised.any()


def test_churn_at_last_step_is_ignored():
    den = Shrink(s=1.0)
    sig = SIGMAS6.tolist()
    x = torch.tensor([[0.4, -0.2], [0.4, -0.2]], dtype=F64)
    eps = torch.tensor([[5.0, 5.0], [5.0, 5.0]], dtype=F64)
    out = step(
        den,
        x,
        5,
        SIGMAS6,
        noise=FixedNoise(eps),
        knobs=Knobs(churn=torch.tensor([0.0, 0.5], dtype=F64)),
    )
    # last step: Euler to sigma_N = 0, i.e. x_N = D(x, sigma_{N-1}), for both samples
    expected = [den.scalar(v, sig[5]) for v in (0.4, -0.2)]
    torch.testing.assert_close(
        out.x, torch.tensor([expected, expected], dtype=F64), rtol=1e-13, atol=1e-15
    )
    assert out.churn_ignored.tolist() == [False, True]
    assert out.nfe.tolist() == [1, 1]
    assert out.step_index.tolist() == [6, 6]


def test_autoguidance_hand_computed():
    den, guide = Shrink(s=1.0, m=0.5), Shrink(s=2.0, m=-0.3)
    sig = SIGMAS6.tolist()
    w = 2.5
    x = torch.tensor([[1.2, -0.4], [1.2, -0.4]], dtype=F64)
    knobs = Knobs(guidance=torch.tensor([w, 1.0], dtype=F64))
    for i in (3, 5):  # a Heun step and the last (Euler) step
        out = step(den, x, i, SIGMAS6, guide=guide, knobs=knobs)
        t_cur, t_next = sig[i], sig[i + 1]

        def d_w(v, t):
            g = guide.scalar(v, t)
            return g + w * (den.scalar(v, t) - g)

        guided = [one_heun_step(d_w, v, t_cur, t_next) for v in (1.2, -0.4)]
        plain = [one_heun_step(den.scalar, v, t_cur, t_next) for v in (1.2, -0.4)]
        torch.testing.assert_close(
            out.x, torch.tensor([guided, plain], dtype=F64), rtol=1e-13, atol=1e-15
        )
        heun = 2 if i < 5 else 1
        assert out.nfe.tolist() == [2 * heun, heun]


def test_classifier_free_guidance_hand_computed():
    den = conditional_gmm()
    guide = UncondBranch(den)
    sig = SIGMAS6.tolist()
    w, i, label = 3.0, 2, 1
    x = torch.tensor([[0.5, 1.0]], dtype=F64)
    out = step(
        den,
        x,
        i,
        SIGMAS6,
        guide=guide,
        labels=torch.tensor([label]),
        knobs=Knobs(guidance=torch.tensor([w], dtype=F64)),
    )

    def d_w(v, t):
        s = torch.tensor([t], dtype=F64)
        uncond = den(v, s, None)
        return uncond + w * (den(v, s, torch.tensor([label])) - uncond)

    expected = one_heun_step(d_w, x, sig[i], sig[i + 1])
    torch.testing.assert_close(out.x, expected, rtol=1e-13, atol=1e-15)
    assert out.nfe.tolist() == [4]
    # w = 0 is the unconditional sampler, w = 1 the conditional one
    out0 = step(
        den,
        x,
        i,
        SIGMAS6,
        guide=guide,
        labels=torch.tensor([label]),
        knobs=Knobs(guidance=torch.tensor([0.0], dtype=F64)),
    )
    uncond = one_heun_step(lambda v, t: den(v, torch.tensor([t], dtype=F64)), x, sig[i], sig[i + 1])
    torch.testing.assert_close(out0.x, uncond, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("i, k, j", [(4, 2, 2), (4, 1, 3), (4, 10, 0), (1, 1, 0), (5, 5, 0)])
def test_renoise_hand_computed(i, k, j):
    den = Shrink(s=1.0)
    sig = SIGMAS6.tolist()
    x = torch.tensor([[0.25, -0.75]], dtype=F64)
    eps = torch.tensor([[1.5, 0.5]], dtype=F64)
    out = step(
        den,
        x,
        i,
        SIGMAS6,
        noise=FixedNoise(eps),
        budget=torch.tensor([2]),
        knobs=Knobs(renoise=torch.tensor([k])),
    )
    scale = math.sqrt(sig[j] ** 2 - sig[i] ** 2)
    expected = [[0.25 + scale * 1.5, -0.75 + scale * 0.5]]
    torch.testing.assert_close(out.x, torch.tensor(expected, dtype=F64), rtol=1e-14, atol=0)
    assert out.step_index.tolist() == [j]
    assert out.budget.tolist() == [1]
    assert out.nfe.tolist() == [0]
    assert out.renoised.tolist() == [True]
    assert out.renoise_ignored.tolist() == [False]


@pytest.mark.parametrize("i, budget", [(0, 2), (3, 0)], ids=["step0", "no-budget"])
def test_renoise_ignored_acts_neutral(i, budget):
    den = Shrink(s=1.0)
    sig = SIGMAS6.tolist()
    x = torch.tensor([[0.25, -0.75]], dtype=F64)
    eps = torch.tensor([[1.5, 0.5]], dtype=F64)
    out = step(
        den,
        x,
        i,
        SIGMAS6,
        noise=FixedNoise(eps),
        budget=torch.tensor([budget]),
        knobs=Knobs(renoise=torch.tensor([3])),
    )
    expected = [one_heun_step(den.scalar, v, sig[i], sig[i + 1]) for v in (0.25, -0.75)]
    torch.testing.assert_close(out.x, torch.tensor([expected], dtype=F64), rtol=1e-13, atol=0)
    assert out.renoise_ignored.tolist() == [True]
    assert out.renoised.tolist() == [False]
    assert out.step_index.tolist() == [i + 1]
    assert out.budget.tolist() == [budget]
    assert out.nfe.tolist() == [2]


def test_mixed_batch_equals_each_sample_alone():
    """Per-sample knobs: one batched call = each sample's own call (no batch-wide branch)."""
    den, guide = Shrink(s=1.0, m=0.5), Shrink(s=2.0)
    x = torch.tensor([[0.1, 0.2], [1.0, -1.0], [-0.5, 2.0], [3.0, 0.0], [0.0, 0.0]], dtype=F64)
    eps = torch.tensor([[1.0, -1.0], [0.5, 0.5], [-0.2, 0.3], [2.0, 1.0], [0.1, 0.1]], dtype=F64)
    idx = torch.tensor([0, 3, 4, 5, 2])
    knobs = Knobs(
        churn=torch.tensor([0.5, 0.0, 0.2, 0.3, 0.0], dtype=F64),
        s_noise=torch.tensor([1.0, 1.0, 1.007, 1.0, 1.0], dtype=F64),
        guidance=torch.tensor([1.0, 2.0, 1.0, 3.0, 1.5], dtype=F64),
        renoise=torch.tensor([0, 2, 0, 0, 1]),
    )
    budget = torch.tensor([1, 1, 1, 1, 0])
    out = sampler_step(
        den, x, idx, SIGMAS6, knobs=knobs, guide=guide, budget=budget, noise=FixedNoise(eps)
    )
    for b in range(5):
        one = sampler_step(
            den,
            x[b : b + 1],
            idx[b : b + 1],
            SIGMAS6,
            guide=guide,
            budget=budget[b : b + 1],
            noise=FixedNoise(eps[b : b + 1]),
            knobs=Knobs(
                **{
                    f: getattr(knobs, f)[b : b + 1]
                    for f in ("churn", "s_noise", "guidance", "renoise")
                }
            ),
        )
        torch.testing.assert_close(out.x[b : b + 1], one.x, rtol=1e-14, atol=0)
        for field in (
            "step_index",
            "budget",
            "nfe",
            "renoised",
            "churn_ignored",
            "renoise_ignored",
        ):
            assert getattr(out, field)[b] == getattr(one, field)[0], field
    assert out.nfe.tolist() == [2, 0, 2, 2, 4]
    assert out.step_index.tolist() == [1, 1, 5, 6, 3]
    assert out.renoise_ignored.tolist() == [False, False, False, False, True]
    assert out.churn_ignored.tolist() == [False, False, False, True, False]


def test_inactive_samples_are_untouched():
    den = Shrink(s=1.0)
    x = torch.tensor([[0.3, 0.4], [0.3, 0.4]], dtype=F64)
    out = sampler_step(
        den,
        x,
        torch.tensor([2, 6]),
        SIGMAS6,
        active=torch.tensor([True, False]),
        knobs=Knobs(renoise=torch.tensor([1, 1])),
        budget=torch.tensor([1, 1]),
        noise=FixedNoise(torch.ones(2, 2, dtype=F64)),
    )
    assert torch.equal(out.x[1], x[1])
    assert out.step_index.tolist() == [1, 6]
    assert out.nfe.tolist() == [0, 0]
    assert out.budget.tolist() == [0, 1]
    assert out.renoised.tolist() == [True, False]


# --------------------------------------------------------------------------------------------
# Exact NFE per action
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "i, gamma, w, k, budget, with_guide, active, nfe",
    [
        (0, 0.0, 1.0, 0, 0, False, True, 2),  # Heun step
        (5, 0.0, 1.0, 0, 0, False, True, 1),  # last step: Euler only
        (2, 0.3, 1.0, 0, 0, False, True, 2),  # churn costs nothing extra
        (2, 0.0, 2.0, 0, 0, True, True, 4),  # guided Heun step
        (5, 0.0, 2.0, 0, 0, True, True, 2),  # guided last step
        (2, 0.0, 1.0, 0, 0, True, True, 2),  # w = 1 with a guide: no extra
        (2, 0.0, 0.0, 0, 0, True, True, 4),  # w = 0 needs the guide only, counted as guided
        (2, 0.0, 2.0, 0, 0, False, True, 2),  # no guide: w acts as 1
        (3, 0.0, 2.0, 2, 1, True, True, 0),  # renoise: no NFE
        (3, 0.0, 2.0, 2, 0, True, True, 4),  # renoise without budget: a guided Heun step
        (3, 0.3, 3.0, 0, 0, True, False, 0),  # inactive
    ],
)
def test_nfe_per_action(i, gamma, w, k, budget, with_guide, active, nfe):
    den, guide = Shrink(s=1.0), Shrink(s=2.0)
    x = torch.zeros(1, 2, dtype=F64)
    out = step(
        den,
        x,
        i,
        SIGMAS6,
        guide=guide if with_guide else None,
        budget=torch.tensor([budget]),
        noise=FixedNoise(torch.ones(1, 2, dtype=F64)),
        active=torch.tensor([active]),
        knobs=Knobs(
            churn=torch.tensor([gamma], dtype=F64),
            guidance=torch.tensor([w], dtype=F64),
            renoise=torch.tensor([k]),
        ),
    )
    assert out.nfe.dtype == torch.long
    assert out.nfe.tolist() == [nfe]


def test_trajectory_nfe_with_renoise():
    """N steps, one renoise of 2 levels at step 4 (budget 1): N + 3 transitions, 2 more Heun
    steps than plain Heun, and the second request at step 4 is refused (budget spent)."""
    n = 8
    den = Shrink(s=1.0)
    sigmas = edm_sigmas(n)
    jumps = [0] * n
    jumps[4] = 2
    res = sample(
        den,
        sigmas,
        noise=BatchNoise(3, seed=0),
        data_shape=(2,),
        actions=schedule_actions(renoise=jumps),
        renoise_budget=1,
    )
    assert res.steps.tolist() == [n + 3] * 3
    assert res.nfe.tolist() == [2 * n - 1 + 4] * 3


# --------------------------------------------------------------------------------------------
# Noise sources
# --------------------------------------------------------------------------------------------


def _recorded_run(seeds, actions, renoise_budget=0, device="cpu"):
    """Run ``sample`` with per-sample noise and record every intermediate state by seed."""
    task = make_task("gmm2d", num_steps=10)
    den = task.denoiser.to(device)
    trace: list[torch.Tensor] = []

    def act(x, step_index, budget, labels):
        trace.append(torch.cat([x, step_index[:, None].to(x.dtype)], dim=1))
        return actions(x, step_index, budget, labels)

    res = sample(
        den,
        task.sigmas(dtype=F64),
        noise=PerSampleNoise(seeds, device=device, dtype=F64),
        data_shape=(2,),
        actions=act,
        renoise_budget=renoise_budget,
        dtype=F64,
    )
    return res, torch.stack(trace, dim=1)  # (B, transitions, 3)


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    """Bit-identical on the CPU; on CUDA, batched kernels may differ in the last bits."""
    if a.device.type == "cpu":
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_renoise", [False, True], ids=["churn", "churn+renoise"])
def test_per_sample_noise_is_independent_of_batch(with_renoise, device):
    n = 10
    gamma = [0.0, 0.3, 0.3, 0.5, 0.5, 0.2, 0.1, 0.1, 0.0, 0.0]
    renoise = [0, 0, 0, 0, 0, 3, 0, 0, 0, 0] if with_renoise else None
    actions = schedule_actions(churn=gamma, renoise=renoise)
    budget = 1 if with_renoise else 0
    full, full_trace = _recorded_run([3, 7, 11], actions, budget, device)
    alone, alone_trace = _recorded_run([7], actions, budget, device)
    reordered, re_trace = _recorded_run([11, 7, 3], actions, budget, device)
    for res, trace, b in ((full, full_trace, 1), (reordered, re_trace, 1)):
        assert_same(res.x[b], alone.x[0])
        assert_same(trace[b], alone_trace[0])
        assert res.nfe[b] == alone.nfe[0] and res.steps[b] == alone.steps[0]
    assert_same(full.x[0], reordered.x[2])
    assert not torch.allclose(full.x[0], full.x[1])  # different seeds, different samples
    # renoise at step 5 jumps back 3 levels: one renoise transition + 3 replayed steps
    assert alone.steps.tolist() == [n + (1 + 3 if with_renoise else 0)]


def test_per_sample_noise_draws_one_vector_per_sample():
    """Every call advances every stream by one draw, used or not: sample 1's second draw in a
    batch is the second draw of its seed alone."""
    noise = PerSampleNoise([5, 9], dtype=F64)
    a = noise.randn((3,), needed=False)
    b = noise.randn((3,))
    alone = PerSampleNoise([9], dtype=F64)
    first, second = alone.randn((3,))[0], alone.randn((3,))[0]
    assert torch.equal(a, torch.zeros(2, 3, dtype=F64))
    assert torch.equal(b[1], second) and not torch.equal(first, second)
    with pytest.raises(ValueError, match="at least one seed"):
        PerSampleNoise([])


@pytest.mark.parametrize("version", [1, 2])
def test_per_sample_noise_is_the_same_on_every_device(device, version):
    """Counter-based streams: the same numbers on any device (up to the last bits of version 1's
    float64 log/cos or version 2's float32 erfinv), delivered on that device, so CUDA and CPU
    evaluations share their common random numbers."""
    on_device = PerSampleNoise([5, 9, 13], device=device, dtype=F64, version=version)
    on_cpu = PerSampleNoise([5, 9, 13], dtype=F64, version=version)
    tol = 1e-12 if version == 1 else 1e-5
    for shape in ((2,), (1, 8, 8), (3,)):
        x = on_device.randn(shape)
        assert x.device.type == torch.device(device).type and x.dtype == F64
        assert x.shape == (3, *shape)
        torch.testing.assert_close(x.cpu(), on_cpu.randn(shape), rtol=tol, atol=tol)


def test_batch_noise_draws_nothing_when_neutral():
    gen = torch.Generator().manual_seed(5)
    task = make_task("gmm2d-bias", num_steps=6)
    noise = BatchNoise(4, generator=gen)
    res = sample(
        task.denoiser,
        task.sigmas(),
        noise=noise,
        data_shape=(2,),
        actions=schedule_actions(churn=[0.0] * 6, renoise=[0] * 6),
        renoise_budget=2,
    )
    ref = torch.Generator().manual_seed(5)
    torch.randn((4, 2), generator=ref)  # only the initial sample
    assert torch.equal(gen.get_state(), ref.get_state())
    assert res.nfe.tolist() == [11] * 4
    # with churn on, the generator moves on
    churn = schedule_actions(churn=[0.0, 0.2, 0.0, 0.0, 0.0, 0.0])
    sample(task.denoiser, task.sigmas(), noise=noise, data_shape=(2,), actions=churn)
    torch.randn((4, 2), generator=ref)
    assert not torch.equal(gen.get_state(), ref.get_state())


def test_schedule_actions_reads_tables_by_step_index():
    act = schedule_actions(churn=[0.0, 0.1, 0.2], renoise=[0, 0, 2])
    knobs = act(torch.zeros(3, 2, dtype=F64), torch.tensor([2, 0, 1]), torch.ones(3), None)
    torch.testing.assert_close(knobs.churn, torch.tensor([0.2, 0.0, 0.1], dtype=F64))
    assert knobs.renoise.dtype == torch.long and knobs.renoise.tolist() == [2, 0, 0]
    assert knobs.guidance is None and knobs.s_noise is None
    with pytest.raises(ValueError, match="one length"):
        schedule_actions(churn=[0.0, 0.1], guidance=[1.0])


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _call(knobs=None, **kwargs):
    x = torch.zeros(3, 2, dtype=F64)
    kwargs.setdefault("noise", FixedNoise(torch.ones(3, 2, dtype=F64)))
    return step(
        Shrink(1.0), x, 2, SIGMAS6, knobs=knobs, budget=torch.ones(3, dtype=torch.long), **kwargs
    )


@pytest.mark.parametrize(
    "knobs, error, match",
    [
        (
            Knobs(churn=torch.tensor([0.0, -0.1, 0.0])),
            ValueError,
            r"knob churn=-0\.1.* at sample 1 is not allowed; must be finite >= 0",
        ),
        (Knobs(churn=torch.tensor([0.0, 0.0, math.nan])), ValueError, r"knob churn=nan"),
        (Knobs(s_noise=torch.tensor([-1.0, 1.0, 1.0])), ValueError, r"knob s_noise=-1\.0"),
        (
            Knobs(guidance=torch.tensor([1.0, math.inf, 1.0])),
            ValueError,
            r"knob guidance=inf at sample 1 is not allowed; must be finite",
        ),
        (Knobs(guidance=torch.tensor([math.nan, 1.0, 1.0])), ValueError, r"knob guidance=nan"),
        (
            Knobs(renoise=torch.tensor([0, 0, -1])),
            ValueError,
            r"knob renoise=-1 at sample 2 is not allowed; must be an integer >= 0",
        ),
        (
            Knobs(renoise=torch.tensor([0.0, 1.0, 0.0])),
            TypeError,
            r"knob renoise must be an integer tensor, got torch.float32",
        ),
        (Knobs(churn=torch.zeros(2)), ValueError, r"knob churn must have shape \(3,\), got \(2,\)"),
        (Knobs(guidance=torch.ones(3, 1)), ValueError, r"knob guidance must have shape \(3,\)"),
    ],
)
def test_bad_knobs(knobs, error, match):
    with pytest.raises(error, match=match):
        _call(knobs)


def test_bad_step_index_and_missing_noise():
    x = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"step index 6 is out of range; allowed 0\.\.5"):
        sampler_step(Shrink(1.0), x, torch.tensor([0, 6]), SIGMAS6)
    with pytest.raises(ValueError, match=r"step_index must have shape \(2,\), got \(1,\)"):
        sampler_step(Shrink(1.0), x, torch.tensor([0]), SIGMAS6)
    with pytest.raises(ValueError, match=r"needs a noise source"):
        sampler_step(
            Shrink(1.0),
            x,
            torch.tensor([0, 1]),
            SIGMAS6,
            knobs=Knobs(churn=torch.tensor([0.0, 0.1], dtype=F64)),
        )


def test_label_out_of_range_through_the_sampler():
    den = conditional_gmm()
    with pytest.raises(
        ValueError, match=r"class label 5 is out of range; allowed labels are 0\.\.2"
    ):
        sample(
            den,
            edm_sigmas(4),
            noise=BatchNoise(2, seed=0),
            data_shape=(2,),
            labels=torch.tensor([1, 5]),
        )


def test_wrong_data_shape_through_the_sampler():
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\), got \(2, 3\)"):
        sample(conditional_gmm(), edm_sigmas(4), noise=BatchNoise(2, seed=0), data_shape=(3,))


class NaNBelow(torch.nn.Module):
    """A broken denoiser: NaN once sigma drops below ``threshold`` (in one sample, or inf)."""

    def __init__(self, threshold: float, value: float = math.nan) -> None:
        super().__init__()
        self.threshold, self.value = threshold, value

    def forward(self, x, sigma, class_labels=None):
        out = 0.5 * x.clone()
        bad = (sigma < self.threshold).reshape(-1, *([1] * (x.ndim - 1))).expand_as(x)
        return torch.where(bad, torch.full_like(x, self.value), out)


def _message_sigma(message: str) -> float:
    return float(re.search(r"sigma=([0-9.eE+-]+)", message).group(1))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_denoiser_names_step_and_sigma(value):
    sigmas = edm_sigmas(10)
    sig = sigmas.tolist()
    threshold = 1.0
    # the first evaluation below 1.0 is the Heun stage of the step i whose sigma_{i+1} < 1
    i = next(n for n in range(10) if sig[n + 1] < threshold)
    with pytest.raises(NonFiniteDenoiserError, match=rf"step index {i}, sigma=") as info:
        sample(NaNBelow(threshold, value), sigmas, noise=BatchNoise(2, seed=0), data_shape=(2,))
    assert _message_sigma(str(info.value)) == pytest.approx(sig[i + 1], rel=1e-5)
    assert "Heun stage" in str(info.value)
    assert isinstance(info.value, FloatingPointError)


def test_non_finite_guide_is_reported():
    with pytest.raises(NonFiniteDenoiserError, match=r"guidance source.*") as info:
        step(
            Shrink(1.0),
            torch.zeros(2, 2, dtype=F64),
            0,
            SIGMAS6,
            guide=NaNBelow(100.0),
            knobs=Knobs(guidance=torch.tensor([2.0, 1.0], dtype=F64)),
        )
    assert "step index 0" in str(info.value)
    assert _message_sigma(str(info.value)) == pytest.approx(10.0, rel=1e-5)


def test_uniform_steps_follow_writes_to_the_sigma_table_and_keep_nothing_after_it():
    """A step with ``uniform`` keeps the table's levels between calls: an in-place write to the
    table is seen by the next step, and what was kept goes when the table is freed."""
    import gc

    from diffgym.envs import step_levels

    def zero(x, t, labels=None):
        return torch.zeros_like(x)

    x, index = torch.ones(4, 2), torch.zeros(4, dtype=torch.long)
    kw = dict(uniform=0, validate=False, check_finite=False)
    sig = torch.tensor([2.0, 1.0, 0.5, 0.0])
    first = sampler_step(zero, x, index, sig, **kw)
    assert torch.equal(first.x, sampler_step(zero, x, index, sig.clone(), **kw).x)
    sig[1] = 1.5
    second = sampler_step(zero, x, index, sig, **kw)
    assert torch.equal(second.x, sampler_step(zero, x, index, sig.clone(), **kw).x)
    assert not torch.equal(first.x, second.x)
    # Heun with D = 0: d = x / t0, x' = x + h d, d' = x' / t1, x + h (d + d') / 2
    expected = x + (1.5 - 2.0) * (0.5 * x / 2.0 + 0.5 * (x + (1.5 - 2.0) * x / 2.0) / 1.5)
    torch.testing.assert_close(second.x, expected, rtol=0, atol=1e-6)
    key = id(sig)
    assert key in step_levels._LEVELS
    del sig
    gc.collect()
    assert key not in step_levels._LEVELS


@pytest.mark.parametrize("task_name", ["gmm2d", "digits"])
def test_neutral_uniform_steps_equal_the_general_path(task_name, monkeypatch):
    """A neutral step of samples all at one step, unvalidated, takes a short path; with
    ``validate=True`` the same step takes the general one. Both give the same numbers, counts,
    flags and noise stream, at every step including the last (Euler only)."""
    from diffgym.envs import sampler as sampler_module

    calls = []
    short = sampler_module._neutral_uniform_step
    monkeypatch.setattr(sampler_module, "_neutral_uniform_step",
                        lambda *a, **k: calls.append(1) or short(*a, **k))
    task = make_task(task_name)
    n = 16
    sig = task.base_sigmas("cpu", task.dtype)
    labels = task.sample_labels(n, torch.Generator().manual_seed(0))
    noises = [PerSampleNoise(list(range(n))) for _ in range(2)]
    x = noises[0].randn(task.data_shape) * sig[0]
    noises[1].randn(task.data_shape)
    xs, index = [x, x.clone()], torch.zeros(n, dtype=torch.long)
    budget = torch.ones(n, dtype=torch.long)
    for i in range(task.num_steps):
        outs = [
            sampler_step(task.denoiser, xs[v], index, sig, labels=labels, guide=task.guide,
                         knobs=Knobs(), budget=budget, noise=noises[v], validate=bool(v),
                         uniform=i, finite=None)
            for v in (0, 1)
        ]
        a, b = outs
        assert torch.equal(a.x, b.x) and torch.equal(a.step_index, b.step_index)
        for field in ("budget", "nfe", "renoised", "churn_ignored", "renoise_ignored"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
        assert (a.unfinished, a.rows_evaluated, a.uniform) == (b.unfinished, b.rows_evaluated,
                                                                b.uniform)
        xs, index = [a.x, b.x], a.step_index
    assert len(calls) == task.num_steps and a.unfinished == 0
    assert torch.equal(noises[0].randn(task.data_shape), noises[1].randn(task.data_shape))


def test_uniform_steps_keep_gradients_after_inference_mode_steps():
    """Levels first kept under inference mode serve a later autograd pass; a table that requires
    grad gets its gradient through the in-place arithmetic (both failed in a first version)."""

    def shrink(x, t, labels=None):
        return 0.5 * x

    sig = torch.tensor([2.0, 1.0, 0.5, 0.0])
    index = torch.zeros(3, dtype=torch.long)
    kw = dict(uniform=0, validate=False, check_finite=False)
    with torch.inference_mode():
        sampler_step(shrink, torch.ones(3, 2), index, sig, **kw)
    x = torch.ones(3, 2, requires_grad=True)
    sampler_step(shrink, x, index, sig, **kw).x.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    table = sig.clone().requires_grad_(True)
    sampler_step(shrink, torch.ones(3, 2), index, table, **kw).x.sum().backward()
    assert table.grad is not None and table.grad[:2].abs().min() > 0
