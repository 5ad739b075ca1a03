"""Training runs: end to end, exact resume, run-directory safety and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffgym.agents.train import CheckpointError, TrainConfig, TrainingRun, load_run_config
from diffgym.cli import main


def _config(**kw) -> TrainConfig:
    base = dict(
        task="gmm2d", agent="ppo", n_envs=8, checkpoint_every=1, eval_every=2, eval_samples=64,
        agent_overrides={"n_steps": 18, "batch_size": 48, "n_epochs": 2},
    )
    base.update(kw)
    return TrainConfig(**base)


def _params(run: TrainingRun) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in run.agent.policy.state_dict().items()}


@pytest.mark.parametrize(
    ("task", "agent", "overrides"),
    [
        ("gmm2d", "ppo", {"n_steps": 18, "batch_size": 48, "n_epochs": 2}),
        # renoise: variable episode lengths, partial trajectories across rounds
        ("gmm2d-bias", "reinforce", {"n_steps": 30}),
    ],
)
def test_resume_matches_uninterrupted_run(tmp_path, task, agent, overrides):
    cfg = _config(task=task, agent=agent, agent_overrides=overrides, timesteps=8 * 30 * 4)
    full = TrainingRun(cfg, tmp_path / "full", progress=False)
    assert full.total_rounds >= 3
    final_full = full.train()

    cut = TrainingRun(cfg, tmp_path / "cut", progress=False)
    assert cut.train(stop_after_rounds=2) is None
    assert not (tmp_path / "cut" / "final_model.zip").exists()
    del cut
    resumed = TrainingRun(None, tmp_path / "cut", resume=True, progress=False)
    assert resumed.round == 2
    final_resumed = resumed.train()

    assert resumed.agent.num_timesteps == full.agent.num_timesteps
    p_full, p_res = _params(full), _params(resumed)
    assert p_full.keys() == p_res.keys()
    for k in p_full:
        assert torch.equal(p_full[k], p_res[k]), k
    d_full = full.trainer.discriminator.state_dict()
    d_res = resumed.trainer.discriminator.state_dict()
    for k in d_full:
        assert torch.equal(d_full[k], d_res[k]), k
    assert final_full == final_resumed
    assert resumed.venv.total_nfe == full.venv.total_nfe


def test_run_directory_contents(tmp_path):
    from diffgym.agents.cost import Cost
    from diffgym.agents.train import COST_FORMAT, read_cost
    from diffgym.benchmarks.evaluate import TrainingEvaluator

    run = TrainingRun(_config(timesteps=8 * 18 * 2), tmp_path / "r", progress=False,
                      evaluator=TrainingEvaluator())
    final = run.train()
    d = tmp_path / "r"
    for name in ("config.json", "learning_curve.csv", "final_model.zip", "reward_net.pt",
                 "cost.json", "final_metrics.json", "checkpoints/latest.json"):
        assert (d / name).is_file(), name
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["train"]["task"] == "gmm2d" and "reproduce" in cfg
    assert load_run_config(d) == run.config
    curve = (d / "learning_curve.csv").read_text().splitlines()
    assert len(curve) == 1 + run.total_rounds
    assert "irl/disc_loss" in curve[0] and "eval/sw2" in curve[0]
    cost = json.loads((d / "cost.json").read_text())
    assert cost["format"] == COST_FORMAT
    assert cost["rollout_nfe"] == run.venv.total_nfe > 0
    assert cost["timesteps"] == run.agent.num_timesteps
    assert set(final) >= {"eval/sw2", "eval/logp", "eval/nfe_per_sample"}
    # The ledger: rollouts + the evaluations' NFE; every category of a training round filled.
    ledger = read_cost(d)
    assert isinstance(ledger, Cost) and ledger == run.ledger
    evaluations = 1 + run.total_rounds // 2  # eval_every=2, plus the final one
    assert ledger.nfe == run.venv.total_nfe + cost["eval_nfe"]
    assert cost["eval_nfe"] >= evaluations * 64 * 35  # 64 samples, at least plain Heun's NFE
    assert ledger.samples == run.venv.total_episodes + evaluations * 64
    assert set(ledger.seconds) == {"rollouts", "policy_update", "discriminator", "evaluation",
                                   "metrics"}
    assert all(v > 0 for v in ledger.seconds.values())


def test_resume_on_the_run_device(tmp_path, device):
    """A checkpoint loads back on the run's device: tensors go there, RNG states stay CPU byte
    tensors (torch's setters accept nothing else)."""
    cfg = _config(timesteps=8 * 18 * 3, device=device.type, eval_every=0)
    run = TrainingRun(cfg, tmp_path / "r", progress=False)
    assert run.train(stop_after_rounds=1) is None
    del run
    resumed = TrainingRun(None, tmp_path / "r", resume=True, progress=False)
    assert resumed.round == 1 and resumed.env.x.device.type == device.type
    resumed.train()
    assert resumed.round == resumed.total_rounds == 3
    assert (tmp_path / "r" / "final_model.zip").is_file()


def test_foreign_env_states_are_a_checkpoint_error(tmp_path):
    from diffgym.agents.checkpoint import write_checkpoint

    run = TrainingRun(_config(timesteps=8 * 18 * 2, eval_every=0), tmp_path / "r", progress=False)
    state = run.checkpoint_state()
    state["env"]["x"] = torch.zeros(3, 2)  # an env of another size
    path = tmp_path / "foreign.pt"
    write_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="env state does not fit"):
        run.load_checkpoint(path)


def test_a_changed_byte_is_caught_and_resume_falls_back(tmp_path):
    run = TrainingRun(_config(timesteps=8 * 18 * 4, eval_every=0), tmp_path / "r",
                      progress=False)
    assert run.train(stop_after_rounds=2) is None
    ckpts = tmp_path / "r" / "checkpoints"
    newest = ckpts / "round_00002.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the middle of the payload
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        run.load_checkpoint(newest)
    with pytest.warns(UserWarning, match="older checkpoint round_00001.pt"):
        resumed = TrainingRun(None, tmp_path / "r", resume=True, progress=False)
    assert resumed.round == 1


def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path):
    d = tmp_path / "r"
    TrainingRun(_config(timesteps=8 * 18 * 2, eval_every=0), d, progress=False)  # no round run
    assert (d / "config.json").is_file() and not (d / "checkpoints").exists()
    with pytest.warns(UserWarning, match="no checkpoint yet; starting the run over"):
        run = TrainingRun(None, d, resume=True, progress=False)
    assert run.round == 0
    run.train()
    assert (d / "final_model.zip").is_file()


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    cfg = _config(timesteps=8 * 18 * 5, keep_checkpoints=2)
    assert cfg.fingerprint() == _config(timesteps=8 * 18 * 5, keep_checkpoints=None).fingerprint()
    run = TrainingRun(cfg, tmp_path / "r", progress=False)
    assert run.train(stop_after_rounds=4) is None
    ckpts = tmp_path / "r" / "checkpoints"
    assert sorted(f.name for f in ckpts.glob("round_*.pt")) == ["round_00003.pt", "round_00004.pt"]
    assert json.loads((ckpts / "latest.json").read_text())["file"] == "round_00004.pt"
    del run
    resumed = TrainingRun(None, tmp_path / "r", resume=True, progress=False)
    assert resumed.round == 4
    resumed.train()
    assert sorted(f.name for f in ckpts.glob("round_*.pt")) == ["round_00004.pt", "round_00005.pt"]


def test_milestone_checkpoints_are_written_and_kept_and_change_no_run(tmp_path):
    """``keep_milestones=M`` writes and keeps the checkpoints that split the run in M parts,
    whatever ``checkpoint_every`` and ``keep_checkpoints`` say, and leaves the run itself (its
    fingerprint, its final weights) as it is."""
    plain = _config(timesteps=8 * 18 * 6, checkpoint_every=5, keep_checkpoints=1)
    cfg = _config(timesteps=8 * 18 * 6, checkpoint_every=5, keep_checkpoints=1, keep_milestones=3)
    assert cfg.fingerprint() == plain.fingerprint()
    run = TrainingRun(cfg, tmp_path / "m", progress=False)
    assert run.milestones == (2, 4, 6)
    run.train()
    ckpts = tmp_path / "m" / "checkpoints"
    assert sorted(f.name for f in ckpts.glob("round_*.pt")) == [
        "round_00002.pt", "round_00004.pt", "round_00006.pt"]  # round 5 was not kept
    assert load_run_config(tmp_path / "m").keep_milestones == 3
    other = TrainingRun(plain, tmp_path / "p", progress=False)
    other.train()
    assert sorted(f.name for f in (tmp_path / "p" / "checkpoints").glob("round_*.pt")) == [
        "round_00006.pt"]
    for k, v in _params(run).items():
        assert torch.equal(v, _params(other)[k]), k


def test_milestones_survive_a_resume_and_a_changed_setting_is_refused_before_resuming(tmp_path):
    from diffgym.benchmarks.runs import train_or_load

    cfg = _config(timesteps=8 * 18 * 4, checkpoint_every=5, keep_checkpoints=1, keep_milestones=2)
    run = TrainingRun(cfg, tmp_path / "m", progress=False)
    assert run.train(stop_after_rounds=3) is None
    del run
    plain = cfg.__class__(**{**cfg.to_dict(), "keep_milestones": 0})
    with pytest.raises(ValueError, match="keeps 2 milestone checkpoints, 0 wanted"):
        train_or_load(plain, tmp_path / "m", device="cpu", progress=False)
    assert not (tmp_path / "m" / "final_metrics.json").exists()  # nothing was resumed
    TrainingRun(None, tmp_path / "m", resume=True, progress=False).train()
    ckpts = tmp_path / "m" / "checkpoints"
    assert sorted(f.name for f in ckpts.glob("round_*.pt")) == ["round_00002.pt",
                                                                 "round_00004.pt"]


def test_cli_train_keeps_milestones(tmp_path, capsys):
    d = tmp_path / "ms"
    args = ["train", "--task", "gmm2d", "--agent", "reinforce", "--timesteps", str(8 * 18 * 4),
            "--n-envs", "8", "--eval-samples", "64", "--checkpoint-every", "5",
            "--keep-checkpoints", "1", "--keep-milestones", "2", "--run-dir", str(d),
            "--no-progress"]
    assert main(args) == 0
    assert load_run_config(d).keep_milestones == 2
    assert sorted(f.name for f in (d / "checkpoints").glob("round_*.pt")) == [
        "round_00002.pt", "round_00004.pt"]
    assert main(["train", "--resume", str(d), "--keep-milestones", "3", "--no-progress"]) == 2
    assert "--keep-milestones cannot apply with --resume" in capsys.readouterr().err
    assert main(args[:-3] + ["--keep-milestones", "-1", "--run-dir", str(tmp_path / "x")]) == 2
    assert "keep_milestones must be an int >= 0, got -1" in capsys.readouterr().err


def test_milestone_rounds():
    from diffgym.agents.checkpoint import milestone_rounds

    assert milestone_rounds(100, 4) == (25, 50, 75, 100)
    assert milestone_rounds(100, 3) == (33, 66, 100)
    assert milestone_rounds(3, 5) == (1, 2, 3)  # distinct, never round 0
    assert milestone_rounds(7, 1) == (7,)
    assert milestone_rounds(7, 0) == ()
    with pytest.raises(ValueError, match="total_rounds must be an int >= 1, got 0"):
        milestone_rounds(0, 2)
    with pytest.raises(ValueError, match="milestones must be an int >= 0, got -1"):
        milestone_rounds(5, -1)


def test_new_run_never_overwrites(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        TrainingRun(_config(), d, progress=False)
    assert (d / "keep.txt").read_text() == "precious"


def test_corrupt_and_foreign_checkpoints(tmp_path):
    run = TrainingRun(_config(timesteps=8 * 18 * 2), tmp_path / "a", progress=False)
    run.train(stop_after_rounds=1)
    ckpt = tmp_path / "a" / "checkpoints" / "round_00001.pt"
    good = ckpt.read_bytes()

    ckpt.write_bytes(good[: len(good) // 3])
    with pytest.raises(CheckpointError, match="corrupt"):
        TrainingRun(None, tmp_path / "a", resume=True, progress=False)
    ckpt.write_bytes(good)

    other = TrainingRun(_config(task="gmm2d-bias", agent_overrides={"n_steps": 30}),
                        tmp_path / "b", progress=False)
    with pytest.raises(CheckpointError, match="task 'gmm2d'"):
        other.load_checkpoint(ckpt)
    with pytest.warns(UserWarning, match="no checkpoint yet"):
        assert TrainingRun(None, tmp_path / "b", resume=True, progress=False).round == 0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"agent": "dqn"}, "unknown agent 'dqn'.*ppo"),
        ({"task": "cifar"}, "unknown task 'cifar'.*gmm2d"),
        ({"irl": "bc"}, "unknown irl method 'bc'.*gail"),
        ({"divergence": "tv"}, "unknown divergence 'tv'.*js"),
        ({"timesteps": 0}, "timesteps must be"),
        ({"lam": 0.0}, "lam must be > 0"),
        ({"keep_checkpoints": 0}, "keep_checkpoints must be an int >= 1 or None, got 0"),
        ({"keep_milestones": -1}, "keep_milestones must be an int >= 0, got -1"),
        ({"keep_milestones": True}, "keep_milestones must be an int >= 0, got True"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        _config(**kw)


def test_cli_train_and_resume(tmp_path, capsys):
    d = tmp_path / "cli"
    args = ["train", "--task", "gmm2d", "--agent", "reinforce", "--irl", "gail",
            "--divergence", "js", "--timesteps", str(8 * 18 * 2), "--seed", "3",
            "--n-envs", "8", "--eval-samples", "64", "--run-dir", str(d), "--no-progress"]
    assert main(args) == 0
    assert (d / "final_model.zip").is_file()
    assert main(args) == 2  # the run directory is not empty: refused, nothing overwritten
    assert "not empty" in capsys.readouterr().err
    assert main(["train", "--resume", str(d), "--no-progress"]) == 0  # already finished
    assert load_run_config(d).keep_checkpoints == 3
    with pytest.raises(SystemExit):
        main(["train", "--keep-checkpoints", "0", "--run-dir", str(tmp_path / "x")])
    assert "expected an int >= 1 or 'all', got '0'" in capsys.readouterr().err
    assert main(["train", "--resume", str(d), "--keep-checkpoints", "1", "--no-progress"]) == 2
    assert "--keep-checkpoints cannot apply with --resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(d), "--timesteps", "9", "--seed", "1"]) == 2
    assert "--timesteps, --seed cannot apply with --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--ent-coef", "nan", "--run-dir", str(tmp_path / "x")])
    assert "expected a finite number, got 'nan'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--device", "tpu", "--run-dir", str(tmp_path / "x")])
    assert "unknown device 'tpu'" in capsys.readouterr().err
    assert main(["train", "--agent", "nope", "--run-dir", str(tmp_path / "x")]) == 2
    assert "unknown agent 'nope'" in capsys.readouterr().err

    out = tmp_path / "samples"
    assert main(["sample", "--policy", str(d), "--n", "64", "--greedy", "--out", str(out)]) == 0
    data = np.load(out / "gmm2d_policy_samples.npz")
    assert data["x"].shape == (64, 2) and data["nfe"].shape == (64,)
    assert (out / "gmm2d_policy_samples.png").stat().st_size > 0
    assert main(["sample", "--policy", str(tmp_path / "missing"), "--n", "8"]) == 2
    assert "not a diffgym run directory" in capsys.readouterr().err
    assert main(["sample", "--policy", str(d), "--task", "digits", "--n", "8"]) == 2
    assert "--task cannot apply with --policy" in capsys.readouterr().err
    assert main(["sample", "--temperature", "0.5", "--n", "8"]) == 2
    assert "give --policy" in capsys.readouterr().err
    assert main(["sample", "--mean-action", "--n", "8"]) == 2
    assert "give --policy" in capsys.readouterr().err
    assert main(["sample", "--policy", str(d), "--n", "8", "--greedy", "--mean-action"]) == 2
    assert "--greedy and --mean-action are exclusive" in capsys.readouterr().err
    mean_out = tmp_path / "mean"
    assert main(["sample", "--policy", str(d), "--n", "64", "--mean-action", "--out",
                 str(mean_out)]) == 0
    assert "(mean, tau=1)" in capsys.readouterr().out
    from diffgym.agents.policy_sampling import PolicySampler
    from diffgym.agents.train import load_policy

    policy, task, _ = load_policy(d)
    want = PolicySampler(policy, task, mean_action=True).sample(64, seed=0).x
    assert np.array_equal(np.load(mean_out / "gmm2d_policy_samples.npz")["x"], want.numpy())


@pytest.mark.parametrize("agent", ["ppo", "reinforce", "a2c", "trpo"])
def test_swapping_the_agent_is_one_string(agent, tmp_path):
    d = tmp_path / agent
    args = ["train", "--task", "gmm2d", "--agent", agent, "--timesteps", "600", "--n-envs", "8",
            "--eval-samples", "32", "--run-dir", str(d), "--no-progress"]
    assert main(args) == 0
    assert json.loads((d / "config.json").read_text())["train"]["agent"] == agent
    assert json.loads((d / "cost.json").read_text())["timesteps"] > 0


def test_nfe_penalty_reaches_the_irl_reward(tmp_path):
    """imitation replaces the env reward by the IRL reward; the run adds the env's NFE penalty
    back, so the policy's reward is the IRL reward minus ``nfe_penalty x NFE``."""
    rewards = {}
    for pen in (0.0, 0.5):
        run = TrainingRun(_config(nfe_penalty=pen, timesteps=8 * 18), tmp_path / f"p{pen}",
                          progress=False)
        venv = run.trainer.venv_train
        assert run.agent.get_env() is venv
        venv.reset()
        venv.step_async(np.zeros((8, 2), dtype=np.int64))  # neutral: a 2-NFE Heun step
        _, rew, _, infos = venv.step_wait()
        assert [i["original_env_rew"] for i in infos] == [-2 * pen] * 8
        rewards[pen] = rew
    np.testing.assert_allclose(rewards[0.5], rewards[0.0] - 1.0, rtol=0, atol=1e-6)
