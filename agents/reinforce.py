"""REINFORCE (Williams 1992) for finite-horizon episodes, as a thin SB3 ``OnPolicyAlgorithm``.

Only :meth:`REINFORCE.train` differs from SB3's on-policy loop: the rollout buffer is filled by
``OnPolicyAlgorithm.collect_rollouts`` and consumed here with Monte-Carlo returns (γ = 1) and
``n_epochs`` full-batch gradient steps of

    loss = -mean(A_t log π(a_t|s_t)) - ent_coef · mean(H[π(·|s_t)])
           + vf_coef · mean((G_t - V(s_t))²)

with ``G_t`` the return-to-go of step ``t`` within its episode and ``A_t = G_t - V(s_t)`` (value
baseline, ``use_baseline=True``) or ``A_t = G_t`` (no baseline), optionally normalised.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

__all__ = ["REINFORCE", "monte_carlo_returns"]

SelfREINFORCE = TypeVar("SelfREINFORCE", bound="REINFORCE")


def monte_carlo_returns(
    rewards: torch.Tensor, episode_starts: torch.Tensor, last_dones: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Undiscounted return-to-go within each episode of a rollout, and which steps it is exact for.

    Args:
        rewards: ``(T, E)`` reward of step ``t`` in env column ``e``.
        episode_starts: ``(T, E)`` bool, step ``t`` is the first of an episode (SB3's buffer
            convention: the previous step ended one).
        last_dones: ``(E,)`` bool, the episode running at step ``T - 1`` ended there.

    Returns:
        ``(returns (T, E), complete (T, E) bool)``: ``returns[t] = sum_{t <= u <= end} rewards[u]``
        where ``end`` is the last step of ``t``'s episode inside the rollout; ``complete[t]`` says
        that the episode ends inside the rollout, so ``returns[t]`` is the full return-to-go.
    """
    assert rewards.ndim == 2 and episode_starts.shape == rewards.shape
    assert last_dones.shape == rewards.shape[1:]
    returns = torch.empty_like(rewards)
    complete = torch.empty(rewards.shape, dtype=torch.bool, device=rewards.device)
    running = torch.zeros_like(rewards[0])
    ends_here = last_dones.to(torch.bool)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + running
        returns[t] = running
        complete[t] = ends_here
        # Step t starting an episode means step t - 1 ended the previous one.
        start = episode_starts[t].to(torch.bool)
        running = torch.where(start, torch.zeros_like(running), running)
        ends_here = ends_here | start
    return returns, complete


class REINFORCE(OnPolicyAlgorithm):
    """Monte-Carlo policy gradient with an optional value baseline (γ = 1, finite horizon).

    Returns are computed per episode from the rollout buffer's rewards and episode starts. Choose
    ``n_steps`` as a multiple of the episode length (the sampling MDP without renoise has exactly
    ``N`` steps and all envs start together) so every rollout holds whole episodes. Where an
    episode is cut by the end of a rollout (variable-length episodes), its steps are

    * bootstrapped with the value at the cut, ``G_t = sum of rewards up to the cut + V(s_cut)``
      (SB3's γ = λ = 1 return), when ``use_baseline=True``;
    * left out of the policy-gradient term when ``use_baseline=False`` (no value to bootstrap
      with; the estimator stays unbiased). ``train/complete_fraction`` logs the share kept.

    Args:
        policy: policy class or SB3 alias (``"MlpPolicy"``).
        env: the environment (an SB3 ``VecEnv`` or something SB3 can wrap).
        learning_rate: learning rate or schedule.
        n_steps: steps per env per rollout.
        ent_coef: entropy bonus (the training temperature α).
        vf_coef: weight of the value loss (ignored without baseline).
        max_grad_norm: gradient clipping norm.
        n_epochs: full-batch gradient steps per rollout.
        use_baseline: subtract the learned value ``V(s_t)`` from the return.
        normalize_advantage: standardise advantages over the rollout.
        stats_window_size, tensorboard_log, policy_kwargs, verbose, seed, device: as in SB3.

    Raises:
        ValueError: ``n_epochs < 1`` or ``ent_coef``/``vf_coef`` negative.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": ActorCriticPolicy}

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 128,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        n_epochs: int = 1,
        use_baseline: bool = True,
        normalize_advantage: bool = True,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if n_epochs < 1:
            raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
        if ent_coef < 0 or vf_coef < 0:
            raise ValueError(f"ent_coef and vf_coef must be >= 0, got {ent_coef}, {vf_coef}")
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=1.0,
            gae_lambda=1.0,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=False,
            sde_sample_freq=-1,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=(
                spaces.Box,
                spaces.Discrete,
                spaces.MultiDiscrete,
                spaces.MultiBinary,
            ),
        )
        self.n_epochs = n_epochs
        self.use_baseline = use_baseline
        self.normalize_advantage = normalize_advantage
        if _init_setup_model:
            self._setup_model()

    def train(self) -> None:
        """Monte-Carlo returns from the rollout buffer, then ``n_epochs`` full-batch steps."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        buf = self.rollout_buffer
        assert not buf.generator_ready, "the rollout buffer must be in its (n_steps, n_envs) layout"
        dev = self.device
        rewards = torch.as_tensor(buf.rewards, device=dev)  # (T, E)
        mc, complete = monte_carlo_returns(
            rewards,
            torch.as_tensor(buf.episode_starts, device=dev),
            torch.as_tensor(self._last_episode_starts, device=dev),
        )
        values_old = torch.as_tensor(buf.values, device=dev)
        if self.use_baseline:
            # Cut episodes keep SB3's bootstrapped return (γ = λ = 1: partial sum + V(s_cut)).
            returns = torch.where(complete, mc, torch.as_tensor(buf.returns, device=dev))
            advantages = returns - values_old
            weight = torch.ones_like(returns)
        else:
            returns, advantages, weight = mc, mc, complete.to(rewards.dtype)
        n_used = weight.sum()
        complete_fraction = float(complete.float().mean())
        self.logger.record("train/complete_fraction", complete_fraction)
        if complete_fraction == 0.0 and not self.use_baseline:
            warnings.warn(
                "REINFORCE: no episode ended inside the rollout, so there is nothing to learn "
                f"from without a baseline; make n_steps (={self.n_steps}) cover whole episodes",
                stacklevel=2,
            )
            return

        # Flatten (T, E, ...) -> (T * E, ...); every array uses the same order.
        batch = returns.numel()
        obs = torch.as_tensor(buf.observations, device=dev).reshape(batch, *buf.obs_shape)
        actions = torch.as_tensor(buf.actions, device=dev).reshape(batch, -1)
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()  # as in SB3's A2C
        returns, advantages, weight = returns.flatten(), advantages.flatten(), weight.flatten()
        if self.normalize_advantage and n_used > 1:
            mean = (weight * advantages).sum() / n_used
            std = torch.sqrt((weight * (advantages - mean) ** 2).sum() / (n_used - 1))
            advantages = (advantages - mean) / (std + 1e-8)

        for _ in range(self.n_epochs):
            values, log_prob, entropy = self.policy.evaluate_actions(obs, actions)
            # Policy gradient (score function) over the steps with a usable return.
            policy_loss = -(weight * advantages * log_prob).sum() / n_used
            # Entropy bonus (temperature α = ent_coef).
            entropy_loss = -(entropy.mean() if entropy is not None else (-log_prob).mean())
            # Value baseline regression onto the Monte-Carlo return.
            if self.use_baseline:
                value_loss = F.mse_loss(values.flatten(), returns)
            else:
                value_loss = torch.zeros((), device=dev)
            loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            self._n_updates += 1

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/return_mean", float((weight * returns).sum() / n_used))
        if self.use_baseline:
            self.logger.record("train/value_loss", value_loss.item())
            var_returns = returns.var()
            unexplained = (returns - values_old.flatten()).var()
            self.logger.record(
                "train/explained_variance", float(1.0 - unexplained / var_returns)
                if var_returns > 0 else float("nan"),
            )

    def learn(
        self: SelfREINFORCE,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "REINFORCE",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfREINFORCE:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
