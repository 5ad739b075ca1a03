"""Training runs: adversarial IRL (GAIL/AIRL) with an SB3 learner, checkpoints and exact resume.

A run directory holds everything about one run::

    RUN_DIR/config.json           resolved config (the command to reproduce it is inside)
    RUN_DIR/logs/                 SB3 + imitation logs (progress.csv, tensorboard)
    RUN_DIR/learning_curve.csv    one row per round: timesteps, irl/…, rollout/…, eval/…
    RUN_DIR/checkpoints/          round_XXXXX.pt (+ latest.json), every ``checkpoint_every`` rounds;
                                  the newest ``keep_checkpoints`` are kept
    RUN_DIR/final_model.zip       the trained SB3 algorithm (``AGENTS[name].load``)
    RUN_DIR/reward_net.pt         the discriminator's state dict
    RUN_DIR/cost.json             the cost ledger (:class:`~diffgym.agents.cost.Cost`): NFE and
                                  wall-clock by category, written with every checkpoint
    RUN_DIR/final_metrics.json    the final evaluation (its presence marks a finished run)

A checkpoint (:mod:`diffgym.agents.checkpoint`) holds the policy, the discriminator, both
optimisers, every RNG state, the env state and the counters, so ``resume`` continues to the same
final state as an uninterrupted run (CPU, same seed). Quality evaluations are injected
(``evaluator=``, e.g. :class:`diffgym.benchmarks.evaluate.TrainingEvaluator`): training itself
knows nothing of the evaluation protocol.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import shlex
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecEnvWrapper

from diffgym.agents.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    algo_state_dict,
    checkpoint_candidates,
    checkpoint_path,
    checkpoint_policy,
    checkpoint_round,
    load_algo_state_dict,
    load_rng_state,
    milestone_rounds,
    read_checkpoint,
    rng_state,
    write_checkpoint,
)
from diffgym.agents.cost import Cost
from diffgym.envs.env import DiffusionSamplingEnv
from diffgym.envs.io import atomic_torch_save, atomic_write, atomic_write_json
from diffgym.envs.sb3 import SB3VecEnv, to_sb3
from diffgym.envs.tasks import list_tasks

__all__ = [
    "COST_FORMAT",
    "IRL_METHODS",
    "Evaluator",
    "TrainConfig",
    "TrainingRun",
    "CheckpointError",
    "load_policy",
    "load_reward",
    "load_run_config",
    "read_cost",
]

log = logging.getLogger(__name__)

IRL_METHODS = ("gail", "airl", "none")
"""``none`` trains on the env's own reward (``nfe_penalty`` / ``terminal_logp``) without IRL."""

COST_FORMAT = "diffgym-cost/1"

Evaluator = Callable[..., "tuple[dict[str, float], Cost]"]
"""``evaluator(policy, task, *, n, train_seed, device) -> (metrics, cost)``: a quality evaluation
of the policy being trained (its ``cost`` is added to the run's ledger)."""


NOT_FINGERPRINTED = ("keep_checkpoints", "keep_milestones")
""":class:`TrainConfig` fields that do not change a run, left out of its fingerprint."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (validated on construction).

    Attributes:
        task: task name; ``task_overrides`` go to :func:`~diffgym.envs.make_task`.
        agent: learner name (a key of :data:`diffgym.agents.AGENTS`); ``agent_overrides`` win
            over the per-task YAML hyperparameters.
        irl: ``"gail"``, ``"airl"`` or ``"none"``; ``divergence`` and ``lam`` select the reward.
        timesteps: env transitions in all (rounded down to whole rounds).
        seed: seeds the env, the learner, the discriminator and the expert.
        n_envs: sub-envs (``None``: the YAML's ``n_envs``, else 64).
        device: ``"cpu"`` or ``"cuda"`` (env, policy and discriminator).
        checkpoint_every: rounds between checkpoints.
        keep_checkpoints: how many of the newest checkpoints to keep (older ones are deleted after
            each new one is written; ``None`` keeps all). Not part of the :meth:`fingerprint`:
            it changes what stays on disk, not the run.
        keep_milestones: M > 0 also writes and keeps the checkpoints of the rounds
            :func:`~diffgym.agents.checkpoint.milestone_rounds` ``(rounds, M)`` (the run's whole
            length in M equal parts: the candidates of a comparison's checkpoint selection); 0:
            none. Not part of the :meth:`fingerprint`, as ``keep_checkpoints``.
        eval_every: rounds between quality evaluations (0: only at the end).
        eval_samples: samples per evaluation.
        nfe_penalty, reward: env reward options (see :class:`DiffusionSamplingEnv`).
        irl_kwargs: extra arguments of :func:`~diffgym.rewards.make_irl_trainer`.
    """

    task: str = "gmm2d"
    agent: str = "ppo"
    irl: str = "gail"
    divergence: str = "js"
    lam: float = 1.0
    timesteps: int = 20_000
    seed: int = 0
    n_envs: int | None = None
    device: str = "cpu"
    checkpoint_every: int = 5
    keep_checkpoints: int | None = 3
    keep_milestones: int = 0
    eval_every: int = 5
    eval_samples: int = 2048
    nfe_penalty: float = 0.0
    reward: str = "none"
    task_overrides: dict[str, Any] = field(default_factory=dict)
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    irl_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from diffgym.agents.registry import AGENTS
        from diffgym.rewards import DIVERGENCES

        if self.task not in list_tasks():
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(list_tasks())}")
        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent {self.agent!r}; known agents: {', '.join(AGENTS)}")
        if self.irl not in IRL_METHODS:
            raise ValueError(f"unknown irl method {self.irl!r}; allowed: {', '.join(IRL_METHODS)}")
        if self.divergence not in DIVERGENCES:
            raise ValueError(
                f"unknown divergence {self.divergence!r}; allowed: {', '.join(DIVERGENCES)}"
            )
        for name in ("timesteps", "checkpoint_every", "eval_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        keep = self.keep_checkpoints
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"keep_checkpoints must be an int >= 1 or None, got {keep!r}")
        ms = self.keep_milestones
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError(f"keep_milestones must be an int >= 0, got {ms!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be an int >= 0, got {self.eval_every!r}")
        if self.n_envs is not None and (not isinstance(self.n_envs, int) or self.n_envs < 1):
            raise ValueError(f"n_envs must be an int >= 1, got {self.n_envs!r}")
        if not (math.isfinite(self.lam) and self.lam > 0):
            raise ValueError(f"lam must be > 0, got {self.lam}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            allowed = ", ".join(sorted(known))
            raise ValueError(f"unknown config key(s) {unknown}; allowed: {allowed}")
        return cls(**data)

    def fingerprint(self) -> str:
        """Hash of the config: a checkpoint only loads into a run with the same fingerprint.

        Settings that do not change the run (:data:`NOT_FINGERPRINTED`) are left out."""
        data = {k: v for k, v in self.to_dict().items() if k not in NOT_FINGERPRINTED}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` stored in ``run_dir/config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a diffgym run directory")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from err
    return TrainConfig.from_dict(data["train"])


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


class _RolloutTimer(BaseCallback):
    """Records when each rollout ends, so a round's time splits into rollouts and policy update."""

    def __init__(self) -> None:
        super().__init__()
        self.rollout_end: float | None = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rollout_end = time.perf_counter()


class TrainingRun:
    """One training run in ``run_dir``.

    Args:
        config: the run's config (ignored on resume: the run directory's config is used).
        run_dir: the run directory. A new run refuses a non-empty directory (nothing in it is
            ever overwritten); ``resume=True`` continues the run found there from its newest
            intact checkpoint (falling back to older kept ones, with a warning), or starts it
            over when it has none yet.
        progress: show a progress bar.
        use_wandb: log to a wandb run (offline without credentials).
        evaluator: the quality evaluation of the policy (every ``eval_every`` rounds and at the
            end); ``None``: no quality metrics (``final_metrics.json`` holds only the cost).

    Raises:
        FileExistsError: a new run in a non-empty directory.
        CheckpointError: on resume, a run directory whose checkpoints are all corrupt or belong
            to another run.
    """

    def __init__(
        self,
        config: TrainConfig | None,
        run_dir: str | os.PathLike,
        *,
        resume: bool = False,
        progress: bool = True,
        use_wandb: bool = False,
        evaluator: Evaluator | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.use_wandb = use_wandb
        self.evaluator = evaluator
        if resume:
            self.config = load_run_config(self.run_dir)
        else:
            if config is None:
                raise ValueError("a new run needs a config")
            if self.run_dir.exists() and any(self.run_dir.iterdir()):
                raise FileExistsError(
                    f"run directory {self.run_dir} exists and is not empty; pass --resume "
                    f"{self.run_dir} to continue it, or choose a new --run-dir"
                )
            self.config = config
        self._build()
        self.round = 0
        self.ledger = Cost()
        """The run's cost so far: rollout and evaluation NFE, episodes and evaluation samples,
        seconds by category (rollouts, policy_update, discriminator, evaluation, metrics)."""
        if resume and self._load_newest_checkpoint():
            return
        if resume:
            self._start_over()
        self._write_config()

    # -- construction ------------------------------------------------------------------------
    def _build(self) -> None:
        from diffgym.agents.registry import make_agent
        from diffgym.rewards import make_irl_trainer

        cfg = self.config
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        n_envs = cfg.n_envs or self._yaml_n_envs() or 64
        self.env = DiffusionSamplingEnv(
            cfg.task,
            n_envs,
            device=cfg.device,
            nfe_penalty=cfg.nfe_penalty,
            reward=cfg.reward,
            **cfg.task_overrides,
        )
        self.venv: SB3VecEnv = to_sb3(self.env)
        self.venv.seed(cfg.seed)
        self.logger = _make_logger(self.run_dir / "logs")
        self.agent = make_agent(
            cfg.agent, self.venv, seed=cfg.seed, device=cfg.device, **cfg.agent_overrides
        )
        self.agent.set_logger(self.logger)
        self.trainer = None
        if cfg.irl != "none":
            self.trainer = make_irl_trainer(
                cfg.irl,
                cfg.divergence,
                venv=self.venv,
                gen_algo=self.agent,
                lam=cfg.lam,
                seed=cfg.seed,
                custom_logger=self.logger,
                **cfg.irl_kwargs,
            )
            if cfg.nfe_penalty or cfg.reward != "none":
                # imitation replaces the env reward by the IRL reward: add the env's own reward
                # (the NFE penalty, a terminal reward) back, or it would be silently dropped.
                self.trainer.venv_train = _WithEnvReward(self.trainer.venv_train)
                self.agent.set_env(self.trainer.venv_train)
        self.round_timesteps = int(self.agent.n_steps * n_envs)
        self.total_rounds = max(cfg.timesteps // self.round_timesteps, 1)
        self.milestones = milestone_rounds(self.total_rounds, cfg.keep_milestones)

    def _yaml_n_envs(self) -> int | None:
        from diffgym.agents.registry import hyperparams_env_id, load_hyperparams

        block = load_hyperparams(self.config.agent, hyperparams_env_id(self.config.task))
        n = block.get("n_envs")
        return int(n) if n is not None else None

    def _write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = shlex.quote(str(self.run_dir / "config.json"))
        cmd = f"diffgym train --config {cfg_path} --run-dir NEW_DIR"
        atomic_write_json(
            self.run_dir / "config.json",
            {
                "train": self.config.to_dict(),
                "agent": {
                    "class": type(self.agent).__name__,
                    "n_steps": self.agent.n_steps,
                    "n_envs": self.env.num_envs,
                },
                "fingerprint": self.config.fingerprint(),
                "reproduce": cmd,
                "versions": _versions(),
            },
        )

    def _start_over(self) -> None:
        """Resume found no checkpoint: remove what the interrupted attempt left (its logs,
        curve, cost and checkpoints; ``config.json`` stays) and start from round 0."""
        warnings.warn(
            f"{self.run_dir} has no checkpoint yet; starting the run over from round 0",
            stacklevel=3,
        )
        for name in ("learning_curve.csv", "cost.json"):
            (self.run_dir / name).unlink(missing_ok=True)
        for name in ("checkpoints",):
            shutil.rmtree(self.run_dir / name, ignore_errors=True)

    # -- training ----------------------------------------------------------------------------
    def train(self, *, stop_after_rounds: int | None = None) -> dict[str, Any] | None:
        """Run the remaining rounds (checkpointing as configured) and write the final files.

        Args:
            stop_after_rounds: stop after this many rounds of this call, as an interruption would
                (returns ``None``; the run continues with ``resume=True`` from its last
                checkpoint).

        Returns:
            the final evaluation metrics, or ``None`` when stopped early.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        wandb_run = self._start_wandb() if self.use_wandb else None
        bar = tqdm(
            total=self.total_rounds,
            initial=self.round,
            desc=f"{cfg.agent}+{cfg.irl}/{cfg.divergence} on {cfg.task}",
            unit="round",
            disable=not self.progress,
        )
        callback = self._wandb_callback() if wandb_run is not None else None
        try:
            done_here = 0
            while self.round < self.total_rounds:
                if stop_after_rounds is not None and done_here >= stop_after_rounds:
                    return None
                done_here += 1
                row = self._one_round(callback)
                self.round += 1
                if cfg.eval_every and self.round % cfg.eval_every == 0:
                    row.update(self._evaluate())
                self._append_curve(row)
                if wandb_run is not None:
                    wandb_run.log(row, step=int(self.agent.num_timesteps))
                if (self.round % cfg.checkpoint_every == 0 or self.round == self.total_rounds
                        or self.round in self.milestones):
                    self.save_checkpoint()
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k.startswith("irl/r")})
        finally:
            bar.close()
        final = self._evaluate()
        self._write_final(final)
        if wandb_run is not None:
            wandb_run.summary.update(final)
            wandb_run.finish()
        return final

    def _one_round(self, callback) -> dict[str, float]:
        timer = _RolloutTimer()
        callbacks = CallbackList([timer] + ([callback] if callback is not None else []))
        nfe0, episodes0 = self.venv.total_nfe, self.venv.total_episodes
        t0 = time.perf_counter()
        if self.trainer is not None:
            self.trainer.gen_callback = callbacks
            self.trainer.train_gen(self.round_timesteps)
            t1 = time.perf_counter()
            for _ in range(self.trainer.n_disc_updates_per_round):
                self.trainer.train_disc()
            t2 = time.perf_counter()
        else:
            self.agent.learn(self.round_timesteps, reset_num_timesteps=False, callback=callbacks)
            t1 = t2 = time.perf_counter()
        rollout_end = timer.rollout_end if timer.rollout_end is not None else t1
        round_nfe = self.venv.total_nfe - nfe0
        self.ledger += Cost(
            nfe=round_nfe,
            samples=self.venv.total_episodes - episodes0,
            seconds={
                "rollouts": rollout_end - t0,
                "policy_update": t1 - rollout_end,
                "discriminator": t2 - t1,
            },
        )
        values = dict(self.logger.name_to_value)
        self.logger.dump(self.agent.num_timesteps)
        row: dict[str, float] = {
            "round": float(self.round + 1),
            "timesteps": float(self.agent.num_timesteps),
            "nfe": float(round_nfe),
        }
        for key, value in values.items():
            if key.startswith(("irl/", "rollout/", "train/")) and _is_number(value):
                row[key] = float(value)
        if self.agent.ep_info_buffer:
            row["rollout/ep_nfe_mean"] = float(
                np.mean([ep.get("nfe", np.nan) for ep in self.agent.ep_info_buffer])
            )
        return row

    def _evaluate(self) -> dict[str, float]:
        """Quality of the current policy by the injected evaluator (``{}`` without one), its
        cost added to the ledger."""
        if self.evaluator is None:
            return {}
        metrics, cost = self.evaluator(
            self.agent.policy,
            self.env.task,
            n=self.config.eval_samples,
            train_seed=self.config.seed,
            device=self.config.device,
        )
        self.agent.policy.set_training_mode(False)
        self.ledger += cost
        return {f"eval/{k}": float(v) for k, v in metrics.items()}

    def _append_curve(self, row: dict[str, float]) -> None:
        path = self.run_dir / "learning_curve.csv"
        rows = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        rows = [r for r in rows if float(r["round"]) < row["round"]] + [
            {k: f"{v:.8g}" for k, v in row.items()}
        ]
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]

        def write(p: Path) -> None:
            with open(p, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)

        atomic_write(path, write)

    def _write_final(self, final: dict[str, float]) -> None:
        atomic_write(self.run_dir / "final_model.zip", lambda p: self.agent.save(p))
        if self.trainer is not None:
            atomic_torch_save(
                self.run_dir / "reward_net.pt", self.trainer.discriminator.state_dict()
            )
        atomic_write_json(self.run_dir / "cost.json", self.cost())
        atomic_write_json(self.run_dir / "final_metrics.json", final)

    def cost(self) -> dict[str, Any]:
        """The ledger as ``cost.json`` holds it: :meth:`Cost.to_dict` plus the format, the
        rollout and evaluation NFE apart, timesteps and rounds."""
        return {
            "format": COST_FORMAT,
            **self.ledger.to_dict(),
            "rollout_nfe": int(self.venv.total_nfe),
            "eval_nfe": int(self.ledger.nfe - self.venv.total_nfe),
            "timesteps": int(self.agent.num_timesteps),
            "rounds": self.round,
        }

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """The run's whole state, from the public state APIs of its parts."""
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.config.fingerprint(),
            "task": self.config.task,
            "round": self.round,
            "cost": self.ledger.to_dict(),
            "algo": algo_state_dict(self.agent),
            "env": self.env.state_dict(),
            "venv": {
                "total_nfe": self.venv.total_nfe,
                "total_steps": self.venv.total_steps,
                "total_episodes": self.venv.total_episodes,
            },
            "rng": rng_state(self.agent),
        }
        if self.trainer is not None:
            state["irl"] = self.trainer.state_dict()
        return state

    def save_checkpoint(self) -> Path:
        ckpt_dir = self.run_dir / "checkpoints"
        path = checkpoint_path(ckpt_dir, self.round)
        write_checkpoint(path, self.checkpoint_state())
        atomic_write_json(ckpt_dir / "latest.json", {"round": self.round, "file": path.name})
        atomic_write_json(self.run_dir / "cost.json", self.cost())
        keep = self.config.keep_checkpoints
        if keep is not None:
            # Only after latest.json names the new file: a crash in between leaves extra files.
            for old in checkpoint_candidates(ckpt_dir)[keep:]:
                if checkpoint_round(old) not in self.milestones:
                    old.unlink(missing_ok=True)
        return path

    def _load_newest_checkpoint(self) -> bool:
        """Load the newest intact checkpoint (``latest.json``'s, then older kept ones); returns
        ``False`` when the run has none yet.

        Raises:
            CheckpointError: checkpoints exist but none of them loads.
        """
        ckpt_dir = self.run_dir / "checkpoints"
        candidates = checkpoint_candidates(ckpt_dir)
        latest = ckpt_dir / "latest.json"
        try:
            named = ckpt_dir / json.loads(latest.read_text())["file"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            named = None
        if named is not None and named in candidates:
            candidates.remove(named)
            candidates.insert(0, named)
        if not candidates:
            return False
        errors = []
        for path in candidates:
            try:
                self.load_checkpoint(path)
            except CheckpointError as err:
                errors.append(str(err))
                warnings.warn(f"{err}; trying an older checkpoint", stacklevel=3)
                continue
            if errors:
                warnings.warn(f"resumed {self.run_dir} from the older checkpoint {path.name}",
                              stacklevel=3)
            return True
        raise CheckpointError(
            f"no checkpoint of {self.run_dir} can be loaded: " + "; ".join(errors)
        )

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint of this run (same config fingerprint).

        Raises:
            CheckpointError: a corrupt file or one of another run.
        """
        path = Path(path)
        state = read_checkpoint(path, device=self.config.device)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a diffgym checkpoint ({CHECKPOINT_FORMAT})")
        if state["task"] != self.config.task:
            raise CheckpointError(
                f"checkpoint {path} is from task {state['task']!r}, this run is task "
                f"{self.config.task!r}"
            )
        if state["fingerprint"] != self.config.fingerprint():
            raise CheckpointError(f"checkpoint {path} belongs to a run with another config")
        load_algo_state_dict(self.agent, state["algo"])
        try:
            self.env.load_state_dict(state["env"])
        except (ValueError, RuntimeError) as err:
            raise CheckpointError(f"checkpoint {path}: the env state does not fit ({err})") from err
        for key, value in state["venv"].items():
            setattr(self.venv, key, value)
        load_rng_state(self.agent, state["rng"])
        if self.trainer is not None:
            try:
                self.trainer.load_state_dict(state["irl"])
            except ValueError as err:
                raise CheckpointError(f"checkpoint {path}: {err}") from err
        self.round = state["round"]
        self.ledger = Cost.from_dict(state["cost"])

    # -- wandb -------------------------------------------------------------------------------
    def _start_wandb(self):
        import wandb

        mode = os.environ.get("WANDB_MODE")
        if mode is None and not (os.environ.get("WANDB_API_KEY") or _netrc_has_wandb()):
            mode = "offline"
        return wandb.init(
            project="diffgym",
            dir=str(self.run_dir),
            config=self.config.to_dict(),
            mode=mode,
            name=self.run_dir.name,
            sync_tensorboard=True,
            resume="allow",
            id=f"diffgym-{self.config.fingerprint()}",
        )

    def _wandb_callback(self):
        from wandb.integration.sb3 import WandbCallback

        return WandbCallback(verbose=0)


class _WithEnvReward(VecEnvWrapper):
    """Adds the wrapped env's own reward (``info["original_env_rew"]``, kept by imitation's
    reward wrapper) to the IRL reward, so an ``nfe_penalty`` acts under GAIL/AIRL too."""

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rews, dones, infos = self.venv.step_wait()
        env_rew = np.asarray([info.get("original_env_rew", 0.0) for info in infos], rews.dtype)
        return obs, rews + env_rew, dones, infos


def read_cost(run_dir: str | os.PathLike) -> Cost:
    """The cost ledger of a run (``cost.json``) as a :class:`~diffgym.agents.cost.Cost`.

    Raises:
        FileNotFoundError: the run has no ``cost.json``.
        ValueError: a ``cost.json`` of another format (e.g. written by an older diffgym: train
            the run again).
    """
    path = Path(run_dir) / "cost.json"
    data = json.loads(path.read_text())
    if data.get("format") != COST_FORMAT:
        raise ValueError(
            f"{path} is not a {COST_FORMAT} ledger (written by an older diffgym?); remove the "
            "run to train it again"
        )
    return Cost.from_dict(data)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _make_logger(folder: Path):
    from imitation.util import logger as imit_logger

    folder.mkdir(parents=True, exist_ok=True)
    return imit_logger.configure(str(folder), format_strs=["csv", "tensorboard"])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def _netrc_has_wandb() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def _versions() -> dict[str, str]:
    import gymnasium
    import stable_baselines3

    import diffgym

    return {
        "diffgym": diffgym.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "stable_baselines3": stable_baselines3.__version__,
    }


def load_policy(run_dir: str | os.PathLike, *, device: str = "cpu", round: int | None = None):
    """The trained policy of a finished run and its task: ``(policy, task, config)``; with
    ``round``, the policy of that round's checkpoint (a milestone, ``keep_milestones``).

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json``, no ``final_model.zip``, or no
            checkpoint of ``round``.
        CheckpointError: the model file or the checkpoint is corrupt.
    """
    from diffgym.agents.registry import AGENTS
    from diffgym.envs.tasks import make_task

    cfg = load_run_config(run_dir)
    path = Path(run_dir) / "final_model.zip"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the run has not finished (continue it with "
            f"`diffgym train --resume {run_dir}`)"
        )
    try:
        algo = AGENTS[cfg.agent].load(path, device=device)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise CheckpointError(f"model file {path} is corrupt or unreadable: {err}") from err
    policy = algo.policy
    if round is not None:
        ckpt = checkpoint_path(Path(run_dir) / "checkpoints", round)
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt} does not exist: the run kept no checkpoint of round "
                                    f"{round}")
        policy = checkpoint_policy(policy, ckpt, cfg.fingerprint())
    task = make_task(cfg.task, device=device, **cfg.task_overrides)
    return policy, task, cfg


def load_reward(run_dir: str | os.PathLike, *, device: str = "cpu"):
    """The final reward of a finished GAIL run: ``obs (B, obs_dim) -> reward (B,)``, its
    discriminator (``reward_net.pt``) with the run's reward transform.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json`` or no ``reward_net.pt``.
        ValueError: the run did not use GAIL.
    """
    from diffgym.envs.tasks import make_task
    from diffgym.rewards import NoiseConditionedDiscriminator, RewardTransform

    cfg = load_run_config(run_dir)
    if cfg.irl != "gail":
        raise ValueError(f"{run_dir}: only GAIL runs are supported, this one used {cfg.irl!r}")
    task = make_task(cfg.task, device=device, **cfg.task_overrides)
    env = DiffusionSamplingEnv(task, 1, device=device)
    net = NoiseConditionedDiscriminator.for_env(env).to(device)
    path = Path(run_dir) / "reward_net.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished")
    net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    net.eval()
    kwargs = cfg.irl_kwargs
    transform = RewardTransform(
        cfg.divergence,
        lam=cfg.lam,
        temperature=kwargs.get("pr_temperature", 0.0),
        center=kwargs.get("center_reward", task.renoise_budget > 0),
    )

    def reward(obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return transform(net.logit(obs))

    return reward

