"""The comparison's verdict line is computed from the rows: who wins on quality (paired per-seed
differences, 95 % Student-t interval) and what each side cost (NFE and wall-clock) — including when
the learned sampler loses. Also: the main job's budget (``./run.sh``) resolves as intended."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from diffgym.agents.cost import Cost
from diffgym.benchmarks.compare import BUDGETS
from diffgym.benchmarks.grid import DEFAULT_N, GridResult, PointResult
from diffgym.benchmarks.report import ComparisonResult, ComparisonRow, t_quantile_975

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (1_000_000, 2_000_000, 3_000_000)


def _cost(nfe: int, seconds: float) -> Cost:
    return Cost(nfe=nfe, samples=1, seconds={"grid_point": seconds})


def _grid(points: int, nfe_each: int, seconds_each: float) -> GridResult:
    default = PointResult("d", "default", {}, {"mode_tv": 0.21}, _cost(nfe_each, seconds_each), {})
    churn = [
        PointResult(f"p{i}", "churn", {"s_churn": float(i)}, {"mode_tv": 0.22 + 0.001 * i},
                    _cost(nfe_each, seconds_each), {})
        for i in range(points)
    ]
    return GridResult(task={"name": "gmm2d-bias"}, n=2048, seed=0,
                      families={"churn": {"s_churn": [float(i) for i in range(points)]}},
                      points=[default, *churn], num_points=points + 1)


def _row(method: str, kind: str, values, cost: Cost, *, runs: int = 1,
         search: float | None = None) -> ComparisonRow:
    values = list(values)
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 \
        else float("nan")
    info = {} if search is None else {"search_metrics": {"mode_tv": search}}
    return ComparisonRow(
        method=method, kind=kind, detail="", metrics={"mode_tv": mean},
        metrics_std={"mode_tv": std},
        per_seed=[{"eval_seed": s, "metrics": {"mode_tv": v}} for s, v in zip(SEEDS, values)],
        nfe_per_sample=35.0, cost=cost, runs=runs, info=info,
    )


def _result(learned_values, grid_values, *, learned_cost: Cost, runs: int = 3,
            grid: GridResult | None = None) -> ComparisonResult:
    grid = grid if grid is not None else _grid(108, 71_680, 0.6)  # 7,741,440 NFE, 64.8 s
    rows = [
        _row("default", "default", [0.21] * len(grid_values), _cost(71_680, 0.6)),
        _row("grid/churn", "grid", grid_values, grid.total_cost(), search=0.22),
        _row("ppo+gail/js", "learned", learned_values, learned_cost, runs=runs),
    ]
    return ComparisonResult(task="gmm2d-bias", fingerprint={}, metric="mode_tv", direction="min",
                            metric_names=["mode_tv"], rows=rows, grid=grid, sigmas=[],
                            settings={"n_eval": 2048, "eval_seeds": list(SEEDS)})


def test_learned_wins_on_quality_and_the_costs_are_stated_both_ways():
    result = _result([0.088, 0.090, 0.086], [0.22, 0.23, 0.21],
                     learned_cost=_cost(1_500_000, 120.0))
    assert result.quality_call()[0] == "learned"
    v = result.verdict()
    assert v.startswith("verdict: the learned sampler (ppo+gail/js) WINS on quality against the "
                        "best grid point (grid/churn, best of 108 points on the search seed)")
    assert "excludes 0" in v and "over 3 seeds" in v
    # the costs as measured: fewer NFE but more wall-clock than the grid, both said plainly
    assert "learned 1,500,000 NFE and 120 s (3 training runs" in v
    assert "the full grid 7,741,440 NFE and 65 s" in v
    assert f"{7_741_440 / 1_500_000:.3g}× fewer NFE" in v
    assert f"{120.0 / 64.8:.3g}× more wall-clock" in v
    # one training run: 500,000 NFE and 40 s against the whole grid
    assert f"one training run: {7_741_440 / 500_000:.3g}× fewer NFE and " \
           f"{64.8 / 40.0:.3g}× less wall-clock" in v
    assert result.to_dict()["quality_winner"] == "learned"


def test_learned_loses_is_said_plainly():
    result = _result([0.25, 0.26, 0.25], [0.22, 0.23, 0.21], learned_cost=_cost(9_000_000, 30.0))
    assert result.quality_call()[0] == "grid"
    v = result.verdict()
    assert "the best grid point (grid/churn, best of 108 points on the search seed) WINS on " \
           "quality; the learned sampler (ppo+gail/js) LOSES" in v
    assert "× more NFE and " in v and "× less wall-clock" in v
    assert "WINS on quality against" not in v


def test_unresolved_differences_are_a_tie():
    # learned lower on average, but the per-seed differences disagree in sign
    result = _result([0.20, 0.24, 0.20], [0.22, 0.22, 0.22], learned_cost=_cost(1_000, 1.0))
    call, learned, grid_row = result.quality_call()
    assert call == "tie" and learned.method == "ppo+gail/js" and grid_row.method == "grid/churn"
    assert "TIE on quality" in result.verdict() and "contains 0" in result.verdict()


def test_one_seed_is_unresolved_whatever_the_sign():
    result = _result([0.05], [0.22], learned_cost=_cost(1_000, 1.0), runs=1)
    assert result.quality_call()[0] == "unresolved"
    v = result.verdict()
    assert "UNRESOLVED on quality" in v and "over 1 seed" in v and "one training run:" not in v


def test_the_interval_uses_student_t():
    assert t_quantile_975(1) == pytest.approx(12.706)
    assert t_quantile_975(2) == pytest.approx(4.303)
    assert t_quantile_975(50) == t_quantile_975(10)
    with pytest.raises(ValueError):
        t_quantile_975(0)
    # two seeds, a consistent but small difference: the wide t interval (df = 1) keeps it a tie
    result = _result([0.20, 0.21], [0.22, 0.22], learned_cost=_cost(1_000, 1.0))
    assert result.quality_call()[0] == "tie"


def _run_sh_arguments() -> list[str]:
    """The arguments ``./run.sh`` passes to ``python -m diffgym`` (its ``exec`` line)."""
    line = next(ln for ln in (ROOT / "run.sh").read_text().splitlines()
                if ln.startswith("exec python -m diffgym"))
    args = shlex.split(line)[4:]  # after "exec python -m diffgym"
    assert args[-1] == "$@", "extra arguments must pass through"
    return args[:-1]


def test_run_sh_runs_the_main_budget_on_the_bias_task(compare_config_of, tmp_path):
    from diffgym.cli import build_parser

    args = build_parser().parse_args([*_run_sh_arguments(), "--out", str(tmp_path)])
    config, main = compare_config_of(args), BUDGETS["main"]
    assert args.budget == "main" and config.task == "gmm2d-bias"
    # a grid sized like a real search: the full preset, scored on the full budget's sample size
    assert config.grid_points == "default" == BUDGETS["full"].grid_points
    assert config.n_eval == DEFAULT_N == BUDGETS["full"].n_eval
    assert config.seeds == main.seeds and len(config.seeds) >= 3  # paired differences resolvable
    assert config.timesteps == main.timesteps
    assert {"quick", "full"} <= set(BUDGETS)  # the other budgets stay


def test_per_run_deltas_pair_each_run_once_when_runs_have_several_seeds():
    from diffgym.benchmarks.report import per_run_deltas

    # one run on three seeds: three pairs (its sampling noise); three runs on one seed each: three
    assert per_run_deltas([0.1, 0.2, 0.3], [0, 0, 0]) == [0.1, 0.2, 0.3]
    assert per_run_deltas([0.1, 0.2, 0.3], [0, 1, 2]) == [0.1, 0.2, 0.3]
    # two runs on two seeds each: one pair per run, the mean over its seeds
    assert per_run_deltas([0.1, 0.3, 1.0, 2.0], [0, 0, 1, 1]) == pytest.approx([0.2, 1.5])
    assert per_run_deltas([0.1, 0.3], [None, None]) == [0.1, 0.3]  # fixed samplers: every seed
    with pytest.raises(ValueError):
        per_run_deltas([0.1, 0.3], [0])


def test_two_runs_with_two_seeds_each_are_paired_per_run():
    """The repeats of one run share its training noise: pooling them as four independent pairs
    would call a difference resolved that two runs cannot resolve."""
    from diffgym.benchmarks.report import paired_interval

    seeds = (1_000_000, 1_000_000_000 + 1_000_000, 2_000_000, 1_000_000_000 + 2_000_000)
    values = [0.10, 0.11, 0.30, 0.31]  # run 0 and run 1, two seeds each; the grid scores 0
    result = _result(values[:3], [0.0] * 3, learned_cost=_cost(1_500_000, 120.0), runs=2)
    learned, grid_row = result.row("ppo+gail/js"), result.row("grid/churn")
    learned.per_seed = [{"eval_seed": s, "train_seed": k, "metrics": {"mode_tv": v}}
                        for s, k, v in zip(seeds, (0, 0, 1, 1), values)]
    grid_row.per_seed = [{"eval_seed": s, "metrics": {"mode_tv": 0.0}} for s in seeds]
    deltas, mean, std = result.paired_delta(learned)
    assert deltas == pytest.approx([0.105, 0.305]) and mean == pytest.approx(0.205)
    pooled_mean, _, pooled_half = paired_interval(values)
    assert pooled_mean > pooled_half  # four pooled pairs would resolve it: 'grid'
    assert result.quality_call()[0] == "tie"  # two runs do not
    v = result.verdict()
    assert "over 2 training runs (mean over each run's seeds)" in v
    assert "(2 training runs, their first evaluations included)" in v
