"""diffgym: diffusion-model samplers as batched Gymnasium environments.

Importing ``diffgym`` registers the environments (``diffgym/GMM2D-v0``, ``diffgym/GMM2DBias-v0``,
``diffgym/Digits-v0``) with Gymnasium.
"""

__version__ = "0.1.0"
