"""diffgym.envs: denoisers, noise schedules, the batched sampler step, tasks and environments."""

from diffgym.envs.denoisers import (
    Denoiser,
    GaussianMixture,
    GMMDenoiser,
    UncondBranch,
    c_in,
    c_noise,
)
from diffgym.envs.sampler import (
    BatchNoise,
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
from diffgym.envs.schedule import edm_sigmas
from diffgym.envs.tasks import Task, list_tasks, make_task, register_task

__all__ = [
    "BatchNoise",
    "Denoiser",
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
