"""Checkpoints of training runs (design §7): one file per checkpoint, verified on load.

A checkpoint file is a header line (:data:`CHECKPOINT_FORMAT`), the SHA-256 of the payload, and
the payload (``torch.save`` of the run's state). The state is assembled from public state APIs —
the env's and the IRL trainer's ``state_dict()``, the learner's (:func:`algo_state_dict`) and every
random number generator's (:func:`rng_state`) — so a resumed run continues to the same final state
as an uninterrupted one (CPU, same seed). A file whose bytes changed in any way fails its checksum
and raises :class:`CheckpointError`; :func:`checkpoint_candidates` lists the kept checkpoints
newest first so a caller can fall back to an older intact one.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import random
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffgym.envs.io import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "algo_state_dict",
    "checkpoint_candidates",
    "checkpoint_path",
    "checkpoint_policy",
    "checkpoint_round",
    "load_algo_state_dict",
    "load_rng_state",
    "milestone_rounds",
    "read_checkpoint",
    "rng_state",
    "write_checkpoint",
]

CHECKPOINT_FORMAT = "diffgym-checkpoint-v2"


class CheckpointError(ValueError):
    """A checkpoint that is corrupt, truncated or belongs to another run."""


def write_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (fsynced) with its checksum; returns the path."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    header = f"{CHECKPOINT_FORMAT}\n{digest}\n".encode()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)

    return atomic_write(path, write)


def read_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> dict:
    """The state of a checkpoint written by :func:`write_checkpoint`, its checksum verified.

    Raises:
        CheckpointError: a missing, truncated, altered or foreign file (the message names it).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from err
    head, _, rest = data.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if head != CHECKPOINT_FORMAT.encode():
        raise CheckpointError(f"{path} is not a diffgym checkpoint ({CHECKPOINT_FORMAT})")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its content does not match its checksum"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001 - the checksum matched, so this is a foreign payload
        raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds no run state")
    return state


def checkpoint_path(ckpt_dir: str | os.PathLike, round_: int) -> Path:
    """The file of round ``round_``'s checkpoint in ``ckpt_dir``: ``round_XXXXX.pt``."""
    return Path(ckpt_dir) / f"round_{round_:05d}.pt"


def checkpoint_round(path: str | os.PathLike) -> int | None:
    """The round of a ``round_XXXXX.pt`` file (``None`` for another name)."""
    stem = Path(path).stem
    if not stem.startswith("round_"):
        return None
    try:
        return int(stem[len("round_"):])
    except ValueError:
        return None


def checkpoint_candidates(ckpt_dir: str | os.PathLike) -> list[Path]:
    """The ``round_XXXXX.pt`` files of ``ckpt_dir``, newest round first."""
    rounds = [(r, f) for f in Path(ckpt_dir).glob("round_*.pt")
              if (r := checkpoint_round(f)) is not None]
    return [f for _, f in sorted(rounds, reverse=True)]


def checkpoint_policy(policy: Any, path: str | os.PathLike, fingerprint: str) -> Any:
    """A copy of an SB3 ``policy`` with the weights of the checkpoint ``path`` of the run
    with config ``fingerprint``, in evaluation mode.

    Raises:
        CheckpointError: a corrupt file, or one of a run with another config.
    """
    state = read_checkpoint(path, device=policy.device)
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(f"checkpoint {path} belongs to a run with another config")
    out = copy.deepcopy(policy)
    out.load_state_dict(state["algo"]["policy"])
    out.set_training_mode(False)
    return out


def milestone_rounds(total_rounds: int, milestones: int) -> tuple[int, ...]:
    """The rounds that split a run of ``total_rounds`` into ``milestones`` equal parts (each
    part's last round, rounded down; distinct, ascending; the last is ``total_rounds``); ``()``
    for ``milestones == 0``.

    Raises:
        ValueError: ``total_rounds < 1`` or ``milestones < 0``.
    """
    for name, value, low in (("total_rounds", total_rounds, 1), ("milestones", milestones, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return tuple(sorted({max(total_rounds * i // milestones, 1)
                         for i in range(1, milestones + 1)}))


# --------------------------------------------------------------------------------------------
# State of an SB3 on-policy learner and of the random number generators
# --------------------------------------------------------------------------------------------


def algo_state_dict(agent: Any) -> dict[str, Any]:
    """An SB3 on-policy learner's training state: policy and optimiser, counters, the last
    observation and episode starts, and the episode-info buffers. (SB3 keeps the counters and
    buffers in its own attributes; this is the one place that reads them.)"""
    return {
        "policy": agent.policy.state_dict(),
        "policy_optimizer": agent.policy.optimizer.state_dict(),
        "num_timesteps": agent.num_timesteps,
        "_n_updates": getattr(agent, "_n_updates", 0),
        "_episode_num": agent._episode_num,
        "_last_obs": copy.deepcopy(agent._last_obs),
        "_last_episode_starts": copy.deepcopy(agent._last_episode_starts),
        "ep_info_buffer": list(agent.ep_info_buffer or []),
        "ep_success_buffer": list(agent.ep_success_buffer or []),
    }


def load_algo_state_dict(agent: Any, state: dict[str, Any]) -> None:
    """Restore :func:`algo_state_dict` into ``agent``."""
    agent.policy.load_state_dict(state["policy"])
    agent.policy.optimizer.load_state_dict(state["policy_optimizer"])
    agent.num_timesteps = state["num_timesteps"]
    if hasattr(agent, "_n_updates"):
        agent._n_updates = state["_n_updates"]
    agent._episode_num = state["_episode_num"]
    agent._last_obs = state["_last_obs"]
    agent._last_episode_starts = state["_last_episode_starts"]
    agent.ep_info_buffer = deque(state["ep_info_buffer"], maxlen=agent._stats_window_size)
    agent.ep_success_buffer = deque(state["ep_success_buffer"], maxlen=agent._stats_window_size)


def rng_state(agent: Any) -> dict[str, Any]:
    """Every global random state a run uses: torch (and CUDA), numpy, python, and the learner's
    action-space generator."""
    space = agent.action_space
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "action_space": (
            space.np_random.bit_generator.state if space._np_random is not None else None
        ),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_rng_state(agent: Any, state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (RNG states are CPU byte tensors, whatever ``map_location``
    moved them to)."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("action_space") is not None:
        agent.action_space.np_random.bit_generator.state = state["action_space"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
