"""The suite's plot (matplotlib, Agg backend): per task, each learned method's paired difference
to the best grid point and to the default sampler's mode TV (:mod:`diffgym.benchmarks.suite`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from diffgym.envs.io import atomic_write

if TYPE_CHECKING:
    from diffgym.benchmarks.suite import SuiteResult

__all__ = ["plot_suite"]


def plot_suite(result: SuiteResult, path: str | Path) -> None:
    """Per task, each method's paired headline difference to the best grid point (left) and its
    paired mode-TV difference to the default sampler (right), ``± std`` error bars, the 0 line;
    filled markers meet the rule, hollow ones do not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = [s for s in result.config.task_seeds if s in result.comparisons]
    methods = result.methods
    has_tv = any(o.mode_tv_ok is not None for o in result.outcomes)
    panels = [("delta_mean", "delta_std", "reached",
               f"{result.metric}: learned - best grid point (paired)")]
    if has_tv:
        panels.append(("mode_tv_delta_mean", "mode_tv_delta_std", "mode_tv_ok",
                       "mode TV: learned - default (paired)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 0.5 * len(seeds) + 3.5)
                                                        * len(panels), 4.0), squeeze=False)
    width = 0.7 / max(1, len(methods))
    for ax, (mean_key, std_key, flag_key, title) in zip(axes[0], panels):
        ax.axhline(0.0, color="black", lw=0.8)
        for i, method in enumerate(methods):
            by_seed = {o.task_seed: o for o in result.outcomes if o.method == method}
            for j, s in enumerate(seeds):
                o = by_seed.get(s)
                if o is None:
                    continue
                mean, std = getattr(o, mean_key), getattr(o, std_key)
                x = j + (i - (len(methods) - 1) / 2) * width
                ax.errorbar([x], [mean], yerr=None if math.isnan(std) else [[std], [std]],
                            fmt="o", ms=6, capsize=3, color=f"C{i}",
                            mfc=f"C{i}" if getattr(o, flag_key) else "white",
                            label=method if j == 0 else None)
        ax.set_xticks(range(len(seeds)), [str(s) for s in seeds],
                      fontsize=7 if len(seeds) > 20 else 9)
        ax.set_xlabel(f"{result.config.task} task seed")
        ax.set_title(title + " (filled: rule met)", fontsize=9)
        ax.grid(alpha=0.3)
        if methods:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"suite {result.config.task}: {len(seeds)} tasks", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
