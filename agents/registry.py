"""The learners: a typed registry (name -> SB3 algorithm class) and per-task hyperparameters.

Hyperparameters live in ``agents/hyperparams/<agent>.yml`` in the rl-zoo format: one block per
Gymnasium env id (``diffgym/GMM2D-v0``, ...) whose keys are the algorithm's constructor arguments,
plus ``policy_kwargs`` (a mapping, see :data:`POLICY_KEYS`) and the run settings ``n_envs`` and
``n_timesteps`` (read by the training command; not passed to the algorithm). Resolution order:
built-in defaults < the task's YAML block < keyword overrides (``policy_kwargs`` and its
``features_extractor_kwargs`` are merged key by key). A file's ``batch_size`` larger than the
rollout (``n_steps`` x the venv's ``num_envs``) is capped at the rollout size, so the files' values
also work on smaller venvs; an explicit ``batch_size`` override is kept as given.

:func:`agent_config` resolves everything into a plain-data :class:`AgentConfig` (what a run
directory stores); :meth:`AgentConfig.build` turns it into an algorithm; :func:`make_agent` does
both.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from diffgym.agents.policies import ACTIVATIONS, DiffusionFeaturesExtractor, DiffusionPolicy
from diffgym.agents.reinforce import REINFORCE
from diffgym.envs.env import DiffusionSamplingEnv
from diffgym.envs.registration import ENV_IDS
from diffgym.envs.sb3 import to_sb3, unwrap_env
from diffgym.envs.tasks import Task

__all__ = [
    "AGENTS",
    "HYPERPARAMS_DIR",
    "POLICY_KEYS",
    "RUN_KEYS",
    "AgentConfig",
    "agent_config",
    "env_id_for_task",
    "find_env",
    "hyperparams_env_id",
    "load_hyperparams",
    "make_agent",
]

AGENTS: dict[str, type[OnPolicyAlgorithm]] = {
    "a2c": A2C,
    "ppo": PPO,
    "reinforce": REINFORCE,
    "trpo": TRPO,
}
"""Agent name -> algorithm class. Every entry is an on-policy algorithm driving
:class:`~diffgym.agents.policies.DiffusionPolicy`."""

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"

RUN_KEYS = ("n_envs", "n_timesteps")
"""rl-zoo keys that describe the run, not the algorithm."""

POLICY_KEYS = (
    "net_arch",
    "activation_fn",
    "neutral_bias",
    "ortho_init",
    "share_features_extractor",
    "features_extractor_kwargs",
    "optimizer_kwargs",
)
"""Keys allowed in ``policy_kwargs`` (plain data; ``activation_fn`` is a name of
:data:`~diffgym.agents.policies.ACTIVATIONS`)."""

FEATURE_KEYS = ("features_dim", "hidden", "sigma_freqs", "cnn_channels", "sample_input")
"""Keys allowed in ``policy_kwargs.features_extractor_kwargs`` (the rest comes from the task)."""

DEFAULT_POLICY_KWARGS: dict[str, Any] = {
    "net_arch": {"pi": [], "vf": [64]},
    "activation_fn": "silu",
    "neutral_bias": 2.0,
    "features_extractor_kwargs": {},
}
"""The actor is the features extractor plus a linear head (``pi: []``): one forward per sampler
step at inference, so it is kept small; the critic gets its own hidden layer."""

_NOT_CONFIGURABLE = {"self", "policy", "env", "policy_kwargs", "_init_setup_model"}


find_env = unwrap_env
"""The :class:`DiffusionSamplingEnv` under an env or SB3 VecEnv (:func:`diffgym.envs.sb3.
unwrap_env`, under the name this module has always exported)."""


SHARED_HYPERPARAMS = {"gmm2d-random": "gmm2d"}
"""Tasks without a Gymnasium id of their own -> the task whose YAML blocks they use (the one
default configuration: a procedural task is never tuned for)."""


def _own_env_id(task_name: str) -> str | None:
    for env_id, name in ENV_IDS.items():
        if name == task_name:
            return env_id
    return None


def env_id_for_task(task_name: str) -> str | None:
    """The registered Gymnasium id of a task (``"gmm2d"`` -> ``"diffgym/GMM2D-v0"``,
    ``"digits-weak"`` -> ``"diffgym/DigitsWeak-v0"``); a task without an id of its own gets the
    id of the task it shares hyperparameters with (``"gmm2d-random"`` -> ``"diffgym/GMM2D-v0"``,
    see :data:`SHARED_HYPERPARAMS`); None for an unknown task. For the YAML lookup use
    :func:`hyperparams_env_id`."""
    return _own_env_id(task_name) or hyperparams_env_id(task_name)


def hyperparams_env_id(task_name: str) -> str | None:
    """The env id whose YAML blocks (``hyperparams/<agent>.yml``) a task trains with: its own,
    or that of the task in :data:`SHARED_HYPERPARAMS` (``"gmm2d-random"`` ->
    ``"diffgym/GMM2D-v0"``); None for an unknown task. (``diffgym/DigitsWeak-v0``'s blocks are
    YAML aliases of ``diffgym/Digits-v0``'s; ``diffgym/GMM2DNet4Step-v0``'s merge
    ``diffgym/GMM2DNet-v0``'s.)"""
    return _own_env_id(SHARED_HYPERPARAMS.get(task_name, task_name))


def _check_agent(name: str) -> type[OnPolicyAlgorithm]:
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; valid agents: {', '.join(sorted(AGENTS))}")
    return AGENTS[name]


def load_hyperparams(name: str, env_id: str | None) -> dict[str, Any]:
    """The YAML block of ``env_id`` in ``hyperparams/<name>.yml`` (a deep copy; ``{}`` if none).

    Raises:
        ValueError: unknown agent; a malformed file.
    """
    _check_agent(name)
    path = HYPERPARAMS_DIR / f"{name}.yml"
    if env_id is None or not path.is_file():
        return {}
    with open(path) as f:
        table = yaml.safe_load(f) or {}
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError(f"{path} must map env ids to mappings of hyperparameters")
    return copy.deepcopy(table.get(env_id, {}))


def _allowed_algo_keys(cls: type[OnPolicyAlgorithm]) -> list[str]:
    return sorted(set(inspect.signature(cls.__init__).parameters) - _NOT_CONFIGURABLE)


def _plain_policy_kwargs(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``policy_kwargs`` and turn an activation class into its name."""
    unknown = sorted(set(policy_kwargs) - set(POLICY_KEYS))
    if unknown:
        raise TypeError(f"unknown policy_kwargs {unknown}; allowed: {', '.join(POLICY_KEYS)}")
    out = dict(policy_kwargs)
    act = out.get("activation_fn")
    if isinstance(act, type):
        names = [k for k, v in ACTIVATIONS.items() if v is act]
        if not names:
            raise TypeError(f"activation_fn {act.__name__} is not one of {sorted(ACTIVATIONS)}")
        out["activation_fn"] = names[0]
    elif act is not None and act not in ACTIVATIONS:
        raise ValueError(f"unknown activation_fn {act!r}; allowed: {', '.join(ACTIVATIONS)}")
    feats = out.get("features_extractor_kwargs") or {}
    unknown = sorted(set(feats) - set(FEATURE_KEYS))
    if unknown:
        raise TypeError(
            f"unknown features_extractor_kwargs {unknown}; allowed: {', '.join(FEATURE_KEYS)}"
        )
    nb = out.get("neutral_bias")
    if nb is not None and not math.isfinite(float(nb)):
        raise ValueError(f"neutral_bias must be finite or None, got {nb}")
    return out


@dataclass(frozen=True)
class AgentConfig:
    """A fully resolved learner: everything needed to rebuild it, as plain data.

    Attributes:
        name: agent name (a key of :data:`AGENTS`).
        task: the task name the config was resolved for.
        env_id: the Gymnasium id whose hyperparameter block was used (None: defaults only).
        algo_kwargs: constructor arguments of the algorithm (without ``policy_kwargs``).
        policy_kwargs: plain policy arguments (:data:`POLICY_KEYS`).
        run: run settings: ``n_envs`` (of the venv it was resolved with) and ``n_timesteps``
            (from the YAML block, if any).
    """

    name: str
    task: str
    env_id: str | None
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cls = _check_agent(self.name)
        allowed = _allowed_algo_keys(cls)
        unknown = sorted(set(self.algo_kwargs) - set(allowed))
        if unknown:
            raise TypeError(
                f"{self.name} got unknown hyperparameter(s) {unknown}; allowed: "
                f"{', '.join(allowed)}, policy_kwargs, {', '.join(RUN_KEYS)}"
            )
        object.__setattr__(self, "policy_kwargs", _plain_policy_kwargs(self.policy_kwargs))

    @property
    def algo_class(self) -> type[OnPolicyAlgorithm]:
        return AGENTS[self.name]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (YAML/JSON-safe unless a callable override was given)."""
        return {
            "name": self.name,
            "task": self.task,
            "env_id": self.env_id,
            "algo_kwargs": copy.deepcopy(self.algo_kwargs),
            "policy_kwargs": copy.deepcopy(self.policy_kwargs),
            "run": copy.deepcopy(self.run),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: copy.deepcopy(v) for k, v in data.items()})

    def build(self, venv: VecEnv | DiffusionSamplingEnv) -> OnPolicyAlgorithm:
        """The algorithm on ``venv`` with :class:`DiffusionPolicy` and the task's extractor.

        Raises:
            ValueError: ``venv``'s task is not the one the config was resolved for.
        """
        if isinstance(venv, DiffusionSamplingEnv):
            venv = to_sb3(venv)
        env = find_env(venv)
        if env.task.name != self.task:
            raise ValueError(
                f"agent config was resolved for task {self.task!r}, but the env runs "
                f"task {env.task.name!r}"
            )
        pk = copy.deepcopy(self.policy_kwargs)
        if "activation_fn" in pk:
            pk["activation_fn"] = ACTIVATIONS[pk["activation_fn"]]
        feats = pk.pop("features_extractor_kwargs", None) or {}
        pk["features_extractor_class"] = DiffusionFeaturesExtractor
        pk["features_extractor_kwargs"] = {**feats, **_task_features(env.task)}
        return self.algo_class(DiffusionPolicy, venv, policy_kwargs=pk, **self.algo_kwargs)


def _task_features(task: Task) -> dict[str, Any]:
    return {
        "data_shape": tuple(task.data_shape),
        "num_classes": task.num_classes,
        "feature_kind": task.feature_kind,
    }


def agent_config(
    name: str,
    venv: VecEnv | DiffusionSamplingEnv,
    *,
    env_id: str | None = None,
    **overrides: Any,
) -> AgentConfig:
    """Resolve the hyperparameters of agent ``name`` on ``venv``'s task.

    Args:
        name: a key of :data:`AGENTS`.
        venv: the training env (its task selects the YAML block; its device is the default
            ``device`` of the algorithm).
        env_id: the YAML block to use instead of the task's registered id.
        **overrides: algorithm arguments, ``policy_kwargs`` (merged into the file's) or run keys.

    Raises:
        ValueError: unknown agent (the message lists the valid names); bad values.
        TypeError: an argument the algorithm or policy does not accept (lists the allowed ones).
    """
    _check_agent(name)
    env = find_env(venv)
    if env_id is None:
        env_id = hyperparams_env_id(env.task.name)
    block = load_hyperparams(name, env_id)
    if not block:
        warnings.warn(
            f"no {name} hyperparameters for {env_id or env.task.name!r} in "
            f"{HYPERPARAMS_DIR / (name + '.yml')}; using the algorithm's defaults",
            stacklevel=2,
        )
    policy = block.pop("policy", "MlpPolicy")
    if policy not in ("MlpPolicy", "DiffusionPolicy"):
        raise ValueError(f"policy {policy!r} is not supported; diffgym agents use DiffusionPolicy")
    merged = {**block, **overrides}
    policy_kwargs = copy.deepcopy(DEFAULT_POLICY_KWARGS)
    for source in (block.get("policy_kwargs"), overrides.get("policy_kwargs")):
        for key, value in (source or {}).items():
            if key == "features_extractor_kwargs":
                policy_kwargs[key] = {**policy_kwargs.get(key, {}), **(value or {})}
            else:
                policy_kwargs[key] = value
    merged.pop("policy_kwargs", None)
    run = {"n_envs": env.num_envs, "n_timesteps": merged.pop("n_timesteps", None)}
    merged.pop("n_envs", None)
    rollout = int(merged.get("n_steps", 0)) * env.num_envs
    file_batch = block.get("batch_size") if "batch_size" not in overrides else None
    if file_batch is not None and 0 < rollout < file_batch:
        merged["batch_size"] = rollout  # the file's minibatch, capped at this venv's rollout
    merged.setdefault("device", str(env.device))
    return AgentConfig(
        name=name,
        task=env.task.name,
        env_id=env_id,
        algo_kwargs=merged,
        policy_kwargs=policy_kwargs,
        run=run,
    )


def make_agent(
    name: str,
    venv: VecEnv | DiffusionSamplingEnv,
    *,
    env_id: str | None = None,
    **overrides: Any,
) -> OnPolicyAlgorithm:
    """Build agent ``name`` (``"ppo"``, ``"reinforce"``, ``"a2c"``, ``"trpo"``) on ``venv``.

    Hyperparameters come from ``hyperparams/<name>.yml`` (the block of ``venv``'s task), then
    ``overrides``; the policy is :class:`DiffusionPolicy` with :class:`DiffusionFeaturesExtractor`
    configured for the task. A bare :class:`DiffusionSamplingEnv` is wrapped with ``to_sb3``.

    Example:
        ``make_agent("ppo", to_sb3(DiffusionSamplingEnv("gmm2d", 64)), seed=0)``

    Raises:
        ValueError: unknown agent (the message lists the valid names); bad values.
        TypeError: an argument the algorithm or policy does not accept.
    """
    return agent_config(name, venv, env_id=env_id, **overrides).build(venv)
