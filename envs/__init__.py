"""diffgym.envs: denoisers, noise schedules, the batched sampler step, tasks and environments."""

from diffgym.envs.adapters import DiffusersDenoiser, EDMModuleDenoiser, load_denoiser
from diffgym.envs.denoisers import (
    Denoiser,
    FullCovGaussianMixture,
    GaussianMixture,
    GMMDenoiser,
    UncondBranch,
    c_in,
    c_noise,
)
from diffgym.envs.env import KNOBS, DiffusionSamplingEnv
from diffgym.envs.features import featurize, obs_dim, split_obs
from diffgym.envs.sampler import (
    BatchNoise,
    FiniteCheck,
    Knobs,
    NoiseSource,
    NonFiniteDenoiserError,
    PerSampleNoise,
    SampleResult,
    StepOutput,
    sample,
    sampler_step,
    schedule_actions,
)
from diffgym.envs.sb3 import SB3VecEnv, to_sb3, unwrap_env
from diffgym.envs.schedule import edm_sigmas
from diffgym.envs.single_env import DiffusionSamplingSingleEnv
from diffgym.envs.tasks import Task, list_tasks, make_task, register_task
from diffgym.envs.user_task import make_user_task  # registers the task "user"
from diffgym.envs.wrappers import TorchToNumpy

__all__ = [
    "DiffusersDenoiser",
    "EDMModuleDenoiser",
    "load_denoiser",
    "make_user_task",
    "KNOBS",
    "DiffusionSamplingEnv",
    "DiffusionSamplingSingleEnv",
    "SB3VecEnv",
    "TorchToNumpy",
    "featurize",
    "obs_dim",
    "split_obs",
    "to_sb3",
    "unwrap_env",
    "BatchNoise",
    "FiniteCheck",
    "Denoiser",
    "FullCovGaussianMixture",
    "GMMDenoiser",
    "GaussianMixture",
    "Knobs",
    "NoiseSource",
    "NonFiniteDenoiserError",
    "PerSampleNoise",
    "SampleResult",
    "StepOutput",
    "Task",
    "UncondBranch",
    "c_in",
    "c_noise",
    "edm_sigmas",
    "list_tasks",
    "make_task",
    "register_task",
    "sample",
    "sampler_step",
    "schedule_actions",
]
