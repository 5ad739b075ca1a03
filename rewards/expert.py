"""Expert occupancy: noised data, featurised exactly like env observations (design §4).

An ideal sampler visits, at step ``i``, the data noised to ``sigma_i``: ``x0 + sigma_i eps`` with
``(x0, label)`` from the task's data (for ``gmm2d-bias`` the unbalanced target). Such states cost
nothing to draw, so every discriminator batch gets fresh ones, *sigma-matched* to the policy batch
it is compared with: each expert state copies the conditioning columns of one policy state
(``c_noise(sigma)``, ``i/N``, budget fraction, one-hot label; see
:mod:`diffgym.envs.features`) and only its sample part is new. The discriminator can then only
tell the two apart by the sample, never by the noise level or the label.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from diffgym.envs.features import featurize, split_obs
from diffgym.envs.sb3 import unwrap_env

__all__ = ["ExpertDemonstrations", "NoisedDataExpert", "unwrap_env"]


class NoisedDataExpert:
    """Noised-data expert states for the env ``env`` (same task, schedule, budget and layout).

    Args:
        env: a :class:`~diffgym.envs.env.DiffusionSamplingEnv`, or its SB3 adapter from
            :func:`~diffgym.envs.sb3.to_sb3`.
        seed: seed of the expert's own CPU generator (data and noise); ``None`` = fresh entropy.

    Attributes:
        observation_space, action_space: the env's single-env spaces.
        sigmas: ``(num_steps + 1,)`` the env's schedule (on the env's device).
    """

    def __init__(self, env: Any, *, seed: int | None = None) -> None:
        inner = unwrap_env(env)
        self.task = inner.task
        self.device = inner.device
        self.dtype = inner.dtype
        self.sigmas = inner.sigmas
        self.num_steps = inner.num_steps
        self.renoise_budget = inner.renoise_budget
        self.num_classes = inner.num_classes
        self.data_shape = tuple(inner.data_shape)
        self.observation_space: spaces.Box = inner.single_observation_space
        self.action_space: spaces.Space = inner.single_action_space
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.generator = torch.Generator().manual_seed(int(seed))

    # ------------------------------------------------------------------------------------------
    # States
    # ------------------------------------------------------------------------------------------

    def noised_states(
        self,
        step_index: torch.Tensor,
        budget_frac: torch.Tensor,
        labels: torch.Tensor | None,
        x0: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Featurised expert states ``x0 + sigma_i eps`` at the given steps.

        Args:
            step_index: ``(B,)`` step ``i`` in ``[0, N]`` (``i = N`` gives clean data).
            budget_frac: ``(B,)`` budget-fraction column to put in the observation.
            labels: ``(B,)`` labels (conditional tasks; ``x0`` is drawn from that class) or
                ``None``.
            x0: ``(B, *data_shape)`` clean samples to reuse (drawn from the data when ``None``).

        Returns:
            ``(obs (B, obs_dim) float32, x0 (B, *data_shape))`` on the env's device.
        """
        batch = step_index.shape[0]
        if x0 is None:
            cpu_labels = labels.cpu() if labels is not None else None
            x0, _ = self.task.sample_data(batch, self.generator, class_labels=cpu_labels)
        eps = torch.randn((batch, *self.data_shape), generator=self.generator, dtype=x0.dtype)
        x0 = x0.to(self.device, self.dtype)
        eps = eps.to(self.device, self.dtype)
        step = step_index.to(self.device)
        sigma = self.sigmas[step]
        x = x0 + sigma.reshape(-1, *([1] * len(self.data_shape))) * eps
        obs = featurize(
            x,
            sigma,
            step.to(self.dtype) / self.num_steps,
            budget_frac.to(self.device, self.dtype),
            labels.to(self.device) if labels is not None else None,
            sigma_data=self.task.sigma_data,
            num_classes=self.num_classes,
        )
        return obs, x0

    def parse(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Conditioning of observations ``(B, obs_dim)``: ``(step (B,), budget frac (B,),
        labels (B,) | None)``; the step is read from the ``i/N`` column (exact for ``N < 2^23``)."""
        _, cond = split_obs(obs, self.data_shape)
        step = torch.round(cond[:, 1].double() * self.num_steps).long().clamp(0, self.num_steps)
        labels = cond[:, 3:].argmax(dim=1) if self.num_classes > 0 else None
        return step, cond[:, 2], labels

    def states_like(
        self, obs: torch.Tensor, x0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert states sigma-matched to the (policy) observations ``obs`` ``(B, obs_dim)``.

        Row ``b`` has exactly ``obs[b]``'s conditioning columns (noise level, step fraction,
        budget fraction, label) and the featurised sample ``x0 + sigma eps``, with ``x0`` of
        ``obs[b]``'s label and ``sigma`` the schedule level of its step.

        Returns:
            ``(expert obs (B, obs_dim) float32, x0 (B, *data_shape))`` on the env's device.
        """
        if obs.ndim != 2 or obs.shape[1] != self.observation_space.shape[0]:
            raise ValueError(
                f"obs must have shape (batch, {self.observation_space.shape[0]}), "
                f"got {tuple(obs.shape)}"
            )
        obs = obs.to(self.device)
        step, budget_frac, labels = self.parse(obs)
        expert, x0 = self.noised_states(step, budget_frac, labels, x0)
        d = math.prod(self.data_shape)
        # Copy the conditioning columns verbatim: only the sample part differs.
        expert = torch.cat([expert[:, :d], obs[:, d:].to(expert.dtype)], dim=1)
        return expert, x0

    # ------------------------------------------------------------------------------------------
    # Transitions
    # ------------------------------------------------------------------------------------------

    def neutral_actions(self, batch: int) -> torch.Tensor:
        """``(B, *action_shape)`` all-zero (neutral) menu indices, int64, on the env's device."""
        return torch.zeros((batch, *self.action_space.shape), dtype=torch.long, device=self.device)

    def transitions_like(
        self, obs: torch.Tensor, next_obs: torch.Tensor, dones: torch.Tensor
    ) -> dict[str, Any]:
        """Expert transitions sigma-matched to a policy batch (``(B, obs_dim)``, ``(B,)``).

        ``obs`` and ``next_obs`` are matched row by row to the policy's, sharing one ``x0`` per
        row (as along one sampling trajectory); actions are neutral; ``dones`` are the policy's
        (``done`` iff the next state is terminal, i.e. clean data).

        Returns:
            A transition mapping ``{"obs", "acts", "next_obs", "dones", "infos"}`` of tensors on
            the env's device (``infos``: a list of empty dicts).
        """
        next_expert, x0 = self.states_like(next_obs)
        expert, _ = self.states_like(obs, x0)
        batch = obs.shape[0]
        return {
            "obs": expert,
            "acts": self.neutral_actions(batch),
            "next_obs": next_expert,
            "dones": dones.to(self.device, torch.bool),
            "infos": [{} for _ in range(batch)],
        }

    def sample_transitions(self, batch: int) -> dict[str, Any]:
        """``batch`` expert transitions without a policy batch to match.

        Next-state steps are uniform on ``1..N`` (the state before is at the previous step, same
        ``x0``), labels from the task's label distribution, the renoise budget full (an ideal
        sampler never renoises). Used for imitation's ``demonstrations``; the trainers of
        :mod:`diffgym.rewards.trainer` replace these with sigma-matched states.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an int >= 1, got {batch!r}")
        g = self.generator
        next_step = torch.randint(1, self.num_steps + 1, (batch,), generator=g)
        labels = self.task.sample_labels(batch, g)
        full = 1.0 if self.renoise_budget > 0 else 0.0
        budget = torch.full((batch,), full, dtype=self.dtype)
        next_obs, x0 = self.noised_states(next_step, budget, labels)
        obs, _ = self.noised_states(next_step - 1, budget, labels, x0)
        return {
            "obs": obs,
            "acts": self.neutral_actions(batch),
            "next_obs": next_obs,
            "dones": (next_step == self.num_steps).to(self.device),
            "infos": [{} for _ in range(batch)],
        }

    def demonstrations(self, batch_size: int) -> ExpertDemonstrations:
        """An endless iterable of ``batch_size`` transitions, usable as imitation's
        ``demonstrations`` (see :class:`ExpertDemonstrations`)."""
        return ExpertDemonstrations(self, batch_size)


class ExpertDemonstrations:
    """Endless iterable of fresh expert transition batches, in the form imitation's
    ``demonstrations`` accepts (mappings with ``obs``, ``acts``, ``next_obs``, ``dones``,
    ``infos``; tensors on the env's device).

    The tensors live on the env's device; imitation's own trainers convert them with
    ``.numpy()``, which only works on the CPU. On CUDA use the trainers of
    :func:`~diffgym.rewards.make_irl_trainer`, which never do (and replace these batches with
    sigma-matched ones).

    Args:
        expert: the :class:`NoisedDataExpert` that draws them.
        batch_size: transitions per batch (imitation's ``demo_batch_size``).
    """

    def __init__(self, expert: NoisedDataExpert, batch_size: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.expert = expert
        self.batch_size = batch_size
        self.observation_space = expert.observation_space

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.expert.sample_transitions(self.batch_size)
