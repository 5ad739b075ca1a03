"""diffgym.rewards: adversarial inverse-RL rewards (design §4).

* :class:`NoisedDataExpert`: the expert occupancy, noised data featurised like env observations,
  sigma-matched to policy batches; :class:`ExpertDemonstrations` is its form for imitation.
* :class:`NoiseConditionedDiscriminator`: imitation ``RewardNet`` on the next state, conditioned on
  sigma and label (MLP or CNN trunk).
* :data:`DIVERGENCES` / :class:`RewardTransform`: f-divergence rewards on the logit.
* :func:`make_irl_trainer`: imitation's GAIL / AIRL with sigma-matched expert batches and the
  chosen reward transform.
* :mod:`~diffgym.rewards.shaping`: reward options that see mode masses (R1 penalty, spectral
  norm, terminal MMD witness, menu-position cost) and :class:`ShapedReward`.
"""

from diffgym.rewards.discriminator import NoiseConditionedDiscriminator
from diffgym.rewards.divergences import (
    DIVERGENCES,
    MAX_LOG_REWARD,
    RewardTransform,
    chi2_reward,
    fkl_reward,
    js_reward,
    pr_reward,
    rkl_reward,
)
from diffgym.rewards.expert import ExpertDemonstrations, NoisedDataExpert
from diffgym.rewards.shaping import (
    REWARD_OPTIONS,
    ShapedReward,
    check_reward_options,
    menu_position,
    mmd_witness,
    r1_penalty,
)
from diffgym.rewards.trainer import (
    METHODS,
    DivergenceReward,
    SigmaMatchedAIRL,
    SigmaMatchedGAIL,
    make_irl_trainer,
)

__all__ = [
    "DIVERGENCES",
    "MAX_LOG_REWARD",
    "METHODS",
    "REWARD_OPTIONS",
    "DivergenceReward",
    "SigmaMatchedAIRL",
    "SigmaMatchedGAIL",
    "make_irl_trainer",
    "ExpertDemonstrations",
    "NoiseConditionedDiscriminator",
    "NoisedDataExpert",
    "RewardTransform",
    "ShapedReward",
    "check_reward_options",
    "chi2_reward",
    "fkl_reward",
    "js_reward",
    "menu_position",
    "mmd_witness",
    "pr_reward",
    "r1_penalty",
    "rkl_reward",
]
