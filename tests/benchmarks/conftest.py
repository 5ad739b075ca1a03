"""Fixtures of the benchmark tests."""

from __future__ import annotations

import pytest

from diffgym.benchmarks import compare


@pytest.fixture
def compare_config_of(monkeypatch):
    """``compare_config_of(args)``: run a parsed ``diffgym compare`` command up to the comparison
    and return the :class:`~diffgym.benchmarks.compare.CompareConfig` it builds (nothing runs)."""

    class Stop(Exception):
        pass

    seen = {}

    def fake(config, *, progress):
        seen["config"] = config
        raise Stop

    monkeypatch.setattr(compare, "run_comparison", fake)

    def run(args):
        with pytest.raises(Stop):
            args.func(args)
        return seen["config"]

    return run
