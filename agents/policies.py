"""Policy networks for the sampling MDP: a features extractor that knows the observation layout and
an actor-critic policy whose initial choice is the neutral action (the plain EDM step).

The flat observation (:mod:`diffgym.envs.features`) is split back into the scaled sample
``c_in(sigma) x`` and the conditioning ``[c_noise, i/N, budget fraction, one-hot label]``:

* ``feature_kind="vector"``: an MLP over ``[x, Fourier(c_noise), rest of the conditioning]``;
* ``feature_kind="image"``: a small CNN over ``x (B, C, H, W)`` joined with an MLP embedding of the
  conditioning.

The reference paper reports that training is sensitive to initialisation; :class:`DiffusionPolicy`
starts from a policy that prefers index 0 of every knob (the neutral choice) by a logit margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    MultiCategoricalDistribution,
)
from stable_baselines3.common.distributions import Distribution as SB3Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.distributions import Categorical

from diffgym.envs.features import obs_dim, split_obs
from diffgym.envs.networks import FourierEmbedding

__all__ = [
    "ACTIVATIONS",
    "FEATURE_KINDS",
    "DiffusionFeaturesExtractor",
    "DiffusionPolicy",
    "SigmaEmbedding",
    "action_menu_sizes",
    "apply_neutral_bias",
    "neutral_probability",
]

FEATURE_KINDS = ("vector", "image")

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}
"""Activation names usable in hyperparameter files (name -> class)."""


SigmaEmbedding = FourierEmbedding
"""The noise-level embedding of the feature extractor (:class:`~diffgym.envs.networks.
FourierEmbedding`, under the name this module has always exported)."""

SIGMA_MAX_FREQ = 16.0
"""Highest frequency of the extractor's ``c_noise`` embedding (``c_noise`` spans about
``[-2.9, 1.1]``)."""


class DiffusionFeaturesExtractor(BaseFeaturesExtractor):
    """Split the flat observation into sample and conditioning; MLP or CNN over the sample.

    Args:
        observation_space: the env's flat ``Box`` of length ``prod(data_shape) + 3 + num_classes``.
        data_shape: shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        num_classes: number of class labels (0 = unconditional).
        feature_kind: ``"vector"`` (MLP) or ``"image"`` (CNN; ``data_shape`` is ``(C, H, W)``).
        features_dim: output width.
        hidden: width of the hidden layers.
        sigma_freqs: number of Fourier frequencies of the ``c_noise`` embedding.
        cnn_channels: channels of the two CNN layers (image tasks).
        sample_input: ``False`` drops the sample ``x`` from the features: the policy then sees
            only the noise level, step, budget and label, so its choices form a schedule (per
            label) that is the same for every sample, like a grid point's (a time-only policy;
            the value head sees the same features).

    ``forward``: ``(B, obs_dim) -> (B, features_dim)``.

    Raises:
        ValueError: unknown ``feature_kind``, an observation space that does not match
            ``data_shape``/``num_classes``, an image ``data_shape`` that is not ``(C, H, W)``.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        *,
        data_shape: Sequence[int],
        num_classes: int,
        feature_kind: str = "vector",
        features_dim: int = 64,
        hidden: int = 64,
        sigma_freqs: int = 8,
        cnn_channels: Sequence[int] = (16, 32),
        sample_input: bool = True,
    ) -> None:
        super().__init__(observation_space, features_dim)
        if feature_kind not in FEATURE_KINDS:
            raise ValueError(
                f"unknown feature_kind {feature_kind!r}; allowed: {', '.join(FEATURE_KINDS)}"
            )
        data_shape = tuple(int(d) for d in data_shape)
        expected = obs_dim(data_shape, num_classes)
        if observation_space.shape != (expected,):
            raise ValueError(
                f"observation space {observation_space.shape} does not match data_shape "
                f"{data_shape} with {num_classes} classes (expected ({expected},))"
            )
        if not isinstance(sample_input, bool):
            raise ValueError(f"sample_input must be true or false, got {sample_input!r}")
        if feature_kind == "image" and len(data_shape) != 3:
            raise ValueError(f"image features need data_shape (C, H, W), got {data_shape}")
        self.data_shape = data_shape
        self.num_classes = int(num_classes)
        self.feature_kind = feature_kind
        self.sample_input = sample_input
        self.sigma_embed = FourierEmbedding(sigma_freqs, max_freq=SIGMA_MAX_FREQ)
        cond_dim = self.sigma_embed.out_dim + expected - math.prod(data_shape) - 1
        act = nn.SiLU
        if not sample_input:
            joined = cond_dim
        elif feature_kind == "vector":
            joined = math.prod(data_shape) + cond_dim
        else:
            c1, c2 = (int(c) for c in cnn_channels)
            self.sample_net: nn.Module = nn.Sequential(
                nn.Conv2d(data_shape[0], c1, 3, padding=1), act(),
                nn.Conv2d(c1, c2, 3, stride=2, padding=1), act(),
                nn.Conv2d(c2, c2, 3, stride=2, padding=1), act(),
                nn.Flatten(),
            )
            with torch.no_grad():
                sample_dim = self.sample_net(torch.zeros(1, *data_shape)).shape[1]
            self.cond_net: nn.Module = nn.Sequential(nn.Linear(cond_dim, hidden), act())
            joined = sample_dim + hidden
        self.head = nn.Sequential(
            nn.Linear(joined, hidden), act(), nn.Linear(hidden, features_dim), act()
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x, cond = split_obs(obs, self.data_shape)  # (B, *data_shape), (B, 3 + C)
        sigma_features = self.sigma_embed(cond[:, 0])
        if not self.sample_input:
            joined = torch.cat([sigma_features, cond[:, 1:]], dim=1)
        elif self.feature_kind == "vector":
            joined = torch.cat([x.reshape(x.shape[0], -1), sigma_features, cond[:, 1:]], dim=1)
        else:
            h_cond = self.cond_net(torch.cat([sigma_features, cond[:, 1:]], dim=1))
            joined = torch.cat([self.sample_net(x), h_cond], dim=1)
        out = self.head(joined)
        assert out.shape == (obs.shape[0], self.features_dim)
        return out


def action_menu_sizes(action_space: spaces.Space) -> tuple[int, ...]:
    """Menu size per knob of a ``Discrete`` or ``MultiDiscrete`` action space."""
    if isinstance(action_space, spaces.Discrete):
        return (int(action_space.n),)
    if isinstance(action_space, spaces.MultiDiscrete):
        return tuple(int(n) for n in action_space.nvec.reshape(-1))
    raise TypeError(f"expected a Discrete or MultiDiscrete action space, got {action_space}")


def neutral_probability(margin: float, menu_size: int) -> float:
    """Probability of index 0 under logits ``(margin, 0, ..., 0)``: ``e^m / (e^m + n - 1)``."""
    return 1.0 / (1.0 + (menu_size - 1) * math.exp(-margin))


@torch.no_grad()
def apply_neutral_bias(action_net: nn.Linear, menu_sizes: Sequence[int], margin: float) -> None:
    """Make a categorical head prefer index 0 of every knob by ``margin`` logits.

    The head's weights are zeroed and its bias is ``+margin`` on index 0 of each knob's slice (0
    elsewhere), so the initial policy is state-independent with ``P(neutral) = e^m/(e^m + n - 1)``
    per knob (:func:`neutral_probability`). Gradients still reach the weights (they are
    proportional to the hidden activations), so the policy becomes state-dependent as it learns.

    Raises:
        ValueError: a non-finite margin, or a head whose width is not ``sum(menu_sizes)``.
    """
    if not math.isfinite(margin):
        raise ValueError(f"neutral_bias must be finite, got {margin}")
    if action_net.out_features != sum(menu_sizes):
        raise ValueError(
            f"action head has {action_net.out_features} outputs, menus need {sum(menu_sizes)}"
        )
    action_net.weight.zero_()
    bias = torch.zeros_like(action_net.bias)
    offsets = [0, *accumulate(int(n) for n in menu_sizes)][:-1]
    bias[offsets] = float(margin)
    action_net.bias.copy_(bias)


class DiffusionPolicy(ActorCriticPolicy):
    """SB3 actor-critic policy whose initial policy favours the neutral action.

    Accepts every :class:`~stable_baselines3.common.policies.ActorCriticPolicy` argument plus
    ``neutral_bias``: the logit margin of index 0 of each knob at initialisation
    (:func:`apply_neutral_bias`; ``None`` keeps SB3's initialisation). Works with every on-policy
    algorithm (PPO, A2C, TRPO, REINFORCE) and saves/loads like an SB3 policy.

    Its categorical action distributions are built with ``validate_args=False``: the logits come
    from the network and the actions from the distribution or the env's action space, so torch's
    argument checks (a host sync each on a GPU, about a third of a small policy's forward on a
    CPU) check nothing. Only this policy's distributions are affected, not torch's global default.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        *args: Any,
        neutral_bias: float | None = 2.0,
        **kwargs: Any,
    ) -> None:
        if neutral_bias is not None:
            neutral_bias = float(neutral_bias)
            if not math.isfinite(neutral_bias):
                raise ValueError(f"neutral_bias must be finite or None, got {neutral_bias}")
        self.neutral_bias = neutral_bias
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        if self.neutral_bias is not None:
            assert isinstance(self.action_net, nn.Linear)
            apply_neutral_bias(
                self.action_net, action_menu_sizes(self.action_space), self.neutral_bias
            )

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> SB3Distribution:
        """SB3's (multi-)categorical distribution over ``action_net(latent_pi)`` logits
        ``(B, sum(menu sizes))``, without torch's argument validation."""
        dist = self.action_dist
        if isinstance(dist, MultiCategoricalDistribution):
            logits = self.action_net(latent_pi)
            dist.distribution = [
                Categorical(logits=split, validate_args=False)
                for split in torch.split(logits, list(dist.action_dims), dim=1)
            ]
            return dist
        if isinstance(dist, CategoricalDistribution):
            dist.distribution = Categorical(logits=self.action_net(latent_pi), validate_args=False)
            return dist
        return super()._get_action_dist_from_latent(latent_pi)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["neutral_bias"] = self.neutral_bias
        return data
