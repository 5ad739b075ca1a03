"""Argument types and options shared by several ``diffgym`` subcommands (:mod:`diffgym.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = [
    "add_fid_argument",
    "add_user_task_arguments",
    "device_arg",
    "finite_float",
    "policy_option",
    "policy_overrides",
    "reward_option",
    "user_task_overrides",
]


def device_arg(text: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``, and CUDA only where it is available."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"device {text!r}: CUDA is not available here")
    return text


def finite_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_user_task_arguments(parser: argparse.ArgumentParser) -> None:
    """``--task-seed K`` (procedural tasks) and ``--denoiser SPEC``, ``--data PATH``,
    ``--guide uncond|none|SPEC`` (task ``user``)."""
    parser.add_argument("--task-seed", type=int, default=None, metavar="K",
                        help="task override seed=K (gmm2d-random: which mixture)")
    parser.add_argument("--heldout", action="store_true",
                        help="allow a held-out --task-seed (gmm2d-random 1000-1099): the final "
                        "evaluation only, never for tuning")
    group = parser.add_argument_group("user task (bring your own model and data)")
    group.add_argument(
        "--denoiser",
        default=None,
        metavar="SPEC",
        help="diffusers:/path/to/model_dir or edm-module:/path/to/module.pt (task 'user')",
    )
    group.add_argument(
        "--data", default=None, metavar="PATH", help="an .npz (x, labels) or a folder of images"
    )
    group.add_argument(
        "--guide",
        default=None,
        metavar="GUIDE",
        help="uncond (default; classifier-free), none, or a weaker model's spec (autoguidance)",
    )


def user_task_overrides(task: str | None, args: argparse.Namespace) -> tuple[str | None, dict]:
    """``(task name, make_task overrides)`` from the task flags:
    ``("user", {"denoiser": ..., "data": ..., "guide": ...})`` when ``--denoiser`` is given (it
    selects the task ``"user"`` whatever ``--task`` says), ``(task, {})`` otherwise; with
    ``--task-seed K`` the overrides also hold ``seed=K``.

    Raises:
        ValueError: ``--denoiser`` without ``--data`` (or the reverse), or ``--guide`` alone; a
            held-out ``--task-seed`` of a procedural task without ``--heldout``.
    """
    denoiser = getattr(args, "denoiser", None)
    data = getattr(args, "data", None)
    guide = getattr(args, "guide", None)
    seed = {} if getattr(args, "task_seed", None) is None else {"seed": args.task_seed}
    from diffgym.benchmarks.compare import check_heldout_seed

    check_heldout_seed(task, getattr(args, "task_seed", None), getattr(args, "heldout", False),
                       what="--task-seed", how="--heldout")
    if denoiser is None and data is None and guide is None:
        return task, seed
    if denoiser is None or data is None:
        raise ValueError("--denoiser and --data go together (and --guide needs both)")
    overrides: dict = {"denoiser": denoiser, "data": str(data)}
    if guide is not None:
        overrides["guide"] = guide
    return "user", {**overrides, **seed}


def add_fid_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fid-weights",
        type=Path,
        default=None,
        metavar="PATH",
        help="local FID Inception-v3 state dict (pt_inception-2015-12-05-6726825d.pth): adds "
        "fid, kid_inception, precision_inception, recall_inception on image tasks "
        "(needs diffgym[fid])",
    )


def reward_option(text: str) -> tuple[str, float | bool]:
    """``--reward-option NAME=VALUE``: a named reward option (``diffgym.rewards.REWARD_OPTIONS``)
    and its value: a number, or ``true``/``false`` for ``disc_spectral_norm``."""
    from diffgym.rewards.shaping import REWARD_OPTIONS, check_reward_options

    name, sep, raw = text.partition("=")
    if not sep or name not in REWARD_OPTIONS:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME one of {', '.join(REWARD_OPTIONS)}, got {text!r}"
        )
    value: float | bool | str = raw
    if REWARD_OPTIONS[name] is bool:
        value = {"true": True, "false": False}.get(raw.lower(), raw)
    else:
        try:
            value = float(raw)
        except ValueError:
            pass
    try:
        checked = check_reward_options({name: value})
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name, checked.get(name, REWARD_OPTIONS[name]())  # 0.0 / False: off


POLICY_OPTIONS: dict[str, type] = {
    "sample_input": bool,
    "features_dim": int,
    "hidden": int,
    "sigma_freqs": int,
    "neutral_bias": float,
}
"""``--policy-option`` names and their types: ``neutral_bias`` is a ``policy_kwargs`` key, the
others keys of its ``features_extractor_kwargs`` (:class:`~diffgym.agents.policies.
DiffusionFeaturesExtractor`)."""


def policy_option(text: str) -> tuple[str, int | float | bool]:
    """``--policy-option NAME=VALUE``: a policy setting for every training run (wins over the
    task's YAML): ``sample_input=false`` (a time-only policy), ``features_dim=N``, ``hidden=N``,
    ``sigma_freqs=N`` (ints >= 1) or ``neutral_bias=X`` (a finite number >= 0)."""
    import math

    name, sep, raw = text.partition("=")
    kind = POLICY_OPTIONS.get(name) if sep else None
    if kind is None:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME one of {', '.join(POLICY_OPTIONS)}, got {text!r}"
        )
    value: int | float | bool | None = None
    if kind is bool:
        value = {"true": True, "false": False}.get(raw.strip().lower())
        allowed = "true or false"
    elif kind is int:
        value = int(raw) if raw.strip().isdigit() and int(raw) >= 1 else None
        allowed = "an int >= 1"
    else:
        try:
            value = float(raw)
        except ValueError:
            value = None
        value = value if value is not None and math.isfinite(value) and value >= 0 else None
        allowed = "a finite number >= 0"
    if value is None:
        raise argparse.ArgumentTypeError(f"--policy-option {name}: expected {allowed}, got {raw!r}")
    return name, value


def policy_overrides(pairs: list[tuple[str, int | float | bool]]) -> dict:
    """``--policy-option`` pairs as agent overrides (``{"policy_kwargs": {...}}``, merged key by
    key into the YAML's); ``{}`` for none; ``ValueError`` for a name given twice."""
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"--policy-option {', '.join(twice)} given more than once; give each "
                         "option once")
    if not pairs:
        return {}
    policy = {k: v for k, v in pairs if k == "neutral_bias"}
    feats = {k: v for k, v in pairs if k != "neutral_bias"}
    return {"policy_kwargs": {**policy, **({"features_extractor_kwargs": feats} if feats else {})}}


def add_inference_guard_arguments(p: argparse.ArgumentParser) -> None:
    """The inference guard's flags of ``compare`` and ``suite``."""
    p.add_argument("--inference-guard", default=None, metavar="METRIC",
                   help="a metric (e.g. mode_tv) on which a learned sampler's inference choice "
                   "must be no worse than the default sampler on the search seed; the default "
                   "sampler is then a candidate too (default: none)")
    p.add_argument("--inference-guard-tolerance", type=float, default=0.0, metavar="TOL",
                   help="with --inference-fallback: a fallback rule at most TOL worse than the "
                   "default sampler on the guard (in its units) may be chosen; the candidates "
                   "are always held to the strict guard (default 0)")
    p.add_argument("--inference-guard-se", type=float, default=0.0, metavar="Z",
                   help="with --inference-guard mode_tv: a candidate (or fallback rule) may be up "
                   "to Z standard errors worse than the default sampler on it, the error of "
                   "their paired difference on the search seed's samples (default 0)")
    p.add_argument("--inference-fallback", nargs="+", default=(), metavar="RULE",
                   help="with --inference-guard: inference rules (as --inference-candidates) "
                   "evaluated on the search seed only when the choice among the candidates is "
                   "the default sampler, one of them then chosen if it beats the default under "
                   "the guard (within --inference-guard-tolerance) (default: none)")
