"""Noise sources: the counter-based per-sample streams (independence from the batch, order and
device; determinism; the normal distribution; draws for subsets of samples), checkpoint state of
both sources, categorical draws, and the knob vocabulary (``churn``, ``gamma`` deprecated)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffgym.envs import (
    BatchNoise,
    DiffusionSamplingEnv,
    FiniteCheck,
    Knobs,
    NonFiniteDenoiserError,
    PerSampleNoise,
    edm_sigmas,
    sample,
    sampler_step,
    schedule_actions,
)
from diffgym.envs.noise import (
    NOISE_VERSION_ENV,
    PREFETCH_HASHES,
    PREFETCH_MAX_DRAWS,
    _mix64,
    _mix64_int,
    _signed,
    default_noise_version,
    noise_key_fields,
    set_default_noise_version,
)

F64 = torch.float64
VERSIONS = pytest.mark.parametrize("version", [1, 2])


def test_mix64_matches_unsigned_reference():
    """The int64 torch hash equals splitmix64's finaliser in unsigned arithmetic (wrapping
    multiplication, logical shifts), negative inputs included."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randint(-(2**63), 2**63 - 1, (500,), dtype=torch.long, generator=gen)
    z = torch.cat([z, torch.tensor([0, 1, -1, 2**63 - 1, -(2**63)])])
    got = _mix64(z.clone()).tolist()
    want = [_signed(_mix64_int(v)) for v in z.tolist()]
    assert got == want


def _reference_draws(seed: int, draws: int, numbers: int) -> list[list[float]]:
    """Sample ``seed``'s first ``draws`` draws of ``numbers`` normals, from the documented
    recipe in plain Python (unsigned 64-bit ints, ``math``'s float64 Box-Muller)."""
    from diffgym.envs.noise import _DRAW, _GOLDEN, _seed_key

    key = _seed_key(seed) & ((1 << 64) - 1)
    out = []
    for c in range(draws):
        draw_key = _mix64_int(key + c * _DRAW)
        row = []
        for p in range((numbers + 1) // 2):
            h = _mix64_int(draw_key + _GOLDEN * (p + 1))
            u1 = 2.0 - (1.0 + (h >> 32) * 2.0**-32)  # 1 - a 2^-32, in (0, 1]
            theta = (h & 0xFFFFFFFF) * 2.0**-32 * 2.0 * math.pi
            r = math.sqrt(-2.0 * math.log(u1))
            row += [r * math.cos(theta), r * math.sin(theta)]
        out.append(row[:numbers])
    return out


@pytest.mark.parametrize("prefetch", [True, False])
def test_version_1_draws_follow_the_documented_recipe(prefetch):
    """Version 1: every number is splitmix64 of (key, draw counter, lane) turned into a
    Box-Muller pair in float64: pinned against a plain-Python reference (float32 output exactly;
    float64 to 1e-14, the last bits of ``math``'s log/cos/sin against torch's), and every draw is
    contiguous."""
    seeds = [0, 1, 12345, 2**40 + 3]
    for shape in ((2,), (5,), (64,)):
        noise = PerSampleNoise(seeds, dtype=F64, prefetch=prefetch, version=1)
        got = torch.stack([noise.randn(shape).reshape(len(seeds), -1) for _ in range(3)], 1)
        for b, seed in enumerate(seeds):
            want = torch.tensor(_reference_draws(seed, 3, math.prod(shape)), dtype=F64)
            torch.testing.assert_close(got[b], want, rtol=0, atol=1e-14)
            as_f32 = PerSampleNoise([seed], prefetch=prefetch, version=1).randn(shape)
            assert torch.equal(as_f32.reshape(-1), want[0].float())  # rounded once, from f64
    for shape in ((9,), (3, 3), (2,)):  # odd counts drop the last pair's second number
        noise = PerSampleNoise(range(5), prefetch=prefetch, version=1)
        assert all(noise.randn(shape).is_contiguous() for _ in range(4))
        assert noise.randn_rows(torch.tensor([0, 3]), shape).is_contiguous()


def _reference_draws_v2(seed: int, draws: int, numbers: int) -> list[list[float]]:
    """Version 2's recipe in plain Python: one splitmix64 hash per pair, the low then the high
    32-bit word, each word's top 24 bits ``v`` (signed) giving ``Phi^-1((v + 1/2) / 2^24 +
    1/2)`` (``statistics.NormalDist``, float64)."""
    from statistics import NormalDist

    from diffgym.envs.noise import _DRAW, _GOLDEN, _seed_key

    key = _seed_key(seed) & ((1 << 64) - 1)
    out = []
    for c in range(draws):
        row = []
        for p in range((numbers + 1) // 2):
            h = _mix64_int(key + c * _DRAW + _GOLDEN * (p + 1))
            for word in (h & 0xFFFFFFFF, h >> 32):
                v = (word >> 8) - (1 << 24 if word >> 31 else 0)  # signed top 24 bits
                row.append(NormalDist().inv_cdf(0.5 + (v + 0.5) / 2**24))
        out.append(row[:numbers])
    return out


@pytest.mark.parametrize("prefetch", [True, False])
def test_version_2_draws_follow_the_documented_recipe(prefetch):
    """Version 2 (the default) against its plain-Python recipe: the same to float32's erfinv
    accuracy (a few 1e-7 relative), float64 output is the float32 numbers cast, odd counts drop
    the last word, and every draw is contiguous."""
    seeds = [0, 1, 12345, 2**40 + 3]
    assert PerSampleNoise(seeds).version == 2
    for shape in ((2,), (5,), (64,), (1,)):
        noise = PerSampleNoise(seeds, prefetch=prefetch)
        as_f64 = PerSampleNoise(seeds, dtype=F64, prefetch=prefetch)
        draws = [noise.randn(shape) for _ in range(40)]
        for c, got in enumerate(draws[:3]):
            assert got.dtype == torch.float32 and got.is_contiguous()
            assert torch.equal(as_f64.randn(shape), got.double())
            for b, seed in enumerate(seeds):
                want = torch.tensor(_reference_draws_v2(seed, c + 1, math.prod(shape))[c])
                torch.testing.assert_close(got[b].reshape(-1), want, rtol=2e-6, atol=2e-6)
        first = draws[0].clone()
        draws[0].add_(1.0)  # writing to a served draw changes no other draw
        again = PerSampleNoise(seeds, prefetch=prefetch)
        assert torch.equal(again.randn(shape), first)
        assert all(torch.equal(again.randn(shape), d) for d in draws[1:])
    for shape in ((9,), (3, 3)):
        noise = PerSampleNoise(range(5), prefetch=prefetch)
        assert all(noise.randn(shape).is_contiguous() for _ in range(4))
        assert noise.randn_rows(torch.tensor([0, 3]), shape).is_contiguous()


def test_noise_versions_default_key_fields_and_errors(monkeypatch):
    """The default comes from $DIFFGYM_NOISE_VERSION (2 when unset); cache keys add a field only
    for versions after 1; bad versions are refused with the value and the allowed ones."""
    monkeypatch.setenv(NOISE_VERSION_ENV, "")  # empty: unset (restored after the test)
    assert default_noise_version() == 2 and noise_key_fields() == {"noise_version": 2}
    set_default_noise_version(1)
    assert PerSampleNoise([3]).version == 1 and noise_key_fields() == {}
    assert noise_key_fields(2) == {"noise_version": 2}
    v1 = PerSampleNoise([3, 4]).randn((4,))
    assert not torch.equal(v1, PerSampleNoise([3, 4], version=2).randn((4,)))
    assert PerSampleNoise([1], version=np.int64(1)).version == 1  # numpy integers too
    for bad in (0, 3, "two", True, 1.5, np.float64(2.0)):
        with pytest.raises(ValueError, match=r"must be one of \(1, 2\), got"):
            PerSampleNoise([1], version=bad)
    with pytest.raises(ValueError, match=r"must be one of \(1, 2\), got 7"):
        set_default_noise_version(7)
    monkeypatch.setenv(NOISE_VERSION_ENV, "9")
    with pytest.raises(ValueError, match=r"\$DIFFGYM_NOISE_VERSION must be one of .* got '9'"):
        PerSampleNoise([1])


@VERSIONS
def test_per_sample_noise_is_deterministic_and_independent_of_batch_and_order(version):
    a = PerSampleNoise([3, 7, 11], dtype=F64, version=version)
    b = PerSampleNoise([11, 3, 7], dtype=F64, version=version)
    alone = PerSampleNoise([7], dtype=F64, version=version)
    for shape in ((2,), (1, 5, 5), (3,)):
        xa, xb, x1 = a.randn(shape), b.randn(shape), alone.randn(shape)
        assert torch.equal(xa[1], x1[0]) and torch.equal(xb[2], x1[0])
        assert torch.equal(xa[0], xb[1]) and torch.equal(xa[2], xb[0])
        assert not torch.equal(xa[0], xa[1])
    again = PerSampleNoise([3, 7, 11], dtype=F64, version=version)
    twin = PerSampleNoise([3, 7, 11], dtype=F64, version=version)
    assert torch.equal(again.randn((2,)), twin.randn((2,)))


@VERSIONS
def test_per_sample_noise_is_standard_normal(version):
    """Moments, tails and independence of lanes, draws and neighbouring seeds."""
    noise = PerSampleNoise(range(4096), dtype=F64, version=version)
    x = noise.randn((64,))  # 262,144 numbers
    y = noise.randn((64,))
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01
    assert abs(float((x**3).mean())) < 0.03 and abs(float((x**4).mean()) - 3) < 0.06
    assert abs(float((x.abs() > 1.96).double().mean()) - 0.05) < 0.003
    for u, v in ((x[:, 0::2], x[:, 1::2]), (x, y), (x[:-1], x[1:])):  # lanes, draws, seeds
        corr = torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1]
        assert abs(float(corr)) < 0.01
    ks = torch.sort(x.flatten()).values
    cdf = 0.5 * (1 + torch.erf(ks / math.sqrt(2)))
    emp = torch.arange(1, ks.numel() + 1, dtype=F64) / ks.numel()
    assert float((cdf - emp).abs().max()) < 0.005  # KS statistic (critical ~0.0034 at 1 %)


@VERSIONS
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_prefetched_draws_are_the_draws_computed_one_at_a_time(dtype, device, version):
    """Full-batch draws served from prefetched blocks equal the draw computed alone at the same
    counters, through skips, unneeded draws, a second shape, row draws, reseeds and a state
    round trip (each of which moves counters or drops the blocks)."""
    seeds = list(range(40, 90))
    noise = PerSampleNoise(seeds, device=device, dtype=dtype, version=version)

    def alone(shape):  # a fresh source at the same counters: its first draw is never prefetched
        ref = PerSampleNoise(seeds, device=device, dtype=dtype, version=version)
        ref.load_state_dict(noise.state_dict())
        return ref.randn(shape)

    steps = (["draw"] * 9 + ["skip", "unneeded", "other"] + ["draw"] * 20 + ["rows", "draw",
             "draw", "reseed"] + ["draw"] * 5 + ["state"] + ["draw"] * 70)
    blocks = 0
    for step in steps:
        if step in ("draw", "other"):
            shape = (2,) if step == "draw" else (3, 3)
            want = alone(shape)
            got = noise.randn(shape)
            assert got.shape == (len(seeds), *shape) and got.dtype == dtype
            assert torch.equal(got, want), step
        elif step == "skip":
            noise.skip((2,))
        elif step == "unneeded":
            assert not noise.randn((2,), needed=False).any()
        elif step == "rows":
            noise.randn_rows(torch.tensor([3, 17], device=device), (2,))
        elif step == "reseed":
            noise.reseed(5, 1234)
            seeds[5] = 1234
        else:
            noise.load_state_dict(noise.state_dict())
        blocks = max(blocks, max((b.shape[0] for _, b in noise._blocks.values()), default=0))
    assert blocks == PREFETCH_MAX_DRAWS  # the blocks did grow to the cap


def test_large_draws_and_prefetch_false_are_not_prefetched():
    """A draw of PREFETCH_HASHES hashes or more is computed alone (no block is kept), and so is
    every draw with ``prefetch=False``."""
    noise = PerSampleNoise(range(PREFETCH_HASHES // 32), dtype=torch.float32)
    for _ in range(4):
        noise.randn((64,))  # 32 hashes per sample: one draw fills the budget
    assert not noise._blocks
    small, off = PerSampleNoise(range(8)), PerSampleNoise(range(8), prefetch=False)
    for _ in range(3):
        assert torch.equal(small.randn((2,)), off.randn((2,)))
    assert [b.shape[0] for _, b in small._blocks.values()] == [2]
    assert not off._blocks  # prefetch=False: every draw computed when asked for


@VERSIONS
def test_rows_draws_advance_only_their_samples(version):
    noise = PerSampleNoise([5, 9, 13], dtype=F64, version=version)
    sub = noise.randn_rows(torch.tensor([1]), (4,))
    assert torch.equal(sub[0], PerSampleNoise([9], dtype=F64, version=version).randn((4,))[0])
    full = noise.randn((4,))
    first_5 = PerSampleNoise([5], dtype=F64, version=version).randn((4,))[0]
    nine = PerSampleNoise([9], dtype=F64, version=version)
    nine.randn((4,))
    assert torch.equal(full[0], first_5) and torch.equal(full[1], nine.randn((4,))[0])
    noise.reseed(1, 9)
    assert torch.equal(noise.randn_rows(torch.tensor([1]), (4,))[0], sub[0])


def test_categorical_rows_follow_the_probabilities():
    probs = torch.tensor([0.5, 0.0, 0.2, 0.3], dtype=F64)
    noise = PerSampleNoise(range(20000))
    labels = noise.categorical_rows(torch.arange(20000), probs)
    freq = torch.bincount(labels, minlength=4).double() / 20000
    assert freq[1] == 0
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    # sample b's label depends only on its seed
    alone = PerSampleNoise([17]).categorical_rows(torch.tensor([0]), probs)
    assert labels[17] == alone[0]


@VERSIONS
@pytest.mark.parametrize("per_sample", [False, True])
def test_noise_state_dict_round_trip(per_sample, device, version):
    def make():
        if per_sample:
            return PerSampleNoise([1, 2, 3], device=device, dtype=F64, version=version)
        return BatchNoise(3, device=device, dtype=F64, seed=4)

    noise = make()
    noise.randn((2,))
    state = noise.state_dict()
    assert all(isinstance(v, (int, torch.Tensor)) for v in state.values())
    assert all(v.device.type == "cpu" for v in state.values() if torch.is_tensor(v))
    want = noise.randn((2,))
    fresh = make()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.randn((2,)), want)


def test_noise_state_carries_the_generator_version():
    """A state restores its generator; a state from before versions (no "version") is
    version 1; a bad version in a state is refused."""
    old = PerSampleNoise([1, 2], version=1)
    old.randn((3,))
    state = old.state_dict()
    assert state["version"] == 1
    legacy = {k: v for k, v in state.items() if k != "version"}
    fresh = PerSampleNoise([1, 2], version=2)
    fresh.load_state_dict(legacy)
    assert fresh.version == 1 and torch.equal(fresh.randn((3,)), old.randn((3,)))
    v2 = PerSampleNoise([1, 2], version=2)
    into_v1 = PerSampleNoise([1, 2], version=1)
    into_v1.load_state_dict(v2.state_dict())
    assert into_v1.version == 2 and torch.equal(into_v1.randn((3,)), v2.randn((3,)))
    with pytest.raises(ValueError, match=r"noise state 'version' must be one of \(1, 2\), got 5"):
        fresh.load_state_dict({**state, "version": 5})


def test_noise_state_errors():
    with pytest.raises(ValueError, match="is a BatchNoise state; this is a PerSampleNoise"):
        PerSampleNoise([1, 2]).load_state_dict(BatchNoise(2, seed=0).state_dict())
    with pytest.raises(ValueError, match="state is for 3 samples, this source has 2"):
        PerSampleNoise([1, 2]).load_state_dict(PerSampleNoise([1, 2, 3]).state_dict())
    with pytest.raises(ValueError, match="not a noise state"):
        BatchNoise(2, seed=0).load_state_dict({"generator": torch.zeros(3)})
    foreign = {"per_sample": 0, "batch_size": 2, "generator": torch.zeros(16, dtype=torch.uint8)}
    with pytest.raises(ValueError, match="does not fit this cpu generator"):
        BatchNoise(2, seed=0).load_state_dict(foreign)


def test_gamma_is_a_deprecated_alias_of_churn():
    c = torch.tensor([0.1, 0.2])
    with pytest.warns(DeprecationWarning, match=r"Knobs\(gamma=...\) is deprecated"):
        k = Knobs(gamma=c)
    assert k.churn is c
    with pytest.warns(DeprecationWarning, match="Knobs.gamma is deprecated"):
        assert k.gamma is c
    with pytest.raises(TypeError, match="churn or its deprecated alias gamma, not both"):
        Knobs(churn=c, gamma=c)
    with pytest.warns(DeprecationWarning, match=r"schedule_actions\(gamma=...\)"):
        act = schedule_actions(gamma=[0.0, 0.3])
    knobs = act(torch.zeros(2, 2), torch.tensor([1, 0]), torch.zeros(2), None)
    assert knobs.churn.tolist() == pytest.approx([0.3, 0.0])


@pytest.mark.parametrize(
    "tables, match",
    [
        ({"churn": [0.0, -0.1]}, r"schedule table churn\[1\]=-0\.1 is not allowed; must be finite"),
        ({"s_noise": [math.nan, 1.0]}, r"schedule table s_noise\[0\]=nan"),
        ({"guidance": [1.0, math.inf]}, r"guidance\[1\]=inf is not allowed; must be finite"),
        ({"renoise": [0, 1.5]}, r"renoise\[1\]=1\.5 is not allowed; must be an integer >= 0"),
    ],
)
def test_schedule_tables_are_validated_once(tables, match):
    with pytest.raises(ValueError, match=match):
        schedule_actions(**tables)


class NaNAt(torch.nn.Module):
    """0.5 x, but NaN for sample 1 once sigma < 1."""

    def forward(self, x, sigma, class_labels=None):
        out = 0.5 * x.clone()
        out[1] = torch.where(sigma[1] < 1.0, math.nan, out[1])
        return out


def test_finite_checks_are_read_with_the_next_step():
    sigmas = edm_sigmas(6)
    x = torch.zeros(3, 2)
    finite = FiniteCheck()
    i = next(n for n in range(6) if float(sigmas[n + 1]) < 1.0)
    idx = torch.full((3,), i)
    out = sampler_step(NaNAt(), x, idx, sigmas, finite=finite)  # no raise yet
    assert not torch.isfinite(out.x[1]).all()
    with pytest.raises(NonFiniteDenoiserError, match=rf"Heun stage\) at step index {i}.*sample 1"):
        sampler_step(NaNAt(), out.x, idx + 1, sigmas, finite=finite)
    sampler_step(NaNAt(), x, idx, sigmas, finite=finite)
    with pytest.raises(NonFiniteDenoiserError, match=r"sample 1"):
        finite.check()
    finite.check()  # cleared after raising


@pytest.mark.parametrize("churn", [False, True])
def test_env_raises_non_finite_by_the_end_of_the_episode(churn):
    """Neutral actions need no host sync: the check comes at the end of the episode; with churn
    the step's sync reads it one step later. Either way the first bad stage is named."""
    env = DiffusionSamplingEnv("gmm2d", 3)
    env.reset(seed=0)
    env.task.denoiser.forward = lambda x, sigma, class_labels=None: x * math.nan
    actions = torch.zeros(3, 2, dtype=torch.long)
    actions[:, 0] = int(churn)
    steps = 0
    with pytest.raises(NonFiniteDenoiserError, match=r"Euler stage\) at step index 0"):
        while steps < env.num_steps:
            steps += 1
            env.step(actions)
    assert steps == (2 if churn else env.num_steps)


def test_sample_raises_non_finite_at_the_end():
    """A NaN on the last (Euler-only) step is reported by the end-of-trajectory check."""
    sigmas = edm_sigmas(3)

    class LastNaN(torch.nn.Module):
        calls = 0

        def forward(self, x, sigma, class_labels=None):
            self.calls += 1
            return 0.5 * x * (math.nan if self.calls == 5 else 1.0)  # the 5th call: step 2

    with pytest.raises(NonFiniteDenoiserError, match=r"Euler stage\) at step index 2"):
        sample(LastNaN(), sigmas, noise=BatchNoise(2, seed=0), data_shape=(2,))


def test_env_drops_its_uniform_step_hint_when_the_state_is_written():
    """The env runs neutral steps without a host sync while it knows every sub-env's step; a
    state restored by hand (as a checkpoint does) must not be read with a stale hint."""
    env = DiffusionSamplingEnv("gmm2d", 4)
    ref = DiffusionSamplingEnv("gmm2d", 4)
    for e in (env, ref):
        e.reset(seed=0)
    neutral = torch.zeros(4, 2, dtype=torch.long)
    env.step(neutral)
    assert env._uniform_hint() == 1
    ragged = torch.tensor([0, 3, 5, 2])
    for e in (env, ref):
        e.step_index.copy_(ragged)
    assert env._uniform_hint() is None
    ref._uniform_step = None  # no hint at all
    ref.x.copy_(env.x)
    torch.testing.assert_close(env.step(neutral)[0], ref.step(neutral)[0], rtol=0, atol=0)
    assert env.step_index.tolist() == [1, 4, 6, 3]


def test_finite_cpu_steps_keep_no_tensors_until_one_is_not_finite():
    """On the CPU a finite step's sum is read at once: an episode of neutral env steps keeps no
    step's tensors alive (they cost the env more than the check), while a NaN is still queued and
    raised by the end of the episode, naming its first stage."""
    env = DiffusionSamplingEnv("gmm2d", 3)
    env.reset(seed=0)
    neutral = torch.zeros(3, 2, dtype=torch.long)
    for _ in range(env.num_steps - 1):
        env.step(neutral)
        assert len(env._finite) == 0
    finite = FiniteCheck()
    sigmas = edm_sigmas(6)
    i = next(n for n in range(6) if float(sigmas[n + 1]) < 1.0)
    out = sampler_step(NaNAt(), torch.zeros(3, 2), torch.full((3,), i - 1), sigmas,
                       finite=finite, uniform=i - 1, validate=False)
    assert len(finite) == 0  # finite: read and dropped
    sampler_step(NaNAt(), out.x, torch.full((3,), i), sigmas, finite=finite, uniform=i,
                 validate=False)
    assert len(finite) == 1  # not finite: queued with its stage outputs
    with pytest.raises(NonFiniteDenoiserError, match=rf"Heun stage\) at step index {i}.*sample 1"):
        finite.check()


def test_a_nan_is_read_after_max_pending_steps_on_every_device():
    """The CPU reads finite sums at once and queues only the NaN step, but the forced read still
    comes after ``max_pending`` recorded steps, as when every step was queued: a 100-step run
    with a NaN at step 9 raises at step 64, not at its end."""

    class NaNAtCall(torch.nn.Module):
        calls = 0

        def forward(self, x, sigma, class_labels=None):
            self.calls += 1
            return 0.5 * x * (math.nan if self.calls == 20 else 1.0)  # the Heun stage of step 9

    denoiser = NaNAtCall()
    with pytest.raises(NonFiniteDenoiserError, match=r"Heun stage\) at step index 9"):
        sample(denoiser, edm_sigmas(100), noise=BatchNoise(2, seed=0), data_shape=(2,))
    assert denoiser.calls == 2 * FiniteCheck.max_pending  # read with step 64's sync


def test_finite_check_ignores_an_overflowing_sum_of_finite_samples():
    """The queued flag is the state's sum: finite entries whose sum overflows are confirmed entry
    by entry and pass; a real NaN still raises."""
    finite = FiniteCheck()
    big = torch.full((4, 2), 3e38)  # finite float32 entries, the sum is inf
    finite.record(big, [], torch.zeros(4, dtype=torch.long), torch.tensor(1.0))
    assert not bool(finite.flags().all())
    finite.check()  # no raise
    bad = big.clone()
    bad[2, 1] = math.nan
    finite.record(bad, [], torch.zeros(4, dtype=torch.long), torch.tensor(1.0))
    with pytest.raises(NonFiniteDenoiserError, match=r"sample 2"):
        finite.check()
