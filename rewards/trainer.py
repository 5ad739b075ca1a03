"""imitation's GAIL and AIRL with sigma-matched noised-data experts and f-divergence rewards.

:func:`make_irl_trainer` is the entry point. The trainers differ from imitation's in three
overrides and nothing else:

* ``_make_disc_train_batches`` draws a fresh expert batch for every discriminator batch,
  sigma-matched row by row to the policy batch it is compared with
  (:meth:`NoisedDataExpert.transitions_like`), and builds the minibatches as tensors on the
  reward net's device. imitation's version converts tensors with ``.detach().numpy()``, which
  fails for CUDA tensors; this one never leaves torch.
* ``reward_train`` is the discriminator output passed through a :class:`RewardTransform`.
* ``train_disc`` also records ``irl/disc_loss``, ``irl/disc_acc``, ``irl/disc_acc_expert``,
  ``irl/disc_acc_gen``, ``irl/logit_expert_mean``, ``irl/logit_gen_mean`` and
  ``irl/reward_mean`` (the transformed reward on the policy's states) as means over the round,
  written at imitation's end-of-round ``dump``; imitation's own ``mean/disc/…`` keys stay.
  The logit and reward means come from the update's own forward pass (the discriminator output
  before its optimiser step, over every minibatch of the update, kept detached by the
  ``logits_expert_is_high`` override): no second discriminator forward, and one host sync.

GAIL's logit ignores the generator's log-probabilities, so the GAIL trainer never computes them
(imitation's batch builder evaluates the policy on every discriminator batch; only AIRL uses it).

**AIRL caveat.** imitation's AIRL discriminator logit is ``r_theta(s') - log pi(a | s)``, with the
generator's log-probability of the *expert's* action on expert rows. Noised data has no action:
expert rows carry the neutral action (all zeros) as a placeholder, so on those rows the
``log pi`` term is the current policy's log-probability of "plain Heun", which has nothing to do
with the expert and moves as the policy learns; ``r_theta`` has to absorb it, so it is not an
estimate of the state log-ratio. AIRL is kept as imitation defines it for comparison; the
divergence family is meant for GAIL's state-only discriminator. With AIRL the transform is applied
to ``r_theta(s')`` (``divergence="rkl"`` is imitation's AIRL reward exactly) and ``reward_test``
stays imitation's untransformed ``r_theta``.

**Reward options** (:mod:`~diffgym.rewards.shaping`, all off by default) add two more
overrides: ``logits_expert_is_high`` attaches the R1 penalty (``disc_grad_penalty``) to the
logits the discriminator loss is built from, and ``train_gen`` opens and closes the round in
which a :class:`~diffgym.rewards.shaping.ShapedReward` records terminal samples
(``terminal_mmd_weight``, ``terminal_mass_weight``; ``action_cost`` needs no state).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from imitation.algorithms.adversarial.airl import AIRL
from imitation.algorithms.adversarial.common import AdversarialTrainer
from imitation.algorithms.adversarial.gail import GAIL
from imitation.data import types
from imitation.rewards.reward_nets import ForwardWrapper, RewardNet
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from diffgym.envs.sb3 import unwrap_env
from diffgym.rewards.discriminator import NoiseConditionedDiscriminator
from diffgym.rewards.divergences import DIVERGENCES, RewardTransform
from diffgym.rewards.expert import NoisedDataExpert
from diffgym.rewards.shaping import ShapedReward, add_to_loss, apply_spectral_norm, r1_penalty

__all__ = [
    "DEFAULT_DISC_LR",
    "DivergenceReward",
    "METHODS",
    "SigmaMatchedAIRL",
    "SigmaMatchedGAIL",
    "make_irl_trainer",
]

DEFAULT_DISC_LR = 3e-4
"""Adam learning rate of the discriminator (GAIL's discriminator must not outrun the policy)."""

DEFAULT_DISC_UPDATES = 4
"""Discriminator updates per round (one round = one generator rollout + update)."""

_WRAPPER_SKIP = {"venv", "observation_space", "action_space", "class_attributes", "reward_fn",
                 "render_mode", "metadata"}
"""Attributes of imitation's VecEnv wrappers that are structure, not state."""

MAX_DEMO_BATCH = 1024
"""Default ``demo_batch_size`` is one round's transitions, capped at this."""


class DivergenceReward(ForwardWrapper):
    """``forward = transform(base.forward)``: an f-divergence reward on a discriminator's output.

    Args:
        base: the discriminator (returns ``(batch,)`` logits).
        transform: the :class:`RewardTransform`.
    """

    def __init__(self, base: RewardNet, transform: RewardTransform) -> None:
        super().__init__(base)
        self.transform = transform

    def forward(
        self,
        state: torch.Tensor,
        action: torch.Tensor,
        next_state: torch.Tensor,
        done: torch.Tensor,
    ) -> torch.Tensor:
        """``(B, obs_dim)`` transitions -> ``(B,)`` rewards."""
        reward = self.transform(self.base(state, action, next_state, done))
        assert reward.shape == (state.shape[0],), f"reward shape {tuple(reward.shape)}"
        return reward


def _as_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to(device)
    return torch.tensor(np.asarray(value), device=device)  # a copy (buffer views are read-only)


def _check_space(name: str, space: Any, venv: VecEnv) -> None:
    if space != venv.observation_space:
        raise ValueError(
            f"the {name} observation space {space} differs from the env's "
            f"{venv.observation_space}; build it from the same env (task, schedule, menus)"
        )


class _SigmaMatched:
    """Mixin over imitation's GAIL / AIRL: sigma-matched expert batches, transformed reward,
    ``irl/…`` logging. See the module docstring."""

    # Provided by imitation's AdversarialTrainer (the next base in the MRO).
    _reward_net: RewardNet
    _gen_replay_buffer: Any
    demo_batch_size: int
    demo_minibatch_size: int
    gen_algo: BaseAlgorithm
    logger: Any
    _get_log_policy_act_prob: Any

    uses_log_policy_act_prob: bool = True
    """Whether the discriminator logit needs ``log pi(a | s)`` (AIRL) or ignores it (GAIL)."""

    def __init__(
        self,
        *,
        expert: NoisedDataExpert,
        reward_transform: RewardTransform,
        venv: VecEnv,
        reward_net: RewardNet,
        demo_batch_size: int,
        disc_grad_penalty: float = 0.0,
        terminal_mmd_weight: float = 0.0,
        terminal_mass_weight: float = 0.0,
        action_cost: float = 0.0,
        **kwargs: Any,
    ) -> None:
        _check_space("expert", expert.observation_space, venv)
        _check_space("reward net", reward_net.observation_space, venv)
        if not np.array_equal(
            expert.sigmas.detach().cpu().numpy(), unwrap_env(venv).sigmas.detach().cpu().numpy()
        ):
            raise ValueError("the expert's noise schedule differs from the env's")
        self.expert = expert
        self.reward_transform = reward_transform
        # Must exist before imitation's __init__, which wraps the env with `reward_train`.
        self._transformed_reward = DivergenceReward(reward_net, reward_transform)
        self._init_reward_options(
            disc_grad_penalty, terminal_mmd_weight, terminal_mass_weight, action_cost
        )
        # Detached (2 m,) discriminator outputs of the current update's minibatches (expert rows
        # first); a list only while ``train_disc`` runs.
        self._disc_outputs: list[torch.Tensor] | None = None
        super().__init__(
            demonstrations=expert.demonstrations(demo_batch_size),
            demo_batch_size=demo_batch_size,
            venv=venv,
            reward_net=reward_net,
            **kwargs,
        )

    @property
    def reward_train(self) -> RewardNet:
        return self._transformed_reward

    @property
    def discriminator(self) -> RewardNet:
        """The discriminator (its logit is what the reward transform is applied to)."""
        return self._reward_net

    # -- reward options (rewards/shaping.py) --------------------------------------------------
    def _init_reward_options(
        self,
        disc_grad_penalty: float,
        terminal_mmd_weight: float,
        terminal_mass_weight: float,
        action_cost: float,
    ) -> None:
        """Store the R1 weight; wrap the reward in a :class:`ShapedReward` when a terminal MMD
        or mass term or an action cost is asked for."""
        if not math.isfinite(float(disc_grad_penalty)) or float(disc_grad_penalty) < 0:
            raise ValueError(f"disc_grad_penalty must be a finite number >= 0, got "
                             f"{disc_grad_penalty!r}")
        self.disc_grad_penalty = float(disc_grad_penalty)
        self.shaped_reward: ShapedReward | None = None
        if terminal_mmd_weight or terminal_mass_weight or action_cost:
            task = self.expert.task
            scale = 1.0 / task.sigma_data  # c_in(0): the terminal states' sample scaling
            # Its own stream (the expert's seed + 1): the expert's draws stay as without it.
            expert_seed = self.expert.generator.initial_seed()
            gen = torch.Generator().manual_seed(expert_seed + 1)

            def sample_data(n: int) -> torch.Tensor:
                x, _ = task.sample_data(n, gen)
                return x.reshape(n, -1).to(torch.float64) * scale

            self.shaped_reward = ShapedReward(
                self._transformed_reward,
                data_shape=task.data_shape,
                sample_data=sample_data,
                terminal_mmd_weight=terminal_mmd_weight,
                terminal_mass_weight=terminal_mass_weight,
                action_cost=action_cost,
                seed=(expert_seed + 2) % 2**63,  # the cells' k-means++ seeding
            )
            self._transformed_reward = self.shaped_reward

    def train_gen(self, *args: Any, **kwargs: Any) -> None:
        """imitation's generator update; the :class:`ShapedReward`, if any, records this
        round's terminal samples for the next round's witness."""
        if self.shaped_reward is None:
            return super().train_gen(*args, **kwargs)  # type: ignore[misc]
        self.shaped_reward.begin_round()
        try:
            super().train_gen(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.shaped_reward.end_round()


    def _make_disc_train_batches(
        self,
        *,
        gen_samples: Mapping | None = None,
        expert_samples: Mapping | None = None,
    ) -> Iterator[Mapping[str, torch.Tensor]]:
        """Minibatches ``{state, action, next_state, done, labels_expert_is_one,
        log_policy_act_prob}`` as tensors (``log_policy_act_prob`` is ``None`` when
        :attr:`uses_log_policy_act_prob` is false); the first ``demo_minibatch_size`` rows of
        each are expert rows, sigma-matched to the generator rows that follow unless
        ``expert_samples`` is given."""
        batch_size = self.demo_batch_size
        device = self.reward_train.device
        if gen_samples is None:
            if self._gen_replay_buffer.size() == 0:
                raise RuntimeError("No generator samples for training. Call `train_gen()` first.")
            gen_samples = types.dataclass_quick_asdict(self._gen_replay_buffer.sample(batch_size))
        keys = ("obs", "acts", "next_obs", "dones")
        gen = {k: _as_tensor(gen_samples[k], device) for k in keys}
        if expert_samples is None:
            expert_samples = self.expert.transitions_like(gen["obs"], gen["next_obs"], gen["dones"])
        exp = {k: _as_tensor(expert_samples[k], device) for k in keys}
        if not (len(gen["obs"]) == len(exp["obs"]) == batch_size):
            raise ValueError(
                "Need to have exactly `demo_batch_size` number of expert and generator samples, "
                f"each. (n_gen={len(gen['obs'])} n_expert={len(exp['obs'])} "
                f"demo_batch_size={batch_size})"
            )
        exp["acts"] = exp["acts"].to(gen["acts"].dtype).reshape(gen["acts"].shape)

        m = self.demo_minibatch_size
        labels = torch.cat(
            [torch.ones(m, dtype=torch.long, device=device),
             torch.zeros(m, dtype=torch.long, device=device)]
        )
        for start in range(0, batch_size, m):
            part = {k: torch.cat([exp[k][start:start + m], gen[k][start:start + m]]) for k in keys}
            log_prob = None
            if self.uses_log_policy_act_prob:
                with torch.no_grad():
                    policy_device = self.gen_algo.device
                    log_prob = self._get_log_policy_act_prob(
                        part["obs"].to(policy_device), part["acts"].to(policy_device)
                    )
                if log_prob is not None:
                    log_prob = log_prob.reshape(2 * m).to(device)
            state, action, next_state, done = self.reward_train.preprocess(
                part["obs"], part["acts"], part["next_obs"], part["dones"]
            )
            batch = {
                "state": state,
                "action": action,
                "next_state": next_state,
                "done": done,
                "labels_expert_is_one": labels,
                "log_policy_act_prob": log_prob,
            }
            yield batch

    def logits_expert_is_high(
        self,
        state: torch.Tensor,
        action: torch.Tensor,
        next_state: torch.Tensor,
        done: torch.Tensor,
        log_policy_act_prob: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """imitation's ``(2 m,)`` training logits (expert rows first). During ``train_disc`` the
        discriminator's own output (GAIL's logit; AIRL's ``r_theta``, the logit plus ``log pi``)
        is also kept, detached, for the ``irl/…`` means. With ``disc_grad_penalty = gamma > 0``
        (and gradients on), the R1 penalty ``gamma / 2 mean_expert |grad_x l|^2`` (scaled like
        imitation's minibatch loss) is attached to the logits, so it joins the discriminator loss
        built from them."""
        penalise = self.disc_grad_penalty > 0 and torch.is_grad_enabled()
        if penalise:
            next_state = next_state.detach().requires_grad_(True)
        logits = super().logits_expert_is_high(  # type: ignore[misc]
            state, action, next_state, done, log_policy_act_prob
        )
        if self._disc_outputs is not None:
            output = logits.detach()
            if log_policy_act_prob is not None:
                output = output + log_policy_act_prob
            self._disc_outputs.append(output)
        if penalise:
            sq_norm = r1_penalty(logits, next_state, self.expert.task.data_shape)
            if self._disc_outputs is not None:  # one of this trainer's minibatches
                expert_rows = sq_norm[: self.demo_minibatch_size]
            else:  # called from outside: penalise every row
                expert_rows = sq_norm
            penalty = 0.5 * self.disc_grad_penalty * expert_rows.mean()
            penalty = penalty * (state.shape[0] / 2) / self.demo_batch_size
            logits = add_to_loss(logits, penalty)
        return logits

    def train_disc(
        self,
        *,
        expert_samples: Mapping | None = None,
        gen_samples: Mapping | None = None,
    ) -> Mapping[str, float]:
        """imitation's discriminator update, then the ``irl/…`` means of this update."""
        self._disc_outputs = []
        try:
            stats = super().train_disc(  # type: ignore[misc]
                expert_samples=expert_samples, gen_samples=gen_samples
            )
            outputs = self._disc_outputs
        finally:
            self._disc_outputs = None
        logger = self.logger
        for key in ("disc_loss", "disc_acc", "disc_acc_expert", "disc_acc_gen"):
            logger.record_mean(f"irl/{key}", stats[key])
        m = self.demo_minibatch_size
        output = torch.stack(outputs)  # (minibatches, 2 m): expert rows, then the policy's
        assert output.shape[1] == 2 * m, f"discriminator output shape {tuple(output.shape)}"
        logit_expert, logit_gen = output[:, :m], output[:, m:]
        reward = self.reward_transform(logit_gen)
        means = torch.stack([logit_expert.mean(), logit_gen.mean(), reward.mean()]).tolist()
        for key, value in zip(("logit_expert_mean", "logit_gen_mean", "reward_mean"), means):
            logger.record_mean(f"irl/{key}", value)
        return stats

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the trainer adds to a training run's state: the discriminator and its
        optimiser, imitation's step counters, the expert's generator, the generator replay
        buffer and the plain attributes of imitation's VecEnv wrappers (reward wrapper,
        trajectory buffer). :meth:`load_state_dict` restores it exactly."""
        return {
            "reward_net": self._reward_net.state_dict(),
            "disc_optimizer": self._disc_opt.state_dict(),
            "global_step": self._global_step,
            "disc_step": self._disc_step,
            "expert_generator": self.expert.generator.get_state(),
            "gen_replay_buffer": copy.deepcopy(self._gen_replay_buffer),
            "wrappers": [
                {k: copy.deepcopy(v) for k, v in vars(w).items() if k not in _WRAPPER_SKIP}
                for w in self._wrapper_chain()
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            ValueError: the wrappers of ``state`` do not match this trainer's.
        """
        self._reward_net.load_state_dict(state["reward_net"])
        self._disc_opt.load_state_dict(state["disc_optimizer"])
        self._global_step = state["global_step"]
        self._disc_step = state["disc_step"]
        self.expert.generator.set_state(state["expert_generator"].cpu())
        self._gen_replay_buffer = state["gen_replay_buffer"]
        chain = self._wrapper_chain()
        if len(chain) != len(state["wrappers"]):
            raise ValueError("the state's env wrappers do not match this trainer's")
        for wrapper, attrs in zip(chain, state["wrappers"]):
            for k, v in attrs.items():
                setattr(wrapper, k, v)

    def _wrapper_chain(self) -> list:
        """imitation's VecEnv wrappers between the learner's env and the diffgym SB3 adapter."""
        chain, env = [], self.gen_algo.get_env()
        while env is not self.venv and hasattr(env, "venv"):
            chain.append(env)
            env = env.venv
        return chain


class SigmaMatchedGAIL(_SigmaMatched, GAIL):
    """imitation's :class:`~imitation.algorithms.adversarial.gail.GAIL` with sigma-matched
    noised-data experts and an f-divergence reward (``reward_train`` = ``reward_test``).

    Keyword-only: ``expert``, ``reward_transform``, ``venv``, ``gen_algo``, ``reward_net``,
    ``demo_batch_size`` and imitation's ``AdversarialTrainer`` options.

    Raises:
        ValueError: the expert's or reward net's observation space, or the expert's schedule,
            differs from the env's.
    """

    uses_log_policy_act_prob = False

    @property
    def reward_test(self) -> RewardNet:
        return self._transformed_reward


class SigmaMatchedAIRL(_SigmaMatched, AIRL):
    """imitation's :class:`~imitation.algorithms.adversarial.airl.AIRL` with sigma-matched
    noised-data experts; ``reward_train`` is the transform of ``r_theta(s')``, ``reward_test``
    imitation's raw ``r_theta``. See the module docstring for the caveat on expert actions.

    Raises:
        ValueError: as :class:`SigmaMatchedGAIL`.
        TypeError: a policy without action log-probabilities (imitation's check).
    """


METHODS: dict[str, type[AdversarialTrainer]] = {
    "gail": SigmaMatchedGAIL,
    "airl": SigmaMatchedAIRL,
}
"""Trainer classes by method name."""


def make_irl_trainer(
    method: str = "gail",
    divergence: str = "js",
    *,
    venv: VecEnv,
    gen_algo: BaseAlgorithm,
    reward_net: RewardNet | None = None,
    expert: NoisedDataExpert | None = None,
    lam: float = 1.0,
    pr_temperature: float = 0.0,
    max_log_reward: float | None = None,
    center_reward: bool | None = None,
    demo_batch_size: int | None = None,
    n_disc_updates_per_round: int = DEFAULT_DISC_UPDATES,
    disc_opt_cls: type[torch.optim.Optimizer] = torch.optim.Adam,
    disc_opt_kwargs: Mapping[str, Any] | None = None,
    allow_variable_horizon: bool = True,
    seed: int | None = None,
    disc_grad_penalty: float = 0.0,
    disc_spectral_norm: bool = False,
    terminal_mmd_weight: float = 0.0,
    terminal_mass_weight: float = 0.0,
    action_cost: float = 0.0,
    **kwargs: Any,
) -> AdversarialTrainer:
    """An imitation adversarial trainer on the diffusion-sampling env ``venv``.

    Args:
        method: ``"gail"`` or ``"airl"`` (a key of :data:`METHODS`).
        divergence: a key of :data:`~diffgym.rewards.divergences.DIVERGENCES`; the reward the
            generator is trained on is that transform of the discriminator output.
        venv: the SB3 VecEnv of :func:`~diffgym.envs.sb3.to_sb3`.
        gen_algo: the SB3 policy learner (e.g. ``PPO("MlpPolicy", venv)``).
        reward_net: the discriminator; default ``NoiseConditionedDiscriminator.for_env(venv)``.
        expert: the expert occupancy; default ``NoisedDataExpert(venv, seed=seed)``.
        lam: ``lam`` of the ``pr`` divergence (> 0).
        pr_temperature: smoothing of ``pr`` (0 = the exact step).
        center_reward: subtract the reward of logit 0 (see :class:`RewardTransform`); default
            ``True`` exactly when the env can renoise (episodes of different lengths).
        max_log_reward: exponent cap of ``fkl`` / ``chi2`` (default
            :data:`~diffgym.rewards.divergences.MAX_LOG_REWARD`).
        demo_batch_size: expert (and policy) samples per discriminator batch; default one
            round's transitions (``n_steps * num_envs`` for on-policy learners), at most
            :data:`MAX_DEMO_BATCH`.
        n_disc_updates_per_round: discriminator updates per round.
        disc_opt_cls, disc_opt_kwargs: discriminator optimiser (default Adam,
            ``lr = DEFAULT_DISC_LR``).
        allow_variable_horizon: imitation's check; ``True`` because renoising makes episode
            lengths vary (no termination leak: every episode ends at ``sigma = 0``).
        seed: seed of the default expert's generator (and of the terminal terms' data and
            cells).
        disc_grad_penalty: R1 weight ``gamma`` on expert states (0: off; see
            :mod:`~diffgym.rewards.shaping`).
        disc_spectral_norm: spectral normalisation of the discriminator's trunk and head
            (applied in place to ``reward_net``).
        terminal_mmd_weight: weight ``beta`` of the MMD-witness reward at terminal states (0:
            off).
        terminal_mass_weight: weight ``beta`` of the cell mass-ratio reward at terminal states
            (0: off).
        action_cost: per-step cost of each knob's menu position (0: off).
        **kwargs: further ``AdversarialTrainer`` options (``demo_minibatch_size``,
            ``gen_train_timesteps``, ``gen_replay_buffer_capacity``, ``custom_logger``,
            ``log_dir``, ``init_tensorboard``, …).

    Raises:
        ValueError: unknown ``method`` or ``divergence`` (the message lists the valid names),
            ``lam <= 0``, an expert or reward net whose observation space differs from the
            env's, ``demo_batch_size < 1``, a negative reward-option weight.
        TypeError: ``demonstrations`` passed (expert states are generated: pass ``expert``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if divergence not in DIVERGENCES:
        raise ValueError(
            f"unknown divergence {divergence!r}; valid divergences: {', '.join(DIVERGENCES)}"
        )
    if "demonstrations" in kwargs:
        raise TypeError(
            "make_irl_trainer draws fresh noised-data expert states; pass `expert=` "
            "(a NoisedDataExpert) instead of `demonstrations`"
        )
    if center_reward is None:
        center_reward = unwrap_env(venv).renoise_budget > 0
    transform_kwargs: dict[str, Any] = {
        "lam": lam, "temperature": pr_temperature, "center": bool(center_reward)
    }
    if max_log_reward is not None:
        transform_kwargs["max_log_reward"] = max_log_reward
    transform = RewardTransform(divergence, **transform_kwargs)
    if expert is None:
        expert = NoisedDataExpert(venv, seed=seed)
    if reward_net is None:
        reward_net = NoiseConditionedDiscriminator.for_env(venv)
    if disc_spectral_norm:
        apply_spectral_norm(reward_net)
    if demo_batch_size is None:
        demo_batch_size = venv.num_envs
        if isinstance(gen_algo, OnPolicyAlgorithm):
            demo_batch_size *= gen_algo.n_steps
        demo_batch_size = min(demo_batch_size, MAX_DEMO_BATCH)
    if isinstance(demo_batch_size, bool) or not isinstance(demo_batch_size, int) or (
        demo_batch_size < 1
    ):
        raise ValueError(f"demo_batch_size must be an int >= 1, got {demo_batch_size!r}")
    return METHODS[method](
        expert=expert,
        reward_transform=transform,
        venv=venv,
        gen_algo=gen_algo,
        reward_net=reward_net,
        demo_batch_size=demo_batch_size,
        n_disc_updates_per_round=n_disc_updates_per_round,
        disc_opt_cls=disc_opt_cls,
        disc_opt_kwargs={"lr": DEFAULT_DISC_LR, **(disc_opt_kwargs or {})},
        allow_variable_horizon=allow_variable_horizon,
        disc_grad_penalty=disc_grad_penalty,
        terminal_mmd_weight=terminal_mmd_weight,
        terminal_mass_weight=terminal_mass_weight,
        action_cost=action_cost,
        **kwargs,
    )
