"""docs/design.md exists, and every "design §N" cited by the installed package resolves to it."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"

PACKAGES = ("diffgym", "diffgym.envs", "diffgym.rewards", "diffgym.agents", "diffgym.benchmarks")
"""The installed packages whose modules may cite the design document."""

CITATION = re.compile(r"design\s*§\s*(\d+(?:\.\d+)*)|§\s*(\d+(?:\.\d+)*)\s+of\s+the\s+design")
"""``design §3``, ``design §3.4`` and ``§2 of the design``."""

HEADING = re.compile(r"^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s+(.+?)\s*$", re.MULTILINE)
"""A numbered heading: ``## 3. The sampling MDP`` or ``### 3.4 NFE accounting``."""

ISSUE_REFERENCE = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)

SECTION_TOPICS = {
    "1": ("layout", "import"),
    "2": ("denoiser",),
    "3": ("mdp",),
    "4": ("reward",),
    "5": ("baseline", "cost"),
    "6": ("metric",),
    "7": ("training", "checkpoint"),
    "8": ("command line",),
}
"""Words each top-level heading must contain: what the code means when it cites the number."""


def _headings() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in HEADING.finditer(DESIGN.read_text(encoding="utf-8"))}


def _module_files() -> list[Path]:
    """The ``.py`` files of every module of the installed packages (not scripts beside them)."""
    files: set[Path] = set()
    for name in PACKAGES:
        package = importlib.import_module(name)
        files.add(Path(package.__file__).resolve())
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            spec = importlib.util.find_spec(info.name)
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                files.add(Path(spec.origin).resolve())
    return sorted(files)


def _citations() -> list[tuple[str, int, str]]:
    """``(file, line, section number)`` for every design citation in the package's modules."""
    found = []
    for path in _module_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for m in CITATION.finditer(line):
                found.append((str(path), lineno, m.group(1) or m.group(2)))
    return found


def test_design_doc_exists() -> None:
    assert DESIGN.is_file(), f"{DESIGN} is missing"
    assert DESIGN.read_text(encoding="utf-8").strip()


def test_top_level_sections_mean_what_the_code_cites() -> None:
    headings = _headings()
    for number, words in SECTION_TOPICS.items():
        assert number in headings, f"docs/design.md has no heading numbered {number}"
        title = headings[number].lower()
        assert all(w in title for w in words), (
            f"heading {number} is {headings[number]!r}; expected it to mention {words}"
        )


def test_subsections_are_numbered_under_their_section() -> None:
    headings = _headings()
    for number in headings:
        parent = number.rsplit(".", 1)[0]
        assert "." not in number or parent in headings, f"heading {number} has no section {parent}"


def test_every_design_citation_resolves() -> None:
    files = _module_files()
    names = {p.name for p in files}
    assert {"sampler.py", "env.py", "cli.py"} <= names, "the scan missed the package modules"
    headings = _headings()
    unresolved = [f"{f}:{line}: design §{n}" for f, line, n in _citations() if n not in headings]
    assert not unresolved, "citations with no such heading in docs/design.md:\n" + "\n".join(
        unresolved
    )


def test_design_doc_cites_no_issue_numbers() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    hits = [m.group(0) for m in ISSUE_REFERENCE.finditer(text)]
    assert not hits, f"docs/design.md refers to issues: {hits}"


@pytest.mark.parametrize(
    ("text", "number"),
    [("design §3", "3"), ("(design §5.2)", "5.2"), ("design § 4", "4"), ("§2 of the design", "2")],
)
def test_citation_pattern(text: str, number: str) -> None:
    m = CITATION.search(text)
    assert m is not None and (m.group(1) or m.group(2)) == number


def test_heading_pattern() -> None:
    text = "## 3. The sampling MDP\n### 3.4 NFE accounting\n## Not numbered\n"
    assert {m.group(1): m.group(2) for m in HEADING.finditer(text)} == {
        "3": "The sampling MDP",
        "3.4": "NFE accounting",
    }
