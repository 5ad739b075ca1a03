"""diffgym.agents: learners (SB3 on-policy algorithms and REINFORCE), their policies and per-task
hyperparameters, and policy-guided sampling at inference."""

from diffgym.agents.cost import COST_CATEGORIES, Cost, Stopwatch
from diffgym.agents.policies import (
    ACTIVATIONS,
    DiffusionFeaturesExtractor,
    DiffusionPolicy,
    SigmaEmbedding,
    apply_neutral_bias,
    neutral_probability,
)
from diffgym.agents.policy_sampling import PolicySampler, save_samples
from diffgym.agents.registry import (
    AGENTS,
    AgentConfig,
    agent_config,
    env_id_for_task,
    find_env,
    hyperparams_env_id,
    load_hyperparams,
    make_agent,
)
from diffgym.agents.reinforce import REINFORCE, monte_carlo_returns

__all__ = [
    "ACTIVATIONS",
    "AGENTS",
    "COST_CATEGORIES",
    "Cost",
    "Stopwatch",
    "AgentConfig",
    "DiffusionFeaturesExtractor",
    "DiffusionPolicy",
    "PolicySampler",
    "REINFORCE",
    "SigmaEmbedding",
    "agent_config",
    "apply_neutral_bias",
    "env_id_for_task",
    "find_env",
    "hyperparams_env_id",
    "load_hyperparams",
    "make_agent",
    "monte_carlo_returns",
    "neutral_probability",
    "save_samples",
]
