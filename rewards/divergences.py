"""f-divergence rewards on the discriminator logit (design §4).

The discriminator is trained with logistic loss, expert = 1, policy = 0, so at its optimum its
logit ``l`` estimates the log density ratio ``log u = log d_E(s) / d_pi(s)``. Minimising
``D_f(d_E || d_pi) = E_pi[f(u)]`` by policy gradient gives the per-state reward
``r = u f'(u) - f(u)`` (up to an additive constant, which does not change the optimal policy):

==========  =================================  ============================  ==================
name        ``f(u)``                           reward on the logit ``l``     leans towards
==========  =================================  ============================  ==================
``js``      GAIL's Jensen-Shannon form         ``softplus(l)``               balanced
``rkl``     ``-log u`` (reverse KL)            ``l``                         precision
``fkl``     ``u log u`` (forward KL)           ``exp(l)``, clipped           recall
``chi2``    ``(u - 1)^2`` (Pearson)            ``exp(2 l)``, clipped         recall
``pr``      ``max(lam u, 1) - max(lam, 1)``    ``1{lam e^l > 1}``            set by ``lam``
==========  =================================  ============================  ==================

``js`` is exactly imitation's GAIL reward ``-log(1 - sigmoid(l))``. ``pr`` is the PR-divergence of
Verine et al. 2023 ("Precision-Recall Divergence Optimization for Generative Modeling with GANs
and Normalizing Flows", NeurIPS). Its reward pays 1 wherever ``u > 1/lam``: a large ``lam`` pays
every state the expert supports at all and only penalises leaving the expert's support
(precision); a small ``lam`` pays only states the policy under-visits by more than ``1/lam``
(recall).

**Clipping.** ``fkl`` and ``chi2`` exponentiate the logit. The logit is only a trustworthy log
ratio where both occupancies have mass; where the policy visits states the expert never does (or
the reverse) a well-trained discriminator drives ``|l|`` far beyond the true ratio, and the
exponential turns that error into rewards many orders of magnitude apart: a handful of states
would dominate returns, advantage normalisation and value targets (and ``exp`` overflows float32
past ``l ~ 88``). Both therefore cap the *exponent* at :data:`MAX_LOG_REWARD` (default 5, i.e.
rewards <= e^5 ~ 148: a ratio of 148 for ``fkl``, of sqrt(148) ~ 12 for ``chi2``). The cap only
acts above the ratio the discriminator can estimate from a batch of a few thousand samples; below
it the transforms are exact. ``js`` and ``rkl`` grow at most linearly and ``pr`` is bounded, so
they are not clipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DIVERGENCES",
    "MAX_LOG_REWARD",
    "RewardTransform",
    "chi2_reward",
    "fkl_reward",
    "js_reward",
    "pr_reward",
    "rkl_reward",
]

MAX_LOG_REWARD = 5.0
"""Cap on the exponent of the ``fkl`` / ``chi2`` rewards: rewards are at most ``e^5 ~ 148``."""


def js_reward(logit: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon (GAIL): ``softplus(l) = -log(1 - sigmoid(l))``, elementwise."""
    return F.softplus(logit)


def rkl_reward(logit: torch.Tensor) -> torch.Tensor:
    """Reverse KL ``KL(d_pi || d_E)``: the logit itself (``log u``), elementwise."""
    return logit


def fkl_reward(logit: torch.Tensor, *, max_log_reward: float = MAX_LOG_REWARD) -> torch.Tensor:
    """Forward KL ``KL(d_E || d_pi)``: ``exp(min(l, max_log_reward))`` (``u``, clipped)."""
    return torch.exp(logit.clamp(max=max_log_reward))


def chi2_reward(logit: torch.Tensor, *, max_log_reward: float = MAX_LOG_REWARD) -> torch.Tensor:
    """Pearson chi^2: ``exp(min(2 l, max_log_reward))`` (``u^2``, clipped)."""
    return torch.exp((2.0 * logit).clamp(max=max_log_reward))


def pr_reward(logit: torch.Tensor, *, lam: float = 1.0, temperature: float = 0.0) -> torch.Tensor:
    """Precision-recall PR-``lam``: ``1{lam e^l > 1}`` (``temperature = 0``), or the smoothed
    ``sigmoid((l + log lam) / temperature)``, which tends to the step as ``temperature -> 0``."""
    shifted = logit + math.log(lam)
    if temperature == 0.0:
        return (shifted > 0).to(logit.dtype)
    return torch.sigmoid(shifted / temperature)


DIVERGENCES: dict[str, Callable[..., torch.Tensor]] = {
    "js": js_reward,
    "rkl": rkl_reward,
    "fkl": fkl_reward,
    "chi2": chi2_reward,
    "pr": pr_reward,
}
"""Reward transforms by name (the registry :class:`RewardTransform` selects from)."""


@dataclass(frozen=True)
class RewardTransform:
    """The reward on the discriminator logit for one f-divergence, with its parameters.

    Calling it maps logits ``(batch,)`` to rewards ``(batch,)``.

    Args:
        divergence: a key of :data:`DIVERGENCES`.
        lam: ``lam`` of ``pr`` (> 0; ignored by the other divergences).
        temperature: smoothing of ``pr`` (>= 0; 0 = the exact step).
        max_log_reward: exponent cap of ``fkl`` and ``chi2`` (> 0).
        center: subtract the reward of logit 0, so a state the discriminator cannot tell from the
            expert's earns 0 (``js``: ``softplus(l) - log 2``). A constant per-step shift does not
            change the optimal policy when every episode has the same length, but with renoise
            episodes vary in length and an uncentred positive reward (``js``, ``fkl``, ``chi2``)
            would pay the policy for lengthening them.

    Raises:
        ValueError: unknown divergence (the message lists the valid names), ``lam <= 0``,
            ``temperature < 0``, ``max_log_reward <= 0`` or a non-finite value.
    """

    divergence: str = "js"
    lam: float = 1.0
    temperature: float = 0.0
    max_log_reward: float = MAX_LOG_REWARD
    center: bool = False

    def __post_init__(self) -> None:
        if self.divergence not in DIVERGENCES:
            raise ValueError(
                f"unknown divergence {self.divergence!r}; valid divergences: "
                f"{', '.join(DIVERGENCES)}"
            )
        if not math.isfinite(self.lam) or self.lam <= 0:
            raise ValueError(
                f"lam (the PR-divergence lambda) must be finite and > 0, got {self.lam}"
            )
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature}")
        if not math.isfinite(self.max_log_reward) or self.max_log_reward <= 0:
            raise ValueError(f"max_log_reward must be finite and > 0, got {self.max_log_reward}")

    def __call__(self, logit: torch.Tensor) -> torch.Tensor:
        reward = self._raw(logit)
        if self.center:
            reward = reward - self._raw(torch.zeros((), dtype=logit.dtype, device=logit.device))
        return reward

    def _raw(self, logit: torch.Tensor) -> torch.Tensor:
        if self.divergence == "pr":
            return pr_reward(logit, lam=self.lam, temperature=self.temperature)
        if self.divergence in ("fkl", "chi2"):
            return DIVERGENCES[self.divergence](logit, max_log_reward=self.max_log_reward)
        return DIVERGENCES[self.divergence](logit)
