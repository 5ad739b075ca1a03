"""diffgym: diffusion-model samplers as batched Gymnasium environments.

Importing ``diffgym`` registers the environments ``diffgym/GMM2D-v0``, ``diffgym/GMM2DBias-v0``
and ``diffgym/Digits-v0`` with Gymnasium.
"""

from diffgym.envs.registration import ENV_IDS, register_envs

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "register_envs", "__version__"]

register_envs()
