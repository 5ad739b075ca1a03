"""Shared fixtures: one torch thread, the ``device`` matrix (CUDA cases skip when absent) and
seeded generators."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ["WANDB_MODE"] = "disabled"  # never start wandb's network thread in tests

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
        ],
    ),
]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op torch thread for the whole suite: the tensors and networks here are small,
    and on a shared 2-core machine a second thread costs far more than it gains (one test went
    from 5 s to 100 s with two threads while other jobs ran)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def noise_version_env(monkeypatch):
    """Every test starts from the default per-sample noise generator whatever the shell's
    ``$DIFFGYM_NOISE_VERSION`` (empty counts as unset), and a test that changes it (e.g. through
    ``set_default_noise_version``, which writes ``os.environ``) leaks nothing: the variable is
    restored after each test."""
    monkeypatch.setenv("DIFFGYM_NOISE_VERSION", "")


@pytest.fixture(autouse=True, scope="session")
def library_temp_dirs_in_pytest_tmp(tmp_path_factory):
    """Folders that SB3 and imitation create by default (``SB3-<date>`` loggers of trainers built
    without a ``custom_logger``) go under pytest's temporary root, not into the system /tmp."""
    import tempfile

    root = tmp_path_factory.mktemp("library-tmp")
    old = tempfile.tempdir
    tempfile.tempdir = str(root)
    yield
    tempfile.tempdir = old


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """The device a test runs on: CPU always, CUDA when available (skipped otherwise)."""
    return torch.device(request.param)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator seeded with 0 (fresh for every test)."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def make_generator():
    """Factory of seeded generators: ``make_generator(seed, device="cpu")``."""

    def make(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(seed)

    return make


SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "scripts"


@pytest.fixture(scope="session")
def load_script():
    """``load_script("noise_floor")``: a one-off study script of ``benchmarks/scripts/`` (not part
    of the installed package) imported from its file, so its smoke test can call ``main``."""
    import importlib.util
    import sys

    loaded: dict = {}

    def load(name: str):
        if name not in loaded:
            path = SCRIPTS_DIR / f"{name}.py"
            spec = importlib.util.spec_from_file_location(f"diffgym_script_{name}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses need their module registered
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    return load
