"""The layout rules of the package (design §1): import direction, module size, argparse only in
the command line, and one-off studies outside the installed package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("envs", "rewards", "agents", "benchmarks")
"""Folders in import order: a folder may import only from itself and the folders to its left."""
MAX_LINES = 800


def _library_modules() -> list[Path]:
    """The installed package's modules: the four folders (not benchmarks/scripts) and diffgym/."""
    files = [p for layer in LAYERS for p in (ROOT / layer).glob("*.py")]
    return files + list((ROOT / "diffgym").glob("*.py"))


def _imported(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path`` (top level and inside functions)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_the_layers_exist():
    modules = _library_modules()
    assert len(modules) > 30
    for layer in LAYERS:
        assert (ROOT / layer / "__init__.py").is_file(), layer


@pytest.mark.parametrize("layer", LAYERS)
def test_no_upward_import(layer):
    rank = LAYERS.index(layer)
    bad = []
    for path in (ROOT / layer).glob("*.py"):
        for line, module in _imported(path):
            parts = module.split(".")
            if parts[0] != "diffgym" or len(parts) < 2:
                continue
            if parts[1] == "cli" or (parts[1] in LAYERS and LAYERS.index(parts[1]) > rank):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "imports against envs <- rewards <- agents <- benchmarks:\n" + "\n".join(bad)


def test_the_direction_check_catches_an_upward_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from diffgym.benchmarks.evaluate import task_metrics\n")
    assert _imported(probe) == [(2, "diffgym.benchmarks.evaluate")]


def test_no_module_over_the_size_limit():
    big = {str(p.relative_to(ROOT)): n for p in _library_modules()
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concern): {big}"


COMMAND_LINE = (ROOT / "diffgym" / "cli.py", ROOT / "diffgym" / "cli_args.py")


def test_argparse_only_in_the_command_line():
    users = sorted(
        str(p.relative_to(ROOT)) for p in _library_modules()
        if any(m == "argparse" for _, m in _imported(p)) and p not in COMMAND_LINE
    )
    assert not users, f"argparse outside the command line (engines take typed configs): {users}"


def test_scripts_never_import_each_other():
    scripts = {p.stem for p in (ROOT / "benchmarks" / "scripts").glob("*.py")}
    assert scripts
    for path in (ROOT / "benchmarks" / "scripts").glob("*.py"):
        for line, module in _imported(path):
            assert module.split(".")[-1] not in scripts or module.startswith("diffgym."), (
                f"{path.name}:{line} imports the script {module}"
            )
            assert not module.startswith("diffgym.benchmarks.scripts"), (path.name, module)


def test_scripts_import_what_exists():
    """Every ``from diffgym.X import name`` of a one-off script names a module and attribute that
    exist (a rename in the library must not leave a script broken)."""
    import importlib

    for path in (ROOT / "benchmarks" / "scripts").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffgym"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), (
                        f"{path.name}:{node.lineno}: {node.module} has no {alias.name}"
                    )
