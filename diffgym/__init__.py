"""diffgym: diffusion-model samplers as batched Gymnasium environments.

Importing ``diffgym`` registers the environments of :data:`ENV_IDS` with Gymnasium
(``diffgym/GMM2D-v0``, ``diffgym/GMM2DBias-v0``, ``diffgym/Digits-v0``, ``diffgym/DigitsWeak-v0``,
``diffgym/GMM2DNet-v0``, ``diffgym/GMM2DNet4Step-v0``, ``diffgym/CMix-v0``).
"""

from diffgym.envs.registration import ENV_IDS, register_envs

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "register_envs", "__version__"]

register_envs()
