"""Installation layout (design §1): only ``diffgym.*`` is importable; the generic top-level names
(``envs``, ``agents``, ``rewards``, ``benchmarks``) belong to other packages on the index and must
not be importable after installation. Run in subprocesses from a temporary directory, so neither
the repository root nor this test process's ``sys.path`` can shadow the installed names."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources

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


@pytest.mark.skipif(
    not resources.files("diffgym").joinpath("cli.py").is_file(),
    reason="diffgym/cli.py (the `diffgym` console script) is not written yet",
)
def test_cli_help(tmp_path):
    proc = run_python(["-m", "diffgym", "--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()
