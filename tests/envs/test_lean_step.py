"""The env's lean step (``envs/lean_step.py``): a neutral transition of every sub-env at one step
skips the general path's layers and gives bit-identical outputs, state and noise streams; anything
else goes the general way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import diffgym.envs.env as env_module
from diffgym.envs import DiffusionSamplingEnv, make_task
from diffgym.envs.lean_step import lean_step
from diffgym.envs.sampler import NonFiniteDenoiserError
from diffgym.envs.tasks import RECOMMENDED_STEP_MENU

B = 6


def _same(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    else:
        assert a == b, where


def _actions(env: DiffusionSamplingEnv, steps: int, kind: str) -> list:
    """``steps`` action batches: runs of all-neutral steps with some random ones in between,
    as numpy int64, torch int32 or torch int64 arrays of the action space's shape."""
    rng = np.random.default_rng(0)
    sizes = [len(env.menus[k]) for k in env.knob_names]
    out = []
    for t in range(steps):
        a = np.zeros((B, len(sizes)), dtype=np.int64)
        if t % 7 in (3, 4):  # a few non-neutral steps, in some sub-envs only
            for j, n in enumerate(sizes):
                a[:, j] = rng.integers(0, n, B) * (rng.random(B) < 0.5)
        a = a if len(sizes) > 1 else a[:, 0]
        out.append({"numpy": a, "int32": torch.as_tensor(a, dtype=torch.int32),
                    "int64": torch.as_tensor(a)}[kind])
    return out


@pytest.mark.parametrize(
    ("task", "overrides", "mode", "noise", "kind"),
    [
        ("gmm2d", {}, AutoresetMode.SAME_STEP, "batch", "int64"),
        ("gmm2d", {}, AutoresetMode.NEXT_STEP, "per_sample", "numpy"),
        ("gmm2d-bias", {}, AutoresetMode.NEXT_STEP, "batch", "int32"),
        ("gmm2d", RECOMMENDED_STEP_MENU, AutoresetMode.SAME_STEP, "per_sample", "int64"),
        ("digits", {"num_steps": 6}, AutoresetMode.SAME_STEP, "per_sample", "numpy"),
    ],
)
def test_lean_steps_equal_the_general_path(task, overrides, mode, noise, kind, monkeypatch):
    """Two envs on one seed, one with the lean step switched off: every step's five outputs, the
    state and the noise streams are equal over several episodes with neutral and non-neutral
    steps, and the lean step did take the neutral non-terminal ones."""
    taken = []

    def counted(env, actions):
        out = lean_step(env, actions)
        if env is envs[0] and out is not None:
            taken.append(int(env.step_index[0]))
        return out

    envs = [DiffusionSamplingEnv(make_task(task, **overrides), B, autoreset_mode=mode,
                                 noise=noise) for _ in range(2)]
    steps = 3 * envs[0].num_steps // envs[0].schedule_factor + 2
    actions = _actions(envs[0], steps, kind)
    for env in envs:
        env.reset(seed=3)
    for t, a in enumerate(actions):
        monkeypatch.setattr(env_module, "lean_step", counted)
        lean = envs[0].step(a)
        monkeypatch.setattr(env_module, "lean_step", lambda env, actions: None)
        general = envs[1].step(a)
        for name, u, v in zip(("obs", "reward", "terminated", "truncated", "info"), lean,
                              general):
            _same(u, v, f"step {t} {name}")
        for attr in ("x", "step_index", "budget", "episode_nfe", "episode_length",
                     "episode_return"):
            _same(getattr(envs[0], attr), getattr(envs[1], attr), f"step {t} {attr}")
        assert envs[0]._uniform_hint() == envs[1]._uniform_hint()
    assert taken, "the lean step never applied"
    shape = envs[0].data_shape
    _same(envs[0]._noise.randn(shape), envs[1]._noise.randn(shape), "noise after")


def test_lean_step_applies_only_to_neutral_non_terminal_host_steps():
    env = DiffusionSamplingEnv("gmm2d", B)
    zeros = np.zeros(env.action_space.shape, dtype=np.int64)
    assert lean_step(env, zeros) is None  # before reset()
    env.reset(seed=0)
    assert lean_step(env, zeros.astype(np.float64)) is None  # floats: the general validation
    assert lean_step(env, zeros[:-1]) is None  # another shape
    assert lean_step(env, torch.zeros(env.action_space.shape, dtype=torch.long,
                                      device="meta")) is None
    one = zeros.copy()
    one[2, 1] = 1
    assert lean_step(env, one) is None
    assert lean_step(env, zeros) is not None
    env.step_index = env.step_index.clone()  # written by hand: the host no longer knows where
    assert lean_step(env, zeros) is None
    env.reset(seed=0)
    for _ in range(env.num_steps - 1):
        env.step(zeros)
    assert lean_step(env, zeros) is None  # the last step: the general path ends the episodes
    paid = DiffusionSamplingEnv("gmm2d", B, nfe_penalty=0.01)
    paid.reset(seed=0)
    assert lean_step(paid, zeros) is None


def test_bad_actions_still_raise_the_general_errors():
    env = DiffusionSamplingEnv("gmm2d", B)
    env.reset(seed=0)
    bad = np.zeros(env.action_space.shape, dtype=np.int64)
    bad[1, 0] = -1
    with pytest.raises(ValueError, match="sub-env 1"):
        env.step(bad)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((B + 1, 2), dtype=np.int64))


def test_a_nan_on_lean_steps_raises_at_the_episode_end():
    """The lean step records the finite check as the sampler's short path does: a NaN from the
    denoiser on a neutral step raises, naming its step, by the end of the episode."""
    task = make_task("gmm2d")
    real = task.denoiser

    class NaNAt(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(real, name)

        def forward(self, x, sigma, labels=None):
            self.calls += 1
            out = real(x, sigma, labels)
            return out * float("nan") if self.calls == 5 else out

    task.denoiser = NaNAt()
    env = DiffusionSamplingEnv(task, B)
    env.reset(seed=0)
    zeros = np.zeros(env.action_space.shape, dtype=np.int64)
    with pytest.raises(NonFiniteDenoiserError, match="step index 2"):
        for _ in range(env.num_steps):
            env.step(zeros)
