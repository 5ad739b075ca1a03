"""The ``diffgym`` command line (also ``python -m diffgym``)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from diffgym.cli_args import (
    add_fid_argument,
    add_inference_guard_arguments,
    add_user_task_arguments,
    device_arg,
    finite_float,
    policy_option,
    policy_overrides,
    reward_option,
    user_task_overrides,
)
from diffgym.commands import (
    report_samples,
    run_demo,
    torch_generator,
    train_section,
    with_fid_weights,
)
from diffgym.tables import print_table

__all__ = ["main", "build_parser"]

log = logging.getLogger("diffgym")


# --------------------------------------------------------------------------------------------
# train-denoiser
# --------------------------------------------------------------------------------------------


def _add_train_denoiser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-denoiser",
        help="train an embedded denoiser (and its autoguidance snapshot) and write package data",
    )
    p.add_argument(
        "task", choices=["digits", "gmm2d-net", "cmix"], help="which embedded denoiser to train"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: package assets)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped)")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    p.set_defaults(func=_run_train_denoiser)


def _run_train_denoiser(args: argparse.Namespace) -> int:
    from diffgym.envs.train_denoiser import train_digits_denoiser
    from diffgym.envs.train_mixture import train_mixture_denoiser

    kwargs = {} if args.steps is None else {"steps": args.steps}
    if args.task == "digits":
        info = train_digits_denoiser(
            args.out, seed=args.seed, progress=not args.no_progress, **kwargs
        )
    else:
        info = train_mixture_denoiser(
            args.task, args.out, seed=args.seed, progress=not args.no_progress, **kwargs
        )
    print(f"trained {args.task} denoiser: {info}")
    return 0


# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample a task with a fixed per-step schedule (or a trained policy) and evaluate",
    )
    p.add_argument("--task", default=None, help="task name (see `diffgym tasks`; default gmm2d)")
    p.add_argument("--n", type=int, default=4096, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-steps", type=int, default=None, help="sampler steps (task default)")
    p.add_argument("--churn", type=float, default=0.0, help="constant churn gamma")
    p.add_argument("--s-noise", type=float, default=1.0, help="S_noise applied with churn")
    p.add_argument("--guidance", type=float, default=1.0, help="constant guidance weight w")
    p.add_argument("--device", type=device_arg, default="cpu")
    p.add_argument(
        "--per-sample-noise",
        action="store_true",
        help="one generator per sample (seed + index): results independent of --n",
    )
    add_user_task_arguments(p)
    p.add_argument("--policy", type=Path, default=None, metavar="RUN_DIR",
                   help="sample with the trained policy of a `diffgym train` run directory")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--temperature", type=finite_float, default=None,
                      help="logit temperature of the policy's choices (with --policy; default 1)")
    mode.add_argument("--greedy", action="store_true", help="the policy's most likely choices")
    p.add_argument("--mean-action", action="store_true",
                   help="each continuous knob at its expected level under the policy at the "
                   "temperature (integer knobs: most likely); deterministic (with --policy)")
    p.add_argument("--out", type=Path, default=Path("runs/sample"), help="output folder")
    add_fid_argument(p)
    p.set_defaults(func=_run_sample)


def _run_sample(args: argparse.Namespace) -> int:
    if args.policy is not None:
        return _run_policy_sample(args)
    if args.temperature is not None or args.greedy or args.mean_action:
        raise ValueError("--temperature, --greedy and --mean-action choose a policy's actions: "
                         "give --policy")
    from diffgym.envs import BatchNoise, PerSampleNoise, make_task, sample, schedule_actions

    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    task_name, overrides = user_task_overrides(args.task or "gmm2d", args)
    if args.num_steps is not None:
        overrides["num_steps"] = args.num_steps
    task = with_fid_weights(make_task(task_name, device=args.device, **overrides), args.fid_weights)
    if args.guidance != 1.0 and task.guide is None:
        raise ValueError(f"task {task.name!r} has no guidance source; --guidance must be 1")
    n_steps = task.num_steps
    noise = (
        PerSampleNoise(range(args.seed, args.seed + args.n), device=args.device)
        if args.per_sample_noise
        else BatchNoise(args.n, device=args.device, seed=args.seed)
    )
    labels = task.sample_labels(args.n, torch_generator(args.seed))
    if labels is not None:
        labels = labels.to(args.device)
    t0 = time.perf_counter()
    result = sample(
        task.denoiser,
        task.sigmas(args.device),
        noise=noise,
        data_shape=task.data_shape,
        labels=labels,
        guide=task.guide if args.guidance != 1.0 else None,
        actions=schedule_actions(
            churn=[args.churn] * n_steps,
            s_noise=[args.s_noise] * n_steps,
            guidance=[args.guidance] * n_steps,
        ),
    )
    seconds = time.perf_counter() - t0
    return report_samples(task, result, seconds, f"churn={args.churn:g} w={args.guidance:g}",
                          "samples", n=args.n, seed=args.seed, out=args.out)


def _run_policy_sample(args: argparse.Namespace) -> int:
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_policy

    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    given = [f for f, v in (("--task", args.task), ("--task-seed", args.task_seed),
                            ("--num-steps", args.num_steps),
                            ("--denoiser", args.denoiser), ("--data", args.data),
                            ("--guide", args.guide)) if v is not None]
    if given or args.churn or args.guidance != 1.0:
        given += ["--churn"] * bool(args.churn) + ["--guidance"] * (args.guidance != 1.0)
        raise ValueError(
            f"{', '.join(given)} cannot apply with --policy: the run's task, schedule and menus "
            "are used"
        )
    policy, task, cfg = load_policy(args.policy, device=args.device)
    task = with_fid_weights(task, args.fid_weights)
    temperature = 1.0 if args.temperature is None else args.temperature
    if args.greedy and args.mean_action:
        raise ValueError("--greedy and --mean-action are exclusive: give one inference rule")
    sampler = PolicySampler(policy, task, device=args.device, greedy=args.greedy,
                            temperature=temperature, mean_action=args.mean_action)
    t0 = time.perf_counter()
    result = sampler.sample(args.n, seed=args.seed, per_sample=args.per_sample_noise)
    seconds = time.perf_counter() - t0
    mode = "greedy" if args.greedy else f"mean, tau={temperature:g}" if args.mean_action else (
        f"tau={temperature:g}")
    label = f"{cfg.agent}+{cfg.irl}/{cfg.divergence} ({mode})"
    return report_samples(task, result, seconds, label, "policy_samples", n=args.n,
                          seed=args.seed, out=args.out)


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="learn a sampling policy with adversarial IRL (GAIL/AIRL) and an RL agent",
    )
    p.add_argument("--task", default=None, help="task name (default gmm2d)")
    p.add_argument("--agent", default=None, help="ppo | reinforce | a2c | trpo (default ppo)")
    p.add_argument("--irl", default=None, help="gail | airl | none (default gail)")
    p.add_argument("--divergence", default=None, help="js | rkl | fkl | chi2 | pr (default js)")
    p.add_argument("--lam", type=finite_float, default=None, help="lambda of the pr divergence")
    p.add_argument("--timesteps", type=int, default=None, help="env transitions in all")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--n-envs", type=int, default=None, help="sub-envs (default: YAML or 64)")
    p.add_argument("--device", type=device_arg, default=None, help="cpu | cuda")
    p.add_argument("--checkpoint-every", type=int, default=None, help="rounds per checkpoint")
    p.add_argument("--keep-checkpoints", type=_keep_checkpoints, default=None, metavar="K",
                   help="keep the newest K checkpoints (default 3), or 'all'")
    p.add_argument("--keep-milestones", type=int, default=None, metavar="M",
                   help="also write and keep the M checkpoints that split the run into equal "
                   "parts (default 0), e.g. to choose one later with load_policy(run, round=R)")
    p.add_argument("--eval-every", type=int, default=None, help="rounds per evaluation (0: end)")
    p.add_argument("--eval-samples", type=int, default=None)
    p.add_argument("--nfe-penalty", type=finite_float, default=None,
                   help="reward -penalty x NFE")
    p.add_argument("--ent-coef", type=finite_float, default=None,
                   help="entropy bonus (temperature)")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (must be new)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--config", type=Path, default=None,
                   help="a run's config.json: reproduce that run (flags override it)")
    p.add_argument("--wandb", action="store_true", help="log to wandb (offline without login)")
    p.add_argument("--no-progress", action="store_true")
    add_user_task_arguments(p)
    p.set_defaults(func=_run_train)


_TRAIN_FLAGS = {
    "task": "task", "agent": "agent", "irl": "irl", "divergence": "divergence", "lam": "lam",
    "timesteps": "timesteps", "seed": "seed", "n_envs": "n_envs", "device": "device",
    "checkpoint_every": "checkpoint_every", "keep_milestones": "keep_milestones",
    "eval_every": "eval_every",
    "eval_samples": "eval_samples", "nfe_penalty": "nfe_penalty",
}


def _keep_checkpoints(text: str) -> int | str:
    """``--keep-checkpoints``: an int >= 1, or ``all`` (kept as the string; None in the config)."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1 or 'all', got {text!r}")
    return value


def _run_train(args: argparse.Namespace) -> int:
    from diffgym.agents.train import TrainConfig, TrainingRun
    from diffgym.benchmarks.evaluate import TrainingEvaluator

    if args.resume is not None:
        given = [f"--{f.replace('_', '-')}" for f in (*_TRAIN_FLAGS, "keep_checkpoints",
                 "ent_coef", "run_dir", "config", "denoiser", "data", "guide", "task_seed")
                 if getattr(args, f) is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} cannot apply with --resume: a resumed run keeps the settings "
                f"in its config.json ({Path(args.resume) / 'config.json'})"
            )
        run = TrainingRun(None, args.resume, resume=True, progress=not args.no_progress,
                          use_wandb=args.wandb, evaluator=TrainingEvaluator())
    else:
        if args.run_dir is None:
            raise ValueError("--run-dir is required for a new run (or pass --resume RUN_DIR)")
        base: dict = {}
        if args.config is not None:
            base = train_section(Path(args.config))
        for flag, key in _TRAIN_FLAGS.items():
            value = getattr(args, flag)
            if value is not None:
                base[key] = value
        task_name, user = user_task_overrides(base.get("task"), args)
        if user:
            base["task"] = task_name
            base["task_overrides"] = {**base.get("task_overrides", {}), **user}
        if args.keep_checkpoints is not None:
            base["keep_checkpoints"] = None if args.keep_checkpoints == "all" else (
                args.keep_checkpoints
            )
        if args.ent_coef is not None:
            base["agent_overrides"] = {**base.get("agent_overrides", {}),
                                       "ent_coef": args.ent_coef}
        run = TrainingRun(TrainConfig.from_dict(base), args.run_dir,
                          progress=not args.no_progress, use_wandb=args.wandb,
                          evaluator=TrainingEvaluator())
    final = run.train()
    rows = [{"run": str(run.run_dir), **final, "rollout_nfe": float(run.venv.total_nfe)}]
    print_table(f"{run.config.agent}+{run.config.irl}/{run.config.divergence} on "
                 f"{run.config.task}", rows)
    return 0


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="short sampling demo on gmm2d: plain Heun vs a few fixed samplers"
    )
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.set_defaults(func=lambda args: run_demo(args.n, args.seed, args.out))


# --------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the embedded tasks and their gym ids")
    p.set_defaults(func=_run_tasks)


def _run_tasks(args: argparse.Namespace) -> int:
    from diffgym import ENV_IDS
    from diffgym.envs import list_tasks

    width = max(len(name) for name in list_tasks())  # one column for every name
    for env_id, name in ENV_IDS.items():
        print(f"{name:{width}s} {env_id}")
    usage = {"gmm2d-random": "--task gmm2d-random --task-seed K", "user": "--denoiser D --data X"}
    for name in sorted(set(list_tasks()) - set(ENV_IDS.values())):
        print(f"{name:{width}s} (no gym id: {usage.get(name, '--task ' + name)})")
    return 0


# --------------------------------------------------------------------------------------------
# plumbing
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# grid
# --------------------------------------------------------------------------------------------

_AXIS_OPTIONS = {
    "s_churn": "S_churn values (churn family)",
    "s_min": "S_min values (churn family)",
    "s_max": "S_max values (churn family)",
    "s_noise": "S_noise values (churn family)",
    "w": "guidance weights (guidance and interval families)",
    "sigma_lo": "interval lower sigma values (interval family)",
    "sigma_hi": "interval upper sigma values (interval family)",
    "num_steps": "numbers of steps (schedule family)",
    "rho": "EDM rho values (schedule family)",
}


def _add_grid(sub: argparse._SubParsersAction) -> None:
    from diffgym.benchmarks.grid import BACKENDS, DEFAULT_N, FAMILIES

    p = sub.add_parser(
        "grid",
        help="grid-search baseline samplers (EDM churn, guidance, guidance interval; the "
        "schedule N x rho when named) with common random numbers; resumable",
    )
    p.add_argument("--task", default="gmm2d", help="task name (see `diffgym tasks`)")
    p.add_argument("--families", nargs="+", default=None, metavar="FAMILY",
                   help=f"families to search, of {', '.join(FAMILIES)} (default: all the task "
                   "supports)")
    p.add_argument("--points", default="default", help="grid preset: small or default")
    for axis, text in _AXIS_OPTIONS.items():
        p.add_argument(f"--{axis.replace('_', '-')}", dest=axis, nargs="+", type=finite_float,
                       default=None, metavar="V", help=f"explicit {text}, replacing the preset")
    p.add_argument("--n", type=int, default=DEFAULT_N, help="samples per point")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (common random numbers)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/grid/TASK)")
    p.add_argument("--backend", default="local", help=f"one of {', '.join(BACKENDS)}")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs (ray) or torch threads (local)")
    p.add_argument("--metric", default=None, help="metric that picks the best point (task default)")
    p.add_argument("--device", type=device_arg, default="cpu")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    add_user_task_arguments(p)
    add_fid_argument(p)
    p.set_defaults(func=_run_grid)


def _run_grid(args: argparse.Namespace) -> int:
    """Evaluate the grid, print the best point per family and the cost."""
    from diffgym.benchmarks.evaluate import (
        METRIC_DIRECTIONS,
        default_metric,
        measured_metrics,
        with_fid,
    )
    from diffgym.benchmarks.grid import make_families, print_grid_table, run_grid
    from diffgym.envs import make_task

    task_name, overrides = user_task_overrides(args.task, args)
    task = make_task(task_name, device=args.device, **overrides)
    if args.fid_weights is not None:
        with_fid(task, args.fid_weights)
    families = make_families(
        task, args.families, points=args.points,
        **{axis: getattr(args, axis) for axis in _AXIS_OPTIONS},
    )
    metric = args.metric or default_metric(task)
    if metric not in METRIC_DIRECTIONS:
        raise ValueError(
            f"unknown metric {metric!r}; allowed: {', '.join(sorted(METRIC_DIRECTIONS))}"
        )
    if metric not in (measured := measured_metrics(task)):
        raise ValueError(
            f"metric {metric!r} is not measured on task {task.name!r}; measured: "
            f"{', '.join(measured)}"
            + (" (fid and the *_inception metrics need --fid-weights)" if "fid" in metric
               or "inception" in metric else "")
        )
    out = args.out if args.out is not None else Path("runs/grid") / task.name
    result = run_grid(
        task, families, n=args.n, seed=args.seed, out_dir=out, backend=args.backend,
        num_cpus=args.num_cpus, device=args.device, progress=not args.no_progress,
    )
    print_grid_table(result, metric)
    print(f"wrote {out / 'grid.json'} and {out / 'grid.csv'}")
    return 0


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


def _add_budget_arguments(p: argparse.ArgumentParser) -> None:
    """The learner and budget flags of ``compare`` and ``suite`` (a flag wins over --budget)."""
    from diffgym.benchmarks.grid import FAMILIES

    p.add_argument("--budget", default="full",
                   help="main (./run.sh: full grid, 3 short training runs), quick (minutes, "
                   "smoke-sized) or full (default)")
    p.add_argument("--agents", nargs="+", default=["ppo"], metavar="AGENT")
    p.add_argument("--divergences", nargs="+", default=["js"], metavar="DIV")
    p.add_argument("--irl", default="gail", help="gail | airl | none")
    p.add_argument("--reward-option", type=reward_option, action="append", default=[],
                   metavar="NAME=VALUE", dest="reward_options",
                   help="a named reward option for every training run, e.g. "
                   "terminal_mmd_weight=5 (repeatable; default: none)")
    p.add_argument("--policy-option", type=policy_option, action="append", default=[],
                   metavar="NAME=VALUE", dest="policy_options",
                   help="a policy setting for every training run, winning over the task's YAML: "
                   "sample_input=false (a time-only policy: its choices ignore the sample), "
                   "features_dim, hidden, sigma_freqs or neutral_bias (repeatable)")
    add_inference_guard_arguments(p)
    p.add_argument("--inference-candidates", nargs="+", default=None, metavar="RULE",
                   help="the inference rules a learned run chooses among on the search seed: "
                   "greedy, mean (the mean action) or a temperature > 0, each optionally with "
                   "reshapings after ':' (mean:f=2,cut=1,smin=0.3: w - 1 scaled by f, no "
                   "guidance above sigma = cut, the schedule ending at sigma_min = smin) "
                   "(default: greedy 1)")
    p.add_argument("--select-checkpoints", type=int, default=1, metavar="K",
                   help="K > 1: keep K milestone checkpoints of each training run (its length "
                   "in K equal parts) and choose the checkpoint with the temperature on the "
                   "search seed, every candidate's evaluation counted in the learned cost "
                   "(default 1: the final model)")
    p.add_argument("--selection-n", type=int, default=None, metavar="N",
                   help="samples of each search-seed evaluation that chooses a learned run's "
                   "temperature (and checkpoint), counted in its cost (default: --n-eval)")
    p.add_argument("--step-advances", nargs="+", type=int, default=None, metavar="A",
                   help="give every task the step knob with this menu of advances along its "
                   "schedule (entry 0 is the neutral advance and the base grid's refinement), "
                   "e.g. 1 18: a 'finish now' action that jumps to sigma = 0 from any step of an "
                   "18-step schedule (default: no step knob)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (budget)")
    p.add_argument("--eval-repeats", type=int, default=1, metavar="R",
                   help="evaluation seeds per training run (default 1; > 1 needs seeds < 1000; "
                   "only the first evaluation counts in the learned cost)")
    p.add_argument("--timesteps", type=int, default=None, help="training steps per run (budget)")
    p.add_argument("--n-eval", type=int, default=None, help="samples per evaluation (budget)")
    p.add_argument("--grid-points", default=None, help="grid preset small | default (budget)")
    p.add_argument("--families", nargs="+", default=None, metavar="FAMILY",
                   help=f"grid families, of {', '.join(FAMILIES)} (default: all the task has)")
    p.add_argument("--device", type=device_arg, default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (main and quick budgets: 1; full: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="disable progress bars")


def _budget_settings(args: argparse.Namespace) -> tuple[dict, int | None]:
    """``(CompareConfig fields, torch threads)`` from the budget flags: ``--budget`` resolved,
    each explicit flag winning over it."""
    from diffgym.benchmarks.compare import BUDGETS

    if args.budget not in BUDGETS:
        raise ValueError(f"unknown budget {args.budget!r}; allowed: {', '.join(BUDGETS)}")
    budget = BUDGETS[args.budget]
    threads = args.threads if args.threads is not None else budget.threads
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    return dict(
        agents=tuple(args.agents),
        divergences=tuple(args.divergences),
        seeds=tuple(args.seeds) if args.seeds is not None else budget.seeds,
        irl=args.irl,
        timesteps=args.timesteps if args.timesteps is not None else budget.timesteps,
        n_eval=args.n_eval if args.n_eval is not None else budget.n_eval,
        grid_families=tuple(args.families) if args.families is not None else None,
        grid_points=args.grid_points or budget.grid_points, eval_repeats=args.eval_repeats,
        device=args.device,
        overhead_repeats=budget.overhead_repeats,
        reward_options=_reward_options(args.reward_options),
        agent_overrides=policy_overrides(args.policy_options),
        inference_guard=args.inference_guard,
        inference_guard_tolerance=args.inference_guard_tolerance,
        inference_guard_se=args.inference_guard_se,
        inference_fallback=tuple(args.inference_fallback),
        **({} if args.inference_candidates is None
           else {"inference_candidates": tuple(args.inference_candidates)}),
        select_checkpoints=args.select_checkpoints,
        selection_n=args.selection_n,
    ), threads


def _step_menu(args: argparse.Namespace) -> dict:
    """``--step-advances`` as ``make_task`` overrides (``{}`` without it); the menu itself is
    checked by the task (``validate_step_menu``: integers in range, entry 0 the factor)."""
    if args.step_advances is None:
        return {}
    return {"step_advances": tuple(args.step_advances)}


def _reward_options(pairs: list[tuple[str, float | bool]]) -> dict[str, float | bool]:
    """``--reward-option`` pairs as a dict; ``ValueError`` for a name given twice."""
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"--reward-option {', '.join(twice)} given more than once; give each "
                         "option once")
    return dict(pairs)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    from diffgym.benchmarks.grid import BACKENDS

    p = sub.add_parser(
        "compare",
        help="learned sampling policies vs the default and grid-searched samplers: one table, "
        "costs, plots (resumable)",
    )
    p.add_argument("--task", default="gmm2d", help="task name (see `diffgym tasks`)")
    _add_budget_arguments(p)
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/compare/TASK-BUDGET)")
    p.add_argument("--backend", default="local", help=f"grid backend: {', '.join(BACKENDS)}")
    p.add_argument("--wandb", action="store_true", help="log the table and plots to wandb")
    add_user_task_arguments(p)
    add_fid_argument(p)
    p.set_defaults(func=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    """Run the comparison; print the markdown table and the verdict."""
    import torch

    from diffgym.benchmarks.compare import CompareConfig, run_comparison

    settings, threads = _budget_settings(args)
    if threads is not None:
        torch.set_num_threads(threads)
    task_name, task_overrides = user_task_overrides(args.task, args)
    task_overrides = {**task_overrides, **_step_menu(args)}
    out = args.out if args.out is not None else Path("runs/compare") / f"{task_name}-{args.budget}"
    config = CompareConfig(
        task=task_name, task_overrides=task_overrides, out_dir=out, backend=args.backend,
        wandb=args.wandb, fid_weights=args.fid_weights, heldout=args.heldout, **settings,
    )
    result = run_comparison(config, progress=not args.no_progress)
    print(result.to_markdown())
    reused = result.grid.num_reused or (
        result.num_trained < len(config.seeds) * len(config.agents) * len(config.divergences))
    print(f"wrote {out}/results.{{json,csv,md}} and PNGs in {result.seconds:.0f} s"
          + (f" (reused from {out}: {result.grid.num_reused} grid points; trained now: "
             f"{result.num_trained} runs; costs are those measured when each part ran)"
             if reused else ""))
    return 0


# --------------------------------------------------------------------------------------------
# suite
# --------------------------------------------------------------------------------------------


def _add_suite(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "suite",
        help="the comparison over a list of task seeds (gmm2d-random), aggregated into one "
        "table, one plot and a verdict per learned method (resumable)",
    )
    p.add_argument("--task", default="gmm2d-random",
                   help="a task that takes a seed (default gmm2d-random)")
    p.add_argument("--task-seeds", nargs="+", required=True, metavar="K",
                   help="task seeds: ints and ranges, e.g. 0-9 12 (ranges include both ends)")
    p.add_argument("--split", default="dev",
                   help="dev (default: development seeds, 0-99 on gmm2d-random) or heldout "
                   "(1000-1099: the final evaluation only); every seed must lie in the split. "
                   "Ignored for tasks without a seed split")
    _add_budget_arguments(p)
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/suite/TASK-SPLIT-BUDGET); one comparison "
                   "per task in OUT/TASK-SEED")
    p.set_defaults(func=_run_suite)


def _run_suite(args: argparse.Namespace) -> int:
    """Run the suite; print its tables and verdict lines."""
    from diffgym.benchmarks.suite import SuiteConfig, parse_task_seeds, run_suite

    settings, threads = _budget_settings(args)
    out = args.out if args.out is not None else (
        Path("runs/suite") / f"{args.task}-{args.split}-{args.budget}")
    config = SuiteConfig(task=args.task, task_seeds=parse_task_seeds(args.task_seeds),
                         split=args.split, threads=threads, out_dir=out,
                         task_overrides=_step_menu(args), **settings)
    result = run_suite(config, progress=not args.no_progress)
    print(result.to_markdown())
    print(f"wrote {out}/suite.{{json,csv,md,png}} and {len(result.comparisons)} comparison "
          f"folders in {result.seconds:.0f} s (trained now: {result.num_trained} runs; new "
          f"evaluations: {result.num_evaluations})")
    return 0


# --------------------------------------------------------------------------------------------
# train-classifier
# --------------------------------------------------------------------------------------------


def _add_train_classifier(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-classifier",
        help="train the digits feature classifier of FD-digits/KID/precision (package data)",
    )
    p.add_argument("task", choices=["digits"], help="which feature classifier to train")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: package assets)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_train_classifier)


def _run_train_classifier(args: argparse.Namespace) -> int:
    import json

    from diffgym.benchmarks.digits_classifier import ASSETS_DIR, train_digits_classifier

    meta = train_digits_classifier(args.out or ASSETS_DIR, seed=args.seed)
    print(json.dumps(meta, indent=2))
    return 0


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from diffgym.benchmarks.bench import REWARD_MODES, BenchConfig

    defaults = BenchConfig.__dataclass_fields__
    p = sub.add_parser(
        "bench",
        help="RL benchmark: agents x tasks x seeds, normalized scores (0 = default sampler, "
        "1 = best grid point), IQM and bootstrap CIs (resumable; local or Ray)",
    )
    p.add_argument("--agents", nargs="+", default=list(defaults["agents"].default),
                   metavar="AGENT", help="learners (default: ppo a2c trpo reinforce)")
    p.add_argument("--tasks", nargs="+", default=list(defaults["tasks"].default), metavar="TASK",
                   help="task names, or gmm2d-random:K for the procedural task of development "
                   "seed K (default: gmm2d gmm2d-bias)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(defaults["seeds"].default),
                   metavar="SEED", help="training seeds (default: 0 1 2 3 4)")
    p.add_argument("--reward", nargs="+", default=["irl"], metavar="MODE",
                   help=f"reward modes, of {', '.join(REWARD_MODES)} (exact: mixture tasks only)")
    p.add_argument("--backend", default="local", help="local | ray (one training run per trial)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output folder")
    p.add_argument("--timesteps", type=int, default=None,
                   help="training steps per run (default: each agent's YAML n_timesteps)")
    p.add_argument("--n-eval", type=int, default=defaults["n_eval"].default,
                   help="samples per evaluation")
    p.add_argument("--grid-points", default="default", help="grid preset small | default")
    p.add_argument("--families", nargs="+", default=None, metavar="FAMILY",
                   help="grid families (default: all each task has)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs given to Ray (default: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=defaults["reps"].default,
                   help="bootstrap replicates per confidence interval")
    p.add_argument("--wandb", action="store_true", help="log the tables and plots to wandb")
    p.add_argument("--no-progress", action="store_true", help="disable progress bars")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from diffgym.benchmarks.bench import BenchConfig, run_bench

    config = BenchConfig(
        agents=tuple(args.agents),
        tasks=tuple(args.tasks),
        seeds=tuple(args.seeds),
        rewards=tuple(args.reward),
        backend=args.backend,
        out_dir=args.out,
        timesteps=args.timesteps,
        n_eval=args.n_eval,
        grid_points=args.grid_points,
        grid_families=None if args.families is None else tuple(args.families),
        num_cpus=args.num_cpus,
        device=args.device,
        reps=args.reps,
        progress=not args.no_progress,
        wandb=args.wandb,
    )
    result = run_bench(config)
    print(result.to_markdown())
    print(f"wrote {args.out}/bench.{{json,csv}}, leaderboard.md and PNGs in {result.seconds:.0f} s")
    return 0


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_tasks,
    _add_train_denoiser,
    _add_train_classifier,
    _add_sample,
    _add_train,
    _add_grid,
    _add_compare,
    _add_suite,
    _add_demo,
    _add_bench,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffgym",
        description="Learn how to sample from diffusion models with inverse RL.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's); 1 is fastest on a busy or 2-core machine",
    )
    parser.add_argument(
        "--noise-version",
        type=int,
        default=None,
        metavar="V",
        help="per-sample (common random numbers) noise generator: 2 (default) or 1 (the numbers "
        "of results before it; also $DIFFGYM_NOISE_VERSION)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.noise_version is not None:
        from diffgym.envs.noise import set_default_noise_version

        try:
            set_default_noise_version(args.noise_version)
        except ValueError as err:
            parser.error(f"--noise-version: {err}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError,
            NotADirectoryError) as err:
        print(f"diffgym {args.command}: error: {err}", file=sys.stderr)
        return 2
