"""The env's lean step: a neutral transition of every sub-env at one step, without the general
path's layers (RESULTS §45).

Most transitions a sampler takes are the default sampler's: every knob at its neutral entry and
every sub-env at the same step. :meth:`DiffusionSamplingEnv.step` then hands the transition to
:func:`lean_step`, which checks on the host that it applies and runs the sampler's own short path
(:func:`~diffgym.envs.sampler._neutral_uniform_step`: the same arithmetic, NFE and finite check)
with the env's bookkeeping, skipping the general path's action validation into index tensors,
knob building, ``sampler_step``'s prologue and its per-row outputs. Every output is bit-identical
to the general path's (tests compare the two at every step). It does not apply, and the general
path runs, when any action is not neutral or is not a host integer array of the action shape,
when an episode ends at this step or ended at the last one, when the env pays a reward, or when
the finite check is due to be read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffgym.envs.sampler import FiniteCheck, _neutral_uniform_step
from diffgym.envs.step_levels import uniform_levels

if TYPE_CHECKING:
    from diffgym.envs.env import DiffusionSamplingEnv

__all__ = ["lean_step"]

_HOST_INTEGER = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
"""CPU action dtypes read as numpy views (those of ``env._NUMPY_CHECKED`` that are integers)."""


def _all_neutral(env: DiffusionSamplingEnv, actions: Any) -> bool:
    """Whether ``actions`` are host integer menu indices of the env's action shape, all 0 (every
    knob's neutral entry). Anything else (a float, device or odd tensor, another shape) is left
    to the general path, which validates it."""
    if isinstance(actions, torch.Tensor):
        if (actions.device.type != "cpu" or actions.dtype not in _HOST_INTEGER
                or actions.layout != torch.strided or actions.requires_grad):
            return False
        actions = actions.numpy()
    elif not isinstance(actions, np.ndarray):
        return False
    return (actions.shape == env._action_shape and actions.dtype.kind in "iu"
            and not np.count_nonzero(actions))


def lean_step(env: DiffusionSamplingEnv, actions: Any) -> tuple | None:
    """The env step's five outputs for a neutral, non-terminal transition of every sub-env at one
    step, as :meth:`DiffusionSamplingEnv.step` returns them; ``None`` (nothing done) when the
    transition is not one."""
    if (env._needs_reset or env._any_done or env.nfe_penalty or env.reward_kind != "none"
            or not env.num_envs):
        return None
    uniform = env._uniform_hint()
    if uniform is None:
        return None
    nxt_host = uniform + env.schedule_factor
    finite = env._finite
    if (nxt_host >= env.num_steps or (env.check_finite and finite.unread >= FiniteCheck.max_pending)
            or not _all_neutral(env, actions)):
        return None
    x, sigmas, batch = env.x, env.sigmas, env.num_envs
    if sigmas.device != x.device or sigmas.dtype != x.dtype:
        return None
    levels = uniform_levels(sigmas, uniform, nxt_host, batch)
    step_index = env.step_index
    nxt = step_index + (levels.advance if step_index.device == sigmas.device
                        else nxt_host - uniform)
    out = _neutral_uniform_step(env.task.denoiser, x, step_index, nxt, levels, nxt_host, False,
                                env.labels, env.budget, env._noise, env.check_finite, finite,
                                env._guide)
    env.x, env.step_index, env.budget = out.x, out.step_index, out.budget
    env._set_uniform_hint(nxt_host)
    env.episode_nfe += out.nfe
    env.episode_length += env._one
    dev = env.device
    info = {"nfe": out.nfe, "renoised": out.renoised, "churn_ignored": out.churn_ignored,
            "renoise_ignored": out.renoise_ignored}
    reward = torch.zeros(batch, dtype=torch.float32, device=dev)
    terminated = torch.full((batch,), False, dtype=torch.bool, device=dev)
    truncated = torch.zeros(batch, dtype=torch.bool, device=dev)
    return env._observe(), reward, terminated, truncated, info
