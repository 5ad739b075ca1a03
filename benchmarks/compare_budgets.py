"""Named budgets of ``diffgym compare`` / ``suite`` (``--budget``) and the name-list check their
configs share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from diffgym.benchmarks.grid import DEFAULT_N

__all__ = ["BUDGETS", "CompareBudget", "check_names"]


@dataclass(frozen=True)
class CompareBudget:
    """Settings of a named budget (``--budget``); explicit arguments override them.

    Attributes:
        timesteps: training transitions per run (``None``: the agent's YAML ``n_timesteps``).
        n_eval: samples per evaluation (grid points and every row).
        seeds: training seeds (one evaluation seed each).
        grid_points: grid preset, ``"small"`` or ``"default"``.
        overhead_repeats: interleaved timing repeats of the inference overhead.
        threads: torch CPU threads for the run (``None``: leave torch's setting).
    """

    timesteps: int | None
    n_eval: int
    seeds: tuple[int, ...]
    grid_points: str
    overhead_repeats: int
    threads: int | None = None


BUDGETS: dict[str, CompareBudget] = {
    # A few minutes on gmm2d (about 80 s on a quiet machine): a smoke-sized comparison, too small
    # to show the point (its 9-point grid costs less than the training runs). 2048 samples, not
    # fewer: below that SW2 is mostly noise on gmm2d (RESULTS §1, "SW2's noise floor"), and 2048
    # costs about the same time as 1024 here.
    "quick": CompareBudget(
        timesteps=115_200, n_eval=2048, seeds=(0, 1), grid_points="small", overhead_repeats=5,
        threads=1,
    ),
    # ./run.sh, the main job: gmm2d-bias (./run.sh passes --task), where no time-only sampler can
    # correct the mode masses. The grid is sized like a real search: the full 108-point EDM churn
    # family scored on the full budget's 2048 samples; three training runs, so that the paired
    # differences have an interval. About 3.5 minutes on 2 busy cores with one torch thread
    # (benchmarks/RESULTS.md §14).
    "main": CompareBudget(
        timesteps=115_200, n_eval=DEFAULT_N, seeds=(0, 1, 2), grid_points="default",
        overhead_repeats=5, threads=1,
    ),
    # benchmarks/RESULTS.md: the YAML's training length, the full grids, 2048 samples, 3 seeds.
    "full": CompareBudget(
        timesteps=None, n_eval=DEFAULT_N, seeds=(0, 1, 2), grid_points="default",
        overhead_repeats=7,
    ),
}
"""Named budgets of ``diffgym compare --budget``."""


def check_names(
    kind: str, values: Sequence[str], allowed: Sequence[str], *, one: str
) -> tuple[str, ...]:
    """``values`` as a tuple; ``ValueError`` naming ``allowed`` for an unknown, empty or repeat."""
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"{kind} must not be empty; allowed: {', '.join(allowed)}")
    for v in values:
        if v not in allowed:
            raise ValueError(f"unknown {one} {v!r}; allowed: {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{kind} must not repeat, got {values}")
    return values
