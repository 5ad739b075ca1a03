"""The ``diffgym`` command line (also ``python -m diffgym``)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

log = logging.getLogger("diffgym")


# --------------------------------------------------------------------------------------------
# train-denoiser
# --------------------------------------------------------------------------------------------


def _add_train_denoiser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-denoiser",
        help="train the digits denoiser (and its autoguidance snapshot) and write package data",
    )
    p.add_argument("task", choices=["digits"], help="which embedded denoiser to train")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: package assets)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped)")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    p.set_defaults(func=_run_train_denoiser)


def _run_train_denoiser(args: argparse.Namespace) -> int:
    from diffgym.envs.train_denoiser import train_digits_denoiser

    kwargs = {} if args.steps is None else {"steps": args.steps}
    info = train_digits_denoiser(args.out, seed=args.seed, progress=not args.no_progress, **kwargs)
    print(f"trained digits denoiser: {info}")
    return 0


# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample a task with a fixed per-step schedule (or a trained policy) and evaluate",
    )
    p.add_argument("--task", default="gmm2d", help="task name (see `diffgym tasks`)")
    p.add_argument("--n", type=int, default=4096, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-steps", type=int, default=None, help="sampler steps (task default)")
    p.add_argument("--churn", type=float, default=0.0, help="constant churn gamma")
    p.add_argument("--s-noise", type=float, default=1.0, help="S_noise applied with churn")
    p.add_argument("--guidance", type=float, default=1.0, help="constant guidance weight w")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--per-sample-noise",
        action="store_true",
        help="one generator per sample (seed + index): results independent of --n",
    )
    _add_user_task_arguments(p)
    p.add_argument("--policy", type=Path, default=None, metavar="RUN_DIR",
                   help="sample with the trained policy of a `diffgym train` run directory")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--temperature", type=float, default=1.0,
                      help="logit temperature of the policy's choices (with --policy)")
    mode.add_argument("--greedy", action="store_true", help="the policy's most likely choices")
    p.add_argument("--out", type=Path, default=Path("runs/sample"), help="output folder")
    from diffgym.benchmarks.evaluate import add_fid_argument

    add_fid_argument(p)
    p.set_defaults(func=_run_sample)


def _run_sample(args: argparse.Namespace) -> int:
    if args.policy is not None:
        return _run_policy_sample(args)
    from diffgym.envs import BatchNoise, PerSampleNoise, make_task, sample, schedule_actions

    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    from diffgym.envs.user_task import user_task_overrides

    task_name, overrides = user_task_overrides(args.task, args)
    if args.num_steps is not None:
        overrides["num_steps"] = args.num_steps
    task = _with_fid(make_task(task_name, device=args.device, **overrides), args)
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
            gamma=[args.churn] * n_steps,
            s_noise=[args.s_noise] * n_steps,
            guidance=[args.guidance] * n_steps,
        ),
    )
    seconds = time.perf_counter() - t0
    return _report_samples(
        args, task, result, seconds, f"churn={args.churn:g} w={args.guidance:g}", "samples"
    )


def _with_fid(task, args: argparse.Namespace):
    """``task`` with FID switched on when ``--fid-weights`` is given (checked before sampling)."""
    if args.fid_weights is None:
        return task
    from diffgym.benchmarks.evaluate import with_fid

    return with_fid(task, args.fid_weights)


def _report_samples(args, task, result, seconds: float, sampler: str, stem: str) -> int:
    """Evaluate ``result``, write ``OUT/<task>_<stem>.npz`` and ``.png``, print a table."""
    from diffgym.agents.sampler import save_samples
    from diffgym.benchmarks.evaluate import task_metrics

    metrics = task_metrics(task, result.x, result.labels, seed=args.seed + 1)
    args.out.mkdir(parents=True, exist_ok=True)
    npz = args.out / f"{task.name}_{stem}.npz"
    png = args.out / f"{task.name}_{stem}.png"
    save_samples(result, npz, png, task)
    row = {
        "sampler": sampler,
        "nfe/sample": float(result.nfe.float().mean()),
        "seconds": seconds,
        **metrics,
    }
    _print_table(f"{task.name}: {args.n} samples", [row])
    print(f"wrote {npz} and {png}")
    return 0


def _run_policy_sample(args: argparse.Namespace) -> int:
    from diffgym.agents.sampler import PolicySampler
    from diffgym.agents.train import load_policy

    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    policy, task, cfg = load_policy(args.policy, device=args.device)
    task = _with_fid(task, args)
    sampler = PolicySampler(
        policy, task, device=args.device, greedy=args.greedy, temperature=args.temperature
    )
    t0 = time.perf_counter()
    result = sampler.sample(args.n, seed=args.seed, per_sample=args.per_sample_noise)
    seconds = time.perf_counter() - t0
    mode = "greedy" if args.greedy else f"tau={args.temperature:g}"
    label = f"{cfg.agent}+{cfg.irl}/{cfg.divergence} ({mode})"
    return _report_samples(args, task, result, seconds, label, "policy_samples")


def _add_user_task_arguments(p: argparse.ArgumentParser) -> None:
    from diffgym.envs.user_task import add_user_task_arguments

    add_user_task_arguments(p)


def torch_generator(seed: int):
    import torch

    return torch.Generator().manual_seed(int(seed))


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
    p.add_argument("--lam", type=float, default=None, help="lambda of the pr divergence")
    p.add_argument("--timesteps", type=int, default=None, help="env transitions in all")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--n-envs", type=int, default=None, help="sub-envs (default: YAML or 64)")
    p.add_argument("--device", default=None, help="cpu | cuda")
    p.add_argument("--checkpoint-every", type=int, default=None, help="rounds per checkpoint")
    p.add_argument("--keep-checkpoints", type=_keep_checkpoints, default=None, metavar="K",
                   help="keep the newest K checkpoints (default 3), or 'all'")
    p.add_argument("--eval-every", type=int, default=None, help="rounds per evaluation (0: end)")
    p.add_argument("--eval-samples", type=int, default=None)
    p.add_argument("--nfe-penalty", type=float, default=None, help="reward -penalty x NFE")
    p.add_argument("--ent-coef", type=float, default=None, help="entropy bonus (temperature)")
    p.add_argument("--task-seed", type=int, default=None, metavar="K",
                   help="task override seed=K (gmm2d-random: which mixture)")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (must be new)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--config", type=Path, default=None,
                   help="a run's config.json: reproduce that run (flags override it)")
    p.add_argument("--wandb", action="store_true", help="log to wandb (offline without login)")
    p.add_argument("--no-progress", action="store_true")
    _add_user_task_arguments(p)
    p.set_defaults(func=_run_train)


_TRAIN_FLAGS = {
    "task": "task", "agent": "agent", "irl": "irl", "divergence": "divergence", "lam": "lam",
    "timesteps": "timesteps", "seed": "seed", "n_envs": "n_envs", "device": "device",
    "checkpoint_every": "checkpoint_every", "eval_every": "eval_every",
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
    import json

    from diffgym.agents.train import TrainConfig, TrainingRun

    if args.resume is not None:
        if args.keep_checkpoints is not None:
            raise ValueError(
                "--keep-checkpoints applies to new runs; a resumed run keeps the setting in its "
                f"config.json ({Path(args.resume) / 'config.json'})"
            )
        run = TrainingRun(None, args.resume, resume=True, progress=not args.no_progress,
                          use_wandb=args.wandb)
    else:
        if args.run_dir is None:
            raise ValueError("--run-dir is required for a new run (or pass --resume RUN_DIR)")
        base: dict = {}
        if args.config is not None:
            base = json.loads(Path(args.config).read_text())["train"]
        for flag, key in _TRAIN_FLAGS.items():
            value = getattr(args, flag)
            if value is not None:
                base[key] = value
        from diffgym.envs.user_task import user_task_overrides

        task_name, user = user_task_overrides(base.get("task"), args)
        if user:
            base["task"] = task_name
            base["task_overrides"] = {**base.get("task_overrides", {}), **user}
        if args.task_seed is not None:
            base["task_overrides"] = {**base.get("task_overrides", {}), "seed": args.task_seed}
        if args.keep_checkpoints is not None:
            base["keep_checkpoints"] = None if args.keep_checkpoints == "all" else (
                args.keep_checkpoints
            )
        if args.ent_coef is not None:
            base["agent_overrides"] = {**base.get("agent_overrides", {}),
                                       "ent_coef": args.ent_coef}
        run = TrainingRun(TrainConfig.from_dict(base), args.run_dir,
                          progress=not args.no_progress, use_wandb=args.wandb)
    final = run.train()
    rows = [{"run": str(run.run_dir), **final, "rollout_nfe": float(run.venv.total_nfe)}]
    _print_table(f"{run.config.agent}+{run.config.irl}/{run.config.divergence} on "
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
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from diffgym.benchmarks.evaluate import task_metrics
    from diffgym.benchmarks.plots import save_samples_png
    from diffgym.envs import PerSampleNoise, make_task, sample, schedule_actions

    task = make_task("gmm2d")
    n_steps = task.num_steps
    samplers = {
        "Heun (deterministic)": {},
        "churn 0.25": {"gamma": [0.25] * n_steps},
        "autoguidance w=2": {"guidance": [2.0] * n_steps},
        "autoguidance w=3": {"guidance": [3.0] * n_steps},
    }
    rows, panels = [], {}
    for name, table in samplers.items():
        noise = PerSampleNoise(range(args.seed, args.seed + args.n))  # common random numbers
        t0 = time.perf_counter()
        res = sample(
            task.denoiser,
            task.sigmas(),
            noise=noise,
            data_shape=task.data_shape,
            guide=task.guide if "guidance" in table else None,
            actions=schedule_actions(**table) if table else None,
        )
        seconds = time.perf_counter() - t0
        m = task_metrics(task, res.x, seed=args.seed + 1)
        rows.append(
            {
                "sampler": name,
                "nfe/sample": float(res.nfe.float().mean()),
                "seconds": seconds,
                "logp": m["logp"],
                "mode_tv": m["mode_tv"],
                "sw2": m["sw2"],
            }
        )
        panels[name] = (res.x, None)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "demo.png"
    save_samples_png(task, panels, png)
    _print_table(f"gmm2d sampling demo ({args.n} samples, same seeds per sampler)", rows)
    print(f"wrote {png}")
    return 0


# --------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the embedded tasks and their gym ids")
    p.set_defaults(func=_run_tasks)


def _run_tasks(args: argparse.Namespace) -> int:
    from diffgym import ENV_IDS
    from diffgym.envs import list_tasks

    for env_id, name in ENV_IDS.items():
        print(f"{name:12s} {env_id}")
    usage = {"gmm2d-random": "--task gmm2d-random --task-seed K", "user": "--denoiser D --data X"}
    for name in sorted(set(list_tasks()) - set(ENV_IDS.values())):
        print(f"{name:12s} (no gym id: {usage.get(name, '--task ' + name)})")
    return 0


# --------------------------------------------------------------------------------------------
# plumbing
# --------------------------------------------------------------------------------------------


def _print_table(title: str, rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = Table(title=title)
    if len(rows) == 1:  # one row: a (name, value) column pair, so no header is ever cut short
        table.add_column("")
        table.add_column("value", justify="right")
        for k, v in rows[0].items():
            table.add_row(k, fmt(v))
    else:
        for c in rows[0]:
            table.add_column(c, justify="left" if c == "sampler" else "right")
        for r in rows:
            table.add_row(*[fmt(v) for v in r.values()])
    Console(width=160).print(table)


def _add_grid(sub: argparse._SubParsersAction) -> None:
    from diffgym.benchmarks.grid import add_grid_parser

    add_grid_parser(sub)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    from diffgym.benchmarks.compare import add_compare_parser

    add_compare_parser(sub)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_tasks,
    _add_train_denoiser,
    _add_sample,
    _add_train,
    _add_grid,
    _add_compare,
    _add_demo,
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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as err:
        print(f"diffgym {args.command}: error: {err}", file=sys.stderr)
        return 2
