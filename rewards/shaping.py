"""Reward options that see distribution-level errors, each a small unit.

The f-divergence reward of a discriminator moves only to second order with mode-mass errors
(RESULTS §1), and a policy can drive a knob to the top of its menu where that reward is flat.
Five named options of :func:`~diffgym.rewards.make_irl_trainer` act on it:

* ``disc_grad_penalty = gamma`` — R1 gradient penalty on expert states (Mescheder et al. 2018,
  "Which training methods for GANs do actually converge?"): ``gamma / 2 E_expert |grad_x l|^2``
  added to the discriminator loss, ``x`` the scaled sample part of the state
  (:func:`r1_penalty`). It keeps the logit smooth where the data is, so it can track the mass
  ratio instead of separating samples.
* ``disc_spectral_norm = True`` — spectral normalisation (Miyato et al. 2018) of the
  discriminator trunk and head (:func:`apply_spectral_norm`), another Lipschitz control.
* ``terminal_mmd_weight = beta`` — a batch-level term at terminal states: ``beta w(x)`` with
  ``w`` the kernel MMD witness between the data and the policy's recent terminal samples
  (:func:`mmd_witness`), negative on over-represented modes and positive on under-represented
  ones: a first-order signal of mode masses (Gretton et al. 2012).
* ``terminal_mass_weight = beta`` — a batch-level term at terminal states on cell masses:
  ``beta log(p_c / q_c)`` for a terminal sample in cell ``c``, where the cells are a k-means
  partition of data samples (:func:`kmeans_centres`, :data:`TERMINAL_MASS_CELLS` cells), ``p_c``
  the data's mass in the cell and ``q_c`` the policy's, from its newest terminal samples
  (:func:`cell_masses`, :func:`cell_log_ratio`). It is the coarse-grained log density ratio:
  negative on a cell the policy over-fills, positive on one it starves, and blind to how samples
  spread inside a cell. Where a mode spans several cells (fewer modes than cells) it also sees
  the spread inside that mode.
* ``action_cost = c`` — a per-step penalty ``-c sum_k a_k / (n_k - 1)`` on each knob's menu
  position (:func:`menu_position`; entry 0 is neutral and costs nothing, the top of a menu costs
  ``c``), a prior towards the plain sampler that stops a flat reward from saturating a menu.

:class:`ShapedReward` adds the last three to the generator's reward; the first two change the
discriminator (:class:`~diffgym.rewards.trainer.SigmaMatchedGAIL` and
:func:`~diffgym.rewards.make_irl_trainer`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from imitation.rewards.reward_nets import ForwardWrapper, RewardNet
from torch import nn

from diffgym.envs.features import split_obs

__all__ = [
    "MMD_BANDWIDTH_SCALES",
    "REWARD_OPTIONS",
    "TERMINAL_MASS_CELLS",
    "TERMINAL_MASS_FIT_SAMPLES",
    "TERMINAL_MASS_SAMPLES",
    "TERMINAL_MMD_SAMPLES",
    "ShapedReward",
    "add_to_loss",
    "apply_spectral_norm",
    "cell_log_ratio",
    "cell_masses",
    "check_reward_options",
    "kmeans_centres",
    "median_bandwidth",
    "menu_position",
    "mmd_witness",
    "r1_penalty",
]

MMD_BANDWIDTH_SCALES = (1.0, 0.5, 0.25, 0.125)
"""Bandwidths of the witness's RBF kernels, as multiples of the median pairwise distance: the
median alone is about the spread of the whole mixture and cannot tell neighbouring modes apart;
the smaller ones resolve single modes."""

TERMINAL_MMD_SAMPLES = 512
"""Policy terminal samples kept for the witness (the newest ones; about four rounds of 64 envs x
2 episodes), and data samples drawn for it each round."""

TERMINAL_MASS_CELLS = 16
"""Cells of the mass term's k-means partition of the data: more than the modes of any
``gmm2d-random`` task (4-12), so no two well-separated modes need share a cell."""

TERMINAL_MASS_FIT_SAMPLES = 8192
"""Data samples the cells are fitted on; their cell counts are the data masses ``p_c``."""

TERMINAL_MASS_SAMPLES = 2048
"""Policy terminal samples (the newest ones) the policy masses ``q_c`` are counted from. With 64
envs and one episode per env per round that is the last 32 rounds: less noise in ``q_c``, at the
price of scoring each round against a policy up to 32 rounds old."""


REWARD_OPTIONS = {
    "disc_grad_penalty": float,
    "disc_spectral_norm": bool,
    "terminal_mmd_weight": float,
    "terminal_mass_weight": float,
    "action_cost": float,
}
"""The named reward options (keyword arguments of :func:`~diffgym.rewards.make_irl_trainer`) and
their types; every one is off by default (0 or ``False``)."""


def check_reward_options(options: Any) -> dict[str, float | bool]:
    """``options`` as a plain dict of :data:`REWARD_OPTIONS`, checked; an option at its default
    (0 or ``False``) is left out, so it names the same training run as no option.

    Raises:
        ValueError: not a mapping, an unknown name (the message lists the allowed ones), a
            weight that is not a finite number >= 0, a ``disc_spectral_norm`` that is not a bool.
    """
    if not isinstance(options, dict) and not hasattr(options, "items"):
        raise ValueError(f"reward options must be a mapping of name -> value, got {options!r}")
    out: dict[str, float | bool] = {}
    for name, value in dict(options).items():
        if name not in REWARD_OPTIONS:
            raise ValueError(
                f"unknown reward option {name!r}; allowed: {', '.join(REWARD_OPTIONS)}"
            )
        if REWARD_OPTIONS[name] is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"reward option {name} must be true or false, got {value!r}")
            value = bool(value)
        else:
            ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)
            if not ok or not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(
                    f"reward option {name} must be a finite number >= 0, got {value!r}"
                )
            value = float(value)
        if value:
            out[name] = value
    return out


# --------------------------------------------------------------------------------------------
# Discriminator regularisation
# --------------------------------------------------------------------------------------------


def r1_penalty(logit: torch.Tensor, obs: torch.Tensor, data_shape: Sequence[int]) -> torch.Tensor:
    """``(B,)`` squared gradient norms ``|d logit_b / d x_b|^2`` over the sample part of the
    states (the layout of :mod:`diffgym.envs.features`), differentiable (``create_graph``).

    Args:
        logit: ``(B,)`` discriminator logits computed from ``obs``.
        obs: ``(B, obs_dim)`` states with ``requires_grad``.
        data_shape: the task's sample shape.
    """
    (grad,) = torch.autograd.grad(logit.sum(), obs, create_graph=True)
    d = math.prod(data_shape)
    out = grad[:, :d].pow(2).sum(dim=1)
    assert out.shape == (obs.shape[0],), f"penalty shape {tuple(out.shape)}"
    return out


class _AddToLoss(torch.autograd.Function):
    """Identity on ``values``; the backward pass also sends gradient 1 to ``extra`` (a scalar),
    so ``extra`` is added to whatever loss is later built from ``values``."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grad, torch.ones((), dtype=grad.dtype, device=grad.device)


def add_to_loss(values: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """``values`` unchanged, with the scalar ``extra`` added to any loss built from them (its
    gradient flows when that loss is backpropagated; nothing happens otherwise)."""
    if extra.ndim != 0:
        raise ValueError(f"extra must be a scalar, got shape {tuple(extra.shape)}")
    return _AddToLoss.apply(values, extra)


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectral normalisation of every ``Linear`` / ``Conv2d`` of ``net``'s trunk and head (in
    place; returns ``net``). FiLM projections (zero-initialised: their spectral norm is 0) and
    the conditioning MLP are left alone: they see only the noise level, not the sample.
    """
    from torch.nn.utils.parametrizations import spectral_norm

    targets = [
        (name, m)
        for name, m in net.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
        and not name.startswith(("films", "cond_mlp"))
        and ".films." not in name
    ]
    if not targets:
        raise ValueError(f"{type(net).__name__} has no Linear or Conv2d layer to normalise")
    for _, module in targets:
        spectral_norm(module)
    return net


# --------------------------------------------------------------------------------------------
# Batch-level terminal term
# --------------------------------------------------------------------------------------------


def median_bandwidth(points: torch.Tensor) -> float:
    """Median pairwise distance of ``points (N, D)`` (at most 1024 of them; > 0)."""
    pts = points[:1024]
    dist = torch.cdist(pts, pts)
    off = dist[~torch.eye(pts.shape[0], dtype=torch.bool, device=pts.device)]
    med = float(off.median()) if off.numel() else 1.0
    return med if med > 0 else 1.0


def mmd_witness(
    x: torch.Tensor,
    data: torch.Tensor,
    policy: torch.Tensor,
    *,
    scales: Sequence[float] = MMD_BANDWIDTH_SCALES,
    bandwidth: float | None = None,
) -> torch.Tensor:
    """The kernel MMD witness ``w(x) = mean_j k(x, data_j) - mean_j k(x, policy_j)`` at ``x``.

    ``k`` is the average over ``scales`` of RBF kernels ``exp(-|a - b|^2 / (2 h^2))`` with
    ``h = scale * bandwidth`` (default: the median pairwise distance of data and policy pooled);
    each scale's witness is divided by ``mean_ij k(data_i, data_j)`` so it reads as a density
    difference relative to the data's: about ``-(r - 1) p_data(x) / mean p_data`` on a mode the
    policy over-represents ``r`` times.

    Args:
        x: ``(B, D)`` points to score.
        data: ``(N, D)`` data samples.
        policy: ``(M, D)`` policy samples.

    Returns:
        ``(B,)`` witness values: negative where the policy puts too much mass.
    """
    if data.ndim != 2 or policy.ndim != 2 or x.ndim != 2:
        raise ValueError(
            f"x, data and policy must be 2-d, got {tuple(x.shape)}, {tuple(data.shape)}, "
            f"{tuple(policy.shape)}"
        )
    h = bandwidth if bandwidth is not None else median_bandwidth(torch.cat([data, policy]))
    d2_data = torch.cdist(x, data).pow(2)
    d2_pol = torch.cdist(x, policy).pow(2)
    d2_dd = torch.cdist(data[:1024], data[:1024]).pow(2)
    out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for scale in scales:
        inv = 1.0 / (2.0 * (scale * h) ** 2)
        norm = torch.exp(-d2_dd * inv).mean()
        out += (torch.exp(-d2_data * inv).mean(1) - torch.exp(-d2_pol * inv).mean(1)) / norm
    out = out / len(scales)
    assert out.shape == (x.shape[0],), f"witness shape {tuple(out.shape)}"
    return out


def kmeans_centres(
    points: torch.Tensor, k: int, *, generator: torch.Generator, iters: int = 100
) -> torch.Tensor:
    """``(k, D)`` k-means centres of ``points (N, D)`` (on ``points``' device and dtype; computed
    in float64 on the CPU): k-means++ seeding from ``generator`` (Arthur and Vassilvitskii 2007),
    then Lloyd's iterations until no assignment changes (at most ``iters``); a cell left empty
    keeps its centre. Deterministic for a given generator state.

    Raises:
        ValueError: ``points`` not 2-d, empty or not finite, ``k`` not an int in ``[1, N]``.
    """
    if points.ndim != 2 or points.shape[0] < 1:
        raise ValueError(f"points must be 2-d (N, D) with N >= 1, got shape "
                         f"{tuple(points.shape)}")
    n = points.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, {n}] (the number of points), got {k!r}")
    bad = int((~torch.isfinite(points)).sum())
    if bad:
        raise ValueError(f"points must be finite, got {bad} non-finite entries of "
                         f"{points.numel()}")
    pts = points.to(torch.float64).cpu()
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [pts[first]]
    d2 = (pts - pts[first]).pow(2).sum(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than cells: repeat one
            nxt = int(torch.randint(n, (1,), generator=generator))
        else:
            nxt = int(torch.multinomial(d2 / total, 1, generator=generator))
        centres.append(pts[nxt])
        d2 = torch.minimum(d2, (pts - pts[nxt]).pow(2).sum(1))
    c = torch.stack(centres)
    assign = torch.cdist(pts, c).argmin(1)
    for _ in range(iters):
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, assign, pts)
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled].unsqueeze(1).to(c.dtype)
        new = torch.cdist(pts, c).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    return c.to(device=points.device, dtype=points.dtype)


def cell_masses(points: torch.Tensor, centres: torch.Tensor, prior: float = 0.5) -> torch.Tensor:
    """``(K,)`` float64 share of ``points (N, D)`` in each nearest-centre cell (on ``centres``'
    device), with ``prior`` added to every count (``(n_c + prior) / (N + K prior)``), so no cell
    has mass 0.

    Raises:
        ValueError: shapes that do not match, no centre, ``prior`` not a finite number > 0.
    """
    if points.ndim != 2 or centres.ndim != 2 or points.shape[1] != centres.shape[1]:
        raise ValueError(f"points {tuple(points.shape)} and centres {tuple(centres.shape)} must "
                         f"be 2-d with the same width")
    if centres.shape[0] < 1:
        raise ValueError("centres must hold at least one row, got 0")
    if isinstance(prior, bool) or not math.isfinite(float(prior)) or float(prior) <= 0:
        raise ValueError(f"prior must be a finite number > 0, got {prior!r}")
    k = centres.shape[0]
    assign = torch.cdist(points.to(device=centres.device, dtype=centres.dtype), centres).argmin(1)
    counts = torch.bincount(assign, minlength=k).to(torch.float64)
    return (counts + prior) / (points.shape[0] + k * prior)


def cell_log_ratio(
    x: torch.Tensor, centres: torch.Tensor, data_mass: torch.Tensor, policy_mass: torch.Tensor
) -> torch.Tensor:
    """``(B,)`` ``log(p_c / q_c)`` at each row of ``x (B, D)``, ``c`` its nearest centre, on
    ``x``'s device: negative in a cell the policy over-fills, positive in one it starves.

    Raises:
        ValueError: ``x`` not ``(B, D)``, masses not ``(K,)``.
    """
    k, d = centres.shape
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"x must be (B, {d}), got shape {tuple(x.shape)}")
    if data_mass.shape != (k,) or policy_mass.shape != (k,):
        raise ValueError(f"data_mass and policy_mass must have shape ({k},), got "
                         f"{tuple(data_mass.shape)} and {tuple(policy_mass.shape)}")
    centres = centres.to(device=x.device)
    cell = torch.cdist(x.to(centres.dtype), centres).argmin(1)
    out = (data_mass.log() - policy_mass.log()).to(x.device)[cell]
    assert out.shape == (x.shape[0],), f"mass term shape {tuple(out.shape)}"
    return out


# --------------------------------------------------------------------------------------------
# Menu-saturation prior
# --------------------------------------------------------------------------------------------


def _menu_sizes(action_space: gym.Space) -> tuple[int, ...]:
    if isinstance(action_space, gym.spaces.Discrete):
        return (int(action_space.n),)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return tuple(int(n) for n in np.asarray(action_space.nvec).reshape(-1))
    raise TypeError(
        f"action_cost needs a Discrete or MultiDiscrete action space, got {action_space}"
    )


def menu_position(onehot: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """``(B,)`` sum over knobs of the chosen entry's position ``a_k / (n_k - 1)`` in its menu.

    Args:
        onehot: ``(B, sum(sizes))`` concatenated one-hot actions (imitation's preprocessing of a
            ``MultiDiscrete`` / ``Discrete`` action).
        sizes: menu sizes ``n_k``; a one-entry menu contributes 0.
    """
    if onehot.shape[1] != sum(sizes):
        raise ValueError(f"one-hot actions of width {onehot.shape[1]} do not match menus {sizes}")
    weights = torch.cat([
        torch.arange(n, dtype=onehot.dtype, device=onehot.device) / max(n - 1, 1) for n in sizes
    ])
    return onehot @ weights


# --------------------------------------------------------------------------------------------
# The generator's reward
# --------------------------------------------------------------------------------------------


class ShapedReward(ForwardWrapper):
    """``base(s, a, s', done) + done (terminal_mmd_weight w(x') + terminal_mass_weight m(x'))
    - action_cost position(a)``.

    ``w`` is :func:`mmd_witness` between fresh data and the policy's newest terminal samples;
    ``m`` is :func:`cell_log_ratio` on the data's k-means cells. Terminal samples are recorded by
    :meth:`predict_processed` (the call the rollout's reward wrapper makes) between
    :meth:`begin_round` and :meth:`end_round`; ``end_round`` moves them into the witness
    (keeping the newest :data:`TERMINAL_MMD_SAMPLES`, drawing new data) and into the policy's cell
    masses (the newest ``mass_samples``; the cells and data masses are fitted once, at the first
    ``end_round``). Until then both terms are 0, so each round is scored against the policy of
    the rounds before it.

    Args:
        base: the f-divergence reward (``(B,)`` per transition).
        data_shape: the task's sample shape.
        sample_data: ``n -> (n, D)`` data samples, scaled like the terminal states' sample part
            (``c_in(0) x = x / sigma_data``).
        terminal_mmd_weight: ``beta >= 0``.
        terminal_mass_weight: ``beta >= 0``.
        action_cost: ``c >= 0``.
        num_samples: witness samples per side.
        mass_cells, mass_samples: cells of the mass term, and policy samples its masses count.
        seed: seed of the cells' k-means++ seeding.

    Raises:
        ValueError: a negative weight, ``num_samples < 2``, ``mass_cells`` not in
            ``[1, TERMINAL_MASS_FIT_SAMPLES]``, ``mass_samples < 1``, ``seed`` not an int.
        TypeError: ``action_cost > 0`` with a non-discrete action space.
    """

    def __init__(
        self,
        base: RewardNet,
        *,
        data_shape: Sequence[int],
        sample_data: Callable[[int], torch.Tensor],
        terminal_mmd_weight: float = 0.0,
        terminal_mass_weight: float = 0.0,
        action_cost: float = 0.0,
        num_samples: int = TERMINAL_MMD_SAMPLES,
        mass_cells: int = TERMINAL_MASS_CELLS,
        mass_samples: int = TERMINAL_MASS_SAMPLES,
        seed: int = 0,
    ) -> None:
        super().__init__(base)
        for name, value in (("terminal_mmd_weight", terminal_mmd_weight),
                            ("terminal_mass_weight", terminal_mass_weight),
                            ("action_cost", action_cost)):
            if not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, value, low in (("num_samples", num_samples, 2), ("mass_cells", mass_cells, 1),
                                 ("mass_samples", mass_samples, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if mass_cells > TERMINAL_MASS_FIT_SAMPLES:
            raise ValueError(f"mass_cells must be at most TERMINAL_MASS_FIT_SAMPLES = "
                             f"{TERMINAL_MASS_FIT_SAMPLES} (the data it is fitted on), got "
                             f"{mass_cells}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.data_shape = tuple(data_shape)
        self.sample_data = sample_data
        self.terminal_mmd_weight = float(terminal_mmd_weight)
        self.terminal_mass_weight = float(terminal_mass_weight)
        self.action_cost = float(action_cost)
        self.num_samples = num_samples
        self.mass_cells = mass_cells
        self.mass_samples = mass_samples
        self.seed = int(seed)
        self.menu_sizes = _menu_sizes(base.action_space) if action_cost > 0 else ()
        self.policy_terminals: torch.Tensor | None = None  # (M, D), the witness's
        self.data_terminals: torch.Tensor | None = None  # (N, D)
        self.mass_terminals: torch.Tensor | None = None  # (mass_samples, D) at most
        self.mass_centres: torch.Tensor | None = None  # (mass_cells, D)
        self.data_mass: torch.Tensor | None = None  # (mass_cells,)
        self.policy_mass: torch.Tensor | None = None  # (mass_cells,)
        self._recording: list[torch.Tensor] | None = None

    @property
    def records_terminals(self) -> bool:
        """Whether a terminal term needs the policy's terminal samples."""
        return self.terminal_mmd_weight > 0 or self.terminal_mass_weight > 0

    def _sample_part(self, obs: torch.Tensor) -> torch.Tensor:
        x, _ = split_obs(obs, self.data_shape)
        return x.reshape(x.shape[0], -1)

    def witness(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B,)`` witness at the sample part of ``obs (B, obs_dim)`` (0 before the first
        :meth:`end_round`)."""
        if self.policy_terminals is None or self.data_terminals is None:
            return torch.zeros(obs.shape[0], dtype=obs.dtype, device=obs.device)
        x = self._sample_part(obs).to(self.data_terminals.dtype)
        data = self.data_terminals.to(x.device)
        w = mmd_witness(x, data, self.policy_terminals.to(x.device))
        return w.to(obs.dtype)

    def mass_term(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``log(p_c / q_c)`` at the sample part of ``obs (B, obs_dim)`` (0 before the
        first :meth:`end_round`)."""
        if self.mass_centres is None or self.data_mass is None or self.policy_mass is None:
            return torch.zeros(obs.shape[0], dtype=obs.dtype, device=obs.device)
        x = self._sample_part(obs)
        m = cell_log_ratio(x, self.mass_centres, self.data_mass, self.policy_mass)
        return m.to(obs.dtype)

    def forward(
        self,
        state: torch.Tensor,
        action: torch.Tensor,
        next_state: torch.Tensor,
        done: torch.Tensor,
    ) -> torch.Tensor:
        """``(B, ...)`` preprocessed transitions -> ``(B,)`` rewards."""
        reward = self.base(state, action, next_state, done)
        if self.records_terminals:
            is_done = done.to(reward.dtype).reshape(-1)
            if bool(is_done.any()):
                rows = is_done > 0
                term = torch.zeros(int(rows.sum()), dtype=reward.dtype, device=reward.device)
                if self.terminal_mmd_weight > 0:
                    term += self.terminal_mmd_weight * self.witness(next_state[rows]).to(
                        reward.dtype)
                if self.terminal_mass_weight > 0:
                    term += self.terminal_mass_weight * self.mass_term(next_state[rows]).to(
                        reward.dtype)
                extra = torch.zeros_like(reward)
                extra[rows] = term
                reward = reward + extra
        if self.action_cost > 0:
            reward = reward - self.action_cost * menu_position(
                action.to(reward.dtype), self.menu_sizes
            )
        assert reward.shape == (state.shape[0],), f"reward shape {tuple(reward.shape)}"
        return reward

    def predict_processed(
        self,
        state: np.ndarray,
        action: np.ndarray,
        next_state: np.ndarray,
        done: np.ndarray,
        **kwargs: Any,
    ) -> np.ndarray:
        """imitation's reward call during rollouts; also records terminal samples while a round
        is open (:meth:`begin_round`)."""
        if self._recording is not None and self.records_terminals:
            rows = np.asarray(done).reshape(-1).astype(bool)
            if rows.any():
                obs = torch.as_tensor(np.asarray(next_state)[rows], dtype=torch.float64)
                self._recording.append(self._sample_part(obs))
        return super().predict_processed(state, action, next_state, done, **kwargs)

    def begin_round(self) -> None:
        """Start recording the policy's terminal samples."""
        self._recording = []

    def end_round(self) -> None:
        """Stop recording; keep the newest :attr:`num_samples` policy terminal samples and draw
        as many fresh data samples (witness); count the newest :attr:`mass_samples` in the
        cells, fitting the cells on the first call (mass term)."""
        recorded, self._recording = self._recording, None
        if not self.records_terminals or not recorded:
            return
        new = torch.cat(recorded)
        if self.terminal_mmd_weight > 0:
            pool = new if self.policy_terminals is None else torch.cat([self.policy_terminals, new])
            self.policy_terminals = pool[-self.num_samples:]
            self.data_terminals = self.sample_data(self.num_samples).to(torch.float64)
        if self.terminal_mass_weight > 0:
            if self.mass_centres is None:
                data = self.sample_data(TERMINAL_MASS_FIT_SAMPLES).to(torch.float64)
                gen = torch.Generator().manual_seed(self.seed)
                self.mass_centres = kmeans_centres(data, self.mass_cells, generator=gen)
                self.data_mass = cell_masses(data, self.mass_centres)
            pool = new if self.mass_terminals is None else torch.cat([self.mass_terminals, new])
            self.mass_terminals = pool[-self.mass_samples:]
            self.policy_mass = cell_masses(self.mass_terminals, self.mass_centres)
