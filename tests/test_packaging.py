"""Installation layout (design §1): only ``diffgym.*`` is importable; the generic top-level names
(``envs``, ``agents``, ``rewards``, ``benchmarks``) belong to other packages on the index and must
not be importable after installation. Run in subprocesses from a temporary directory, so neither
the repository root nor this test process's ``sys.path`` can shadow the installed names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GENERIC_NAMES = ["envs", "agents", "rewards", "benchmarks"]


def run_python(args: list[str], cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["WANDB_MODE"] = "disabled"
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("name", GENERIC_NAMES)
def test_generic_top_level_name_is_not_importable(name, tmp_path):
    proc = run_python(["-c", f"import {name}; print({name}.__file__)"], cwd=tmp_path)
    assert proc.returncode != 0, f"`import {name}` succeeded: {proc.stdout.strip()}"
    assert f"No module named '{name}'" in proc.stderr, proc.stderr


def test_diffgym_namespace_imports(tmp_path):
    code = (
        "import importlib.util, diffgym.envs as e\n"
        "assert callable(e.make_task) and callable(e.sampler_step)\n"
        "for sub in ('agents', 'rewards', 'benchmarks'):\n"
        "    assert importlib.util.find_spec('diffgym.' + sub) is not None, sub\n"
        "print('ok', e.__name__)\n"
    )
    proc = run_python(["-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok diffgym.envs"


def test_cli_help(tmp_path):
    proc = run_python(["-m", "diffgym", "--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


def test_regular_install_from_a_wheel(tmp_path):
    """A regular (non-editable) install maps the folders to ``diffgym.*`` and ships the package
    data (shipped models, hyperparameter files); the generic names stay unimportable."""
    root = Path(__file__).resolve().parents[1]
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = run_python(
        ["-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(wheels),
         str(root)],
        cwd=tmp_path,
    )
    output = build.stdout + build.stderr
    assert "Package would be ignored" not in output
    assert "is absent from the `packages`" not in output
    assert "`project.license` as a TOML table is deprecated" not in output
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("diffgym-*.whl")
    # One-off studies (benchmarks/scripts/) are never installed; package data is.
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    scripts = sorted(p.stem for p in (root / "benchmarks" / "scripts").glob("*.py"))
    assert scripts, "benchmarks/scripts/ holds the one-off studies"
    shipped = [n for n in names if n.endswith(".py") and Path(n).stem in scripts]
    assert not shipped and not any("/scripts/" in n for n in names), shipped
    assert "diffgym/envs/assets/digits_denoiser.pt" in names
    install = run_python(
        ["-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    code = (
        "import importlib.util, gymnasium as gym, diffgym, diffgym.envs as e\n"
        f"assert diffgym.__file__.startswith({str(target)!r}), diffgym.__file__\n"
        "assert e.make_task('digits').denoiser.data_shape == (1, 8, 8)\n"
        "from diffgym.agents.registry import load_hyperparams\n"
        "assert load_hyperparams('ppo', 'diffgym/GMM2D-v0')['n_steps'] > 0\n"
        "from diffgym.benchmarks.digits_classifier import load_digits_classifier\n"
        "load_digits_classifier()\n"
        "assert gym.make('diffgym/GMM2D-v0').reset(seed=0)[0].shape == (5,)\n"
        "assert all(importlib.util.find_spec(n) is None\n"
        "           for n in ('envs', 'agents', 'rewards', 'benchmarks'))\n"
        "print('ok')\n"
    )
    env_path = {"PYTHONPATH": str(target)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, **env_path, "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
