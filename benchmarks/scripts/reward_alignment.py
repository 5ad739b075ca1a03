"""Does the learned IRL reward rank samplers the way the task metric does?

For each finished training run (``diffgym train``), the run's final discriminator
(``reward_net.pt``) and reward transform score counterfactual variants of the run's own greedy
policy, sampled with common random numbers:

* ``default``: the plain Heun sampler;
* ``policy (greedy)``: the policy's most likely choices;
* ``policy (tau = 1, as trained)``: choices sampled from the policy, as during training;
* ``greedy, no churn``: the greedy policy with the churn knob set to 0 at every step;
* ``greedy, no guidance below σ_cut``: the greedy policy with the guidance knob set to 1 at every
  step whose noise level is below ``--sigma-cut`` (the late steps);
* ``greedy, w = W below σ_cut``: the same steps forced to guidance ``W`` (``--late-guidance``).

Per variant it reports the task metric (on mixtures ``sw2``, ``logp`` and ``mode_tv`` as in
:func:`diffgym.benchmarks.large_n_check.score`) and the episode return
under the run's reward (the sum over transitions of the transformed discriminator logit of the
state reached), split into the return of the late steps and of the final transition (state at
σ = 0, compared by the discriminator directly with clean data). A reward the policy can be
trusted to follow gives the higher return to the variant with the better metric.

    python benchmarks/scripts/reward_alignment.py --runs RUN_DIR [RUN_DIR ...] --n 2048 \
        --sigma-cut 0.03 --threads 1 \
        --out benchmarks/results/reward_alignment.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from diffgym.agents.policy_sampling import ACTION_SEED_OFFSET, PolicySampler
from diffgym.agents.train import load_policy, load_reward
from diffgym.benchmarks.evaluate import (
    METRIC_DIRECTIONS,
    crn_sample,
    reference_seed,
    task_metrics,
)
from diffgym.envs.io import atomic_write_json
from diffgym.envs.sampler import Knobs, PerSampleNoise


def _variants(greedy: PolicySampler, stochastic: PolicySampler, sigma_cut: float,
              late_w: float, n: int) -> dict[str, Callable[[int], object]]:
    """``name -> f(seed) -> action function`` of each variant (``None`` = the default sampler)."""
    late = greedy.sigmas < sigma_cut  # (N + 1,) by step index

    def forced(w: float):
        policy_act = greedy.actions()

        def act(x, step_index, budget, labels) -> Knobs:
            k = policy_act(x, step_index, budget, labels)
            g = k.guidance
            if g is None:
                g = torch.ones_like(greedy.sigmas[step_index])
            g = torch.where(late[step_index], torch.full_like(g, w), g)
            return Knobs(churn=k.churn, s_noise=k.s_noise, guidance=g, renoise=k.renoise)

        return lambda seed: act

    def sampled(seed: int):
        base = ACTION_SEED_OFFSET + seed  # the action noise PolicySampler.sample would use
        noise = PerSampleNoise([base + b for b in range(n)], device=stochastic.device)
        return stochastic.actions(noise)

    def no_churn(seed: int):
        policy_act = greedy.actions()

        def act(x, step_index, budget, labels) -> Knobs:
            k = policy_act(x, step_index, budget, labels)
            return Knobs(guidance=k.guidance, renoise=k.renoise)

        return act

    return {
        "default": lambda seed: None,
        "policy (greedy)": lambda seed: greedy.actions(),
        "policy (tau = 1, as trained)": sampled,
        "greedy, no churn": no_churn,
        f"greedy, no guidance below {sigma_cut:g}": forced(1.0),
        f"greedy, w = {late_w:g} below {sigma_cut:g}": forced(late_w),
    }


def evaluate_variant(sampler, reward, actions, *, n: int, seed: int, sigma_cut: float):
    """Metrics and reward returns of one variant on the CRN protocol of the comparison."""
    task, device = sampler.task, sampler.device
    visited: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recording(x, step_index, budget, labels_):
        visited.append((sampler.observe(x, step_index, budget, labels_), step_index.clone()))
        if actions is None:
            return Knobs()
        return actions(x, step_index, budget, labels_)

    with torch.inference_mode():
        result = crn_sample(
            task, recording, n=n, seed=seed, guided=task.guide is not None,
            renoise_budget=sampler.renoise_budget, device=device,
        )
        final_step = torch.full((n,), task.num_steps, dtype=torch.long, device=device)
        final_obs = sampler.observe(
            result.x, final_step, torch.zeros_like(final_step), result.labels
        )
        # Transition i is rewarded on the state it reaches: states 1..N.
        reached = [o for o, _ in visited[1:]] + [final_obs]
        steps = [s for _, s in visited[1:]] + [final_step]
        rewards = torch.stack([reward(o) for o in reached])  # (N, B)
        late = torch.stack([sampler.sigmas[s] < sigma_cut for s in steps])
    metrics = task_metrics(task, result.x, result.labels, seed=reference_seed(seed))
    return {
        "metrics": metrics,
        "nfe_per_sample": float(result.nfe.double().mean()),
        "return": float(rewards.sum(0).mean()),
        "return_late": float((rewards * late).sum(0).mean()),
        "reward_final": float(rewards[-1].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="finished run directories")
    p.add_argument("--n", type=int, default=2048, help="samples per variant and seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[10**6, 2 * 10**6, 3 * 10**6],
                   help="sample seeds (sample b of seed s uses noise seed s + b: keep them >= n "
                   "apart so that the seeds' samples do not overlap)")
    p.add_argument("--sigma-cut", type=float, default=0.03, help="late steps: sigma below this")
    p.add_argument("--late-guidance", type=float, default=3.0, help="W of the forced variant")
    p.add_argument("--metric", default="sw2", help="the task metric the reward is compared with")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="JSON output (atomic)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seeds = sorted(args.seeds)
    if any(b - a < args.n for a, b in zip(seeds, seeds[1:])):
        p.error(f"--seeds {args.seeds} overlap: keep them at least --n = {args.n} apart")
    if args.metric not in METRIC_DIRECTIONS:
        p.error(f"unknown metric {args.metric!r}; allowed: {', '.join(METRIC_DIRECTIONS)}")
    sign = 1.0 if METRIC_DIRECTIONS[args.metric] == "min" else -1.0
    report = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "runs": {}}
    report["args"]["runs"] = [str(r) for r in args.runs]
    for run_dir in args.runs:
        policy, task, cfg = load_policy(run_dir, device=args.device)
        sampler = PolicySampler(policy, task, device=args.device, greedy=True)
        stochastic = PolicySampler(policy, task, device=args.device, temperature=1.0)
        reward = load_reward(run_dir, device=args.device)
        rows = {}
        variants = _variants(sampler, stochastic, args.sigma_cut, args.late_guidance, args.n)
        for name, make_actions in variants.items():
            per_seed = [
                evaluate_variant(sampler, reward, make_actions(s), n=args.n, seed=s,
                                 sigma_cut=args.sigma_cut)
                for s in args.seeds
            ]
            values = [r["metrics"][args.metric] for r in per_seed]
            rows[name] = {
                "per_seed": per_seed,
                "metric_mean": statistics.fmean(values),
                "metric_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                **{k: statistics.fmean(r[k] for r in per_seed)
                   for k in ("return", "return_late", "reward_final", "nfe_per_sample")},
            }
        # Agreement: over all pairs of variants, does the higher return go with the better metric?
        names = list(rows)
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        agree = sum(
            (rows[a]["return"] > rows[b]["return"])
            == (sign * rows[a]["metric_mean"] < sign * rows[b]["metric_mean"])
            for a, b in pairs
        )
        report["runs"][str(run_dir)] = {
            "agent": cfg.agent, "divergence": cfg.divergence, "seed": cfg.seed,
            "variants": rows, "pairs_ranked_alike": f"{agree}/{len(pairs)}",
        }
        print(f"\n{run_dir} ({cfg.agent}+{cfg.irl}/{cfg.divergence}, seed {cfg.seed}); "
              f"pairs ranked alike by return and {args.metric}: {agree}/{len(pairs)}")
        print(f"{'variant':34s} {args.metric:>16s} {'return':>9s} {'late':>8s} {'final':>8s} "
              f"{'NFE':>6s}")
        for name, r in rows.items():
            metric = f"{r['metric_mean']:.4f} ± {r['metric_std']:.3f}"
            print(f"{name:34s} {metric:>16s} {r['return']:9.3f} {r['return_late']:8.3f} "
                  f"{r['reward_final']:8.3f} {r['nfe_per_sample']:6.1f}")
    if args.out is not None:
        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
