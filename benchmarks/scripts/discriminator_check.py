"""Does the sigma-conditioned discriminator learn the exact log density ratio?

On analytic Gaussian mixtures every noised density ``p_sigma = p * N(0, sigma^2 I)`` is exact
(:meth:`GaussianMixture.log_prob`). The discriminator of :mod:`diffgym.rewards` is trained alone
(no policy) with logistic loss to tell samples of ``p1_sigma`` (label 1, "expert") from
``p2_sigma`` (label 0), jointly over several noise levels of the env's schedule, with states
featurised exactly like env observations. At the optimum its logit is
``log p1_sigma(x) - log p2_sigma(x)``; per sigma we report the Pearson correlation and the RMSE
between the two on fresh samples (half from each mixture), plus the spread of the exact ratio.

Pairs (``--pair``):

* ``bias`` (default): ``p1`` = the data of ``gmm2d-bias`` (5x5 grid, std 0.15, mode weights
  proportional to column + 1), ``p2`` = its model's equal-weight mixture, i.e. what the
  discriminator faces when a sampler reproduces the model exactly. The ratio is bounded
  (``log(1/3)..log(5/3)`` at small sigma) and shrinks towards 0 as sigma grows.
* ``blur``: ``p1`` = the ``gmm2d`` data (std 0.15), ``p2`` = its blurred model (std 0.5). At small
  sigma the exact ratio reaches -60 between modes where ``p1`` has no samples: a stress test of
  the extremes (the reward transforms clip there, see :mod:`diffgym.rewards.divergences`).

Usage::

    python benchmarks/scripts/discriminator_check.py                 # full run, writes the JSON
    python benchmarks/scripts/discriminator_check.py --quick         # tiny smoke run

The JSON (``--out``, default ``benchmarks/results/discriminator_check.json``) is written
atomically; the markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from diffgym.envs.denoisers import GaussianMixture
from diffgym.envs.env import DiffusionSamplingEnv
from diffgym.envs.features import featurize
from diffgym.envs.io import atomic_write_json
from diffgym.envs.tasks import bias_weights, grid_means
from diffgym.rewards import NoiseConditionedDiscriminator

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "discriminator_check.json"
PAIRS = ("bias", "blur")
FULL_STEPS = (5, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
"""Schedule steps of the full run (N = 18): sigma from 12.9 down to 0.002, and clean data."""
QUICK_STEPS = (9, 11, 13, 15)
"""Schedule steps of the fast check: sigma = 1.92, 0.585, 0.140, 0.0229."""
PASS_PEARSON = 0.95


@dataclass(frozen=True)
class CheckConfig:
    """Settings of one run; validated on construction.

    Args:
        pair: ``"bias"`` or ``"blur"`` (see the module docstring).
        steps: schedule step indices of the noise levels (``N`` = the task's 18 steps).
        train_steps: Adam steps on the discriminator.
        batch_size: samples per mixture per step (drawn at random noise levels of ``steps``).
        eval_samples: samples per mixture per noise level for the evaluation.
        lr: Adam learning rate (cosine-decayed to 0).
        seed: seed of the data, noise and network initialisation.
    """

    pair: str = "bias"
    steps: tuple[int, ...] = FULL_STEPS
    train_steps: int = 4000
    batch_size: int = 512
    eval_samples: int = 4000
    lr: float = 1e-3
    seed: int = 0
    hidden_sizes: tuple[int, ...] = field(default=(256, 256, 256))

    def __post_init__(self) -> None:
        if self.pair not in PAIRS:
            raise ValueError(f"unknown pair {self.pair!r}; valid pairs: {', '.join(PAIRS)}")
        if not self.steps or any(not 0 <= s <= 18 for s in self.steps):
            raise ValueError(f"steps must be non-empty indices in 0..18, got {self.steps}")
        for name in ("train_steps", "batch_size", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def mixtures(pair: str) -> tuple[GaussianMixture, GaussianMixture, str]:
    """``(p1, p2, env task name)`` of a pair."""
    means = grid_means()
    if pair == "bias":
        return GaussianMixture(means, 0.15, bias_weights()), GaussianMixture(means, 0.15), (
            "gmm2d-bias"
        )
    return GaussianMixture(means, 0.15), GaussianMixture(means, 0.5), "gmm2d"


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


class _Sampler:
    """Noised samples of a mixture at schedule steps, featurised like the env's observations."""

    def __init__(self, env: DiffusionSamplingEnv, generator: torch.Generator) -> None:
        self.env = env
        self.g = generator
        self.budget = torch.zeros(1)  # gmm2d(-bias) observations at a full budget / no renoise
        if env.renoise_budget > 0:
            self.budget = torch.ones(1)

    def draw(
        self, mixture: GaussianMixture, step: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(obs (B, obs_dim), x (B, 2) float64, sigma (B,) float64)`` for steps ``(B,)``."""
        n = step.shape[0]
        x0, _ = mixture.sample(n, self.g, dtype=torch.float64)
        sigma = self.env.sigmas.double()[step]
        x = x0 + sigma[:, None] * torch.randn(x0.shape, generator=self.g, dtype=torch.float64)
        obs = featurize(
            x.float(),
            sigma.float(),
            step.float() / self.env.num_steps,
            self.budget.expand(n),
            None,
            sigma_data=self.env.task.sigma_data,
            num_classes=0,
        )
        return obs, x, sigma


def run_check(config: CheckConfig, *, progress: bool = False) -> dict:
    """Train a discriminator on ``config.pair`` and evaluate it per noise level.

    Returns:
        ``{"config", "rows": [{"step", "sigma", "pearson", "rmse", "ratio_std"}], "train_s"}``.
    """
    torch.manual_seed(config.seed)  # network initialisation
    g = torch.Generator().manual_seed(config.seed)
    p1, p2, task = mixtures(config.pair)
    env = DiffusionSamplingEnv(task, 1)
    disc = NoiseConditionedDiscriminator.for_env(env, hidden_sizes=config.hidden_sizes)
    sampler = _Sampler(env, g)
    steps = torch.tensor(config.steps, dtype=torch.long)
    opt = torch.optim.Adam(disc.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.train_steps)
    labels = torch.cat([torch.ones(config.batch_size), torch.zeros(config.batch_size)])

    t0 = time.perf_counter()
    for it in range(config.train_steps):
        idx = torch.randint(0, len(steps), (2, config.batch_size), generator=g)
        obs1, _, _ = sampler.draw(p1, steps[idx[0]])
        obs2, _, _ = sampler.draw(p2, steps[idx[1]])
        logits = disc.logit(torch.cat([obs1, obs2]))
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress and (it + 1) % max(1, config.train_steps // 10) == 0:
            print(f"  step {it + 1}/{config.train_steps}  loss {loss.item():.4f}", file=sys.stderr)
    train_s = time.perf_counter() - t0

    rows = []
    disc.eval()
    with torch.no_grad():
        for step in config.steps:
            s = torch.full((config.eval_samples,), step, dtype=torch.long)
            obs1, x1, sig = sampler.draw(p1, s)
            obs2, x2, _ = sampler.draw(p2, s)
            logit = disc.logit(torch.cat([obs1, obs2])).double()
            x, sigma = torch.cat([x1, x2]), torch.cat([sig, sig])
            exact = p1.log_prob(x, sigma) - p2.log_prob(x, sigma)
            rows.append(
                {
                    "step": int(step),
                    "sigma": float(env.sigmas[step]),
                    "pearson": pearson(logit, exact),
                    "rmse": float((logit - exact).pow(2).mean().sqrt()),
                    "ratio_std": float(exact.std()),
                }
            )
    return {"config": asdict(config), "rows": rows, "train_s": round(train_s, 2)}


def markdown_table(result: dict) -> str:
    lines = [
        "| step | sigma | Pearson | RMSE | std of exact log-ratio | Pearson >= 0.95 |",
        "|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in result["rows"]:
        ok = "yes" if r["pearson"] >= PASS_PEARSON else "**no**"
        lines.append(
            f"| {r['step']} | {r['sigma']:.4g} | {r['pearson']:.4f} | {r['rmse']:.4f} | "
            f"{r['ratio_std']:.3f} | {ok} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", choices=PAIRS, action="append",
                        help="mixture pair(s) to check (repeatable; default: bias and blur)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run (4 noise levels, 300 steps) for smoke tests")
    parser.add_argument("--steps", type=lambda v: tuple(int(s) for s in v.split(",")),
                        default=None, help="comma-separated schedule steps (default: full set)")
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--eval-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--progress", action="store_true", help="print the training loss")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    base = (
        {"steps": QUICK_STEPS, "train_steps": 300, "batch_size": 128, "eval_samples": 500,
         "hidden_sizes": (128, 128)}
        if args.quick else {}
    )
    for key in ("steps", "train_steps", "batch_size", "eval_samples"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    pairs = args.pair or list(PAIRS)
    command = "python benchmarks/scripts/discriminator_check.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    results = []
    for pair in pairs:
        config = CheckConfig(pair=pair, seed=args.seed, **base)
        result = run_check(config, progress=args.progress)
        results.append(result)
        print(f"\n### pair `{pair}` ({config.train_steps} steps x {config.batch_size} per "
              f"mixture, {config.eval_samples} eval samples per mixture per sigma, "
              f"train {result['train_s']} s)\n")
        print(markdown_table(result))
    payload = {
        "command": command.strip(),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor()}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "results": results,
        "all_pass": all(r["pearson"] >= PASS_PEARSON for res in results for r in res["rows"]),
    }
    atomic_write_json(args.out, payload)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
