"""f-divergence reward transforms against their closed forms (design §4)."""

from __future__ import annotations

import math

import pytest
import torch
from gymnasium import spaces
from imitation.algorithms.adversarial.gail import RewardNetFromDiscriminatorLogit
from imitation.rewards.reward_nets import RewardNet

from diffgym.rewards import (
    DIVERGENCES,
    MAX_LOG_REWARD,
    RewardTransform,
    chi2_reward,
    fkl_reward,
    js_reward,
    pr_reward,
    rkl_reward,
)

LOGITS = torch.linspace(-8.0, 8.0, 161, dtype=torch.float64)


def test_registry_names():
    assert list(DIVERGENCES) == ["js", "rkl", "fkl", "chi2", "pr"]


class _LogitNet(RewardNet):
    """Returns the first column of the next state as the logit."""

    def forward(self, state, action, next_state, done):
        return next_state[:, 0]


def test_js_is_softplus_and_gail_reward():
    expected = torch.tensor([math.log1p(math.exp(v)) for v in LOGITS.tolist()], dtype=torch.float64)
    torch.testing.assert_close(js_reward(LOGITS), expected)
    # imitation's own GAIL reward on the same logits
    space = spaces.Box(-10.0, 10.0, (1,))
    gail = RewardNetFromDiscriminatorLogit(_LogitNet(space, spaces.Discrete(2)))
    obs = LOGITS[:, None]
    acts = torch.zeros(len(LOGITS))
    torch.testing.assert_close(gail(obs, acts, obs, acts), js_reward(LOGITS))


def test_rkl_is_the_logit():
    torch.testing.assert_close(rkl_reward(LOGITS), LOGITS)


@pytest.mark.parametrize("cap", [MAX_LOG_REWARD, 2.0])
def test_fkl_is_ratio_with_exponent_cap(cap):
    expected = torch.tensor([math.exp(min(v, cap)) for v in LOGITS.tolist()], dtype=torch.float64)
    torch.testing.assert_close(fkl_reward(LOGITS, max_log_reward=cap), expected)
    huge = fkl_reward(torch.tensor([1e4]), max_log_reward=cap)
    assert float(huge) == pytest.approx(math.exp(cap))


@pytest.mark.parametrize("cap", [MAX_LOG_REWARD, 2.0])
def test_chi2_is_squared_ratio_with_exponent_cap(cap):
    expected = torch.tensor(
        [math.exp(min(2 * v, cap)) for v in LOGITS.tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(chi2_reward(LOGITS, max_log_reward=cap), expected)
    # below the cap: exactly u^2 with u = e^l
    small = torch.tensor([-1.0, 0.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(chi2_reward(small), torch.exp(small) ** 2)


@pytest.mark.parametrize("lam", [0.25, 1.0, 4.0])
def test_pr_step(lam):
    expected = torch.tensor(
        [1.0 if lam * math.exp(v) > 1 else 0.0 for v in LOGITS.tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(pr_reward(LOGITS, lam=lam), expected)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_pr_smoothed(lam):
    tau = 0.3
    expected = torch.tensor(
        [1.0 / (1.0 + (lam * math.exp(v)) ** (-1.0 / tau)) for v in LOGITS.tolist()],
        dtype=torch.float64,
    )
    torch.testing.assert_close(pr_reward(LOGITS, lam=lam, temperature=tau), expected)
    # tends to the step away from the threshold as the temperature goes to 0
    sharp = pr_reward(LOGITS, lam=lam, temperature=1e-3)
    away = (LOGITS + math.log(lam)).abs() > 0.05
    torch.testing.assert_close(sharp[away], pr_reward(LOGITS, lam=lam)[away])


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_transform_shape_dtype_and_finite(name):
    logits = torch.tensor([-1e3, -5.0, 0.0, 5.0, 1e3], dtype=torch.float32)
    out = RewardTransform(name)(logits)
    assert out.shape == logits.shape and out.dtype == torch.float32
    assert torch.isfinite(out[1:-1]).all()
    if name in ("fkl", "chi2", "pr"):
        assert torch.isfinite(out).all()


def test_transform_matches_functions():
    torch.testing.assert_close(RewardTransform("js")(LOGITS), js_reward(LOGITS))
    torch.testing.assert_close(RewardTransform("rkl")(LOGITS), rkl_reward(LOGITS))
    torch.testing.assert_close(
        RewardTransform("fkl", max_log_reward=3.0)(LOGITS), fkl_reward(LOGITS, max_log_reward=3.0)
    )
    torch.testing.assert_close(RewardTransform("chi2")(LOGITS), chi2_reward(LOGITS))
    torch.testing.assert_close(
        RewardTransform("pr", lam=2.0, temperature=0.5)(LOGITS),
        pr_reward(LOGITS, lam=2.0, temperature=0.5),
    )


def test_unknown_divergence_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown divergence 'kl'.*js, rkl, fkl, chi2, pr"):
        RewardTransform("kl")


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_lambda(lam):
    with pytest.raises(ValueError, match="lam"):
        RewardTransform("pr", lam=lam)


def test_bad_temperature_and_cap():
    with pytest.raises(ValueError, match="temperature"):
        RewardTransform("pr", temperature=-0.1)
    with pytest.raises(ValueError, match="max_log_reward"):
        RewardTransform("fkl", max_log_reward=0.0)


@pytest.mark.parametrize("name", ["js", "rkl", "fkl", "chi2", "pr"])
def test_centred_transform_is_zero_at_logit_zero(name):
    logit = torch.linspace(-3, 3, 13, dtype=torch.float64)
    raw = RewardTransform(name, temperature=0.5)
    centred = RewardTransform(name, temperature=0.5, center=True)
    shift = raw(torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(centred(logit), raw(logit) - shift)
    assert float(centred(torch.zeros(1, dtype=torch.float64))) == 0.0
    if name == "js":
        torch.testing.assert_close(shift, torch.log(torch.tensor(2.0, dtype=torch.float64)))
