"""The `diffgym` command line: fixed-schedule sampling, the demo, and its error handling."""

from __future__ import annotations

import numpy as np

from diffgym.cli import main


def test_sample_with_a_fixed_schedule_writes_samples_and_metrics(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sample", "--task", "gmm2d", "--n", "64", "--guidance", "2", "--churn", "0.1",
            "--per-sample-noise", "--out", str(out)]
    assert main(args) == 0
    data = np.load(out / "gmm2d_samples.npz")
    assert data["x"].shape == (64, 2)
    assert (data["nfe"] == 70).all()  # 18 guided Heun steps: (2 * 18 - 1) * 2
    assert (out / "gmm2d_samples.png").stat().st_size > 0
    assert "sw2" in capsys.readouterr().out
    # per-sample noise: the first 16 samples do not depend on --n
    assert main([*args[:4], "16", *args[5:-1], str(tmp_path / "t")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "t" / "gmm2d_samples.npz")["x"],
                                  data["x"][:16])


def test_demo_writes_a_png(tmp_path):
    assert main(["demo", "--n", "64", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "demo.png").stat().st_size > 0


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["sample", "--task", "gmm2d-bias", "--guidance", "2", "--out", str(tmp_path)]) == 2
    assert "no guidance source" in capsys.readouterr().err
    assert main(["sample", "--task", "cifar10", "--out", str(tmp_path)]) == 2
    assert "unknown task 'cifar10'" in capsys.readouterr().err
    assert main(["sample", "--n", "1", "--out", str(tmp_path)]) == 2
    assert "--n must be >= 2" in capsys.readouterr().err


def test_gmm2d_random_is_listed_and_takes_a_task_seed(tmp_path, capsys):
    import json

    from diffgym.agents.registry import env_id_for_task, hyperparams_env_id, load_hyperparams

    assert main(["tasks"]) == 0
    assert "gmm2d-random" in capsys.readouterr().out
    assert env_id_for_task("gmm2d-random") == "diffgym/GMM2D-v0"  # gmm2d's YAML blocks
    # digits-weak has an id and YAML blocks of its own: aliases of digits' blocks
    assert env_id_for_task("digits-weak") == "diffgym/DigitsWeak-v0"
    assert hyperparams_env_id("digits-weak") == "diffgym/DigitsWeak-v0"
    for agent in ("ppo", "a2c", "trpo", "reinforce"):
        assert load_hyperparams(agent, "diffgym/DigitsWeak-v0") == load_hyperparams(
            agent, "diffgym/Digits-v0")
    # so has gmm2d-net-4step: gmm2d-net's blocks, with rollouts of whole 4-step episodes
    assert hyperparams_env_id("gmm2d-net-4step") == "diffgym/GMM2DNet4Step-v0"
    for agent in ("ppo", "a2c", "trpo", "reinforce"):
        few = load_hyperparams(agent, "diffgym/GMM2DNet4Step-v0")
        net = load_hyperparams(agent, "diffgym/GMM2DNet-v0")
        assert {**few, "n_steps": net["n_steps"]} == net and few["n_steps"] % 4 == 0
    assert hyperparams_env_id("gmm2d-random") == "diffgym/GMM2D-v0"
    assert env_id_for_task("mnist") is None and hyperparams_env_id("mnist") is None
    d = tmp_path / "run"
    assert main(["train", "--task", "gmm2d-random", "--task-seed", "7", "--agent", "reinforce",
                 "--timesteps", "144", "--n-envs", "8", "--eval-samples", "32",
                 "--run-dir", str(d), "--no-progress"]) == 0
    assert json.loads((d / "config.json").read_text())["train"]["task_overrides"] == {"seed": 7}
    assert main(["grid", "--task", "gmm2d-random", "--task-seed", "-1",
                 "--out", str(tmp_path / "g")]) == 2
    assert "seed must be an int >= 0" in capsys.readouterr().err
    assert main(["compare", "--task", "gmm2d", "--task-seed", "1", "--budget", "quick",
                 "--out", str(tmp_path / "c")]) == 2
    assert "unknown override(s) ['seed']" in capsys.readouterr().err
    # Held-out discipline: a held-out seed needs --heldout, and nothing is written without it.
    for command in (["compare", "--budget", "quick"], ["grid"], ["train", "--agent", "ppo"]):
        out = tmp_path / f"heldout-{command[0]}"
        flag = "--run-dir" if command[0] == "train" else "--out"
        assert main([*command, "--task", "gmm2d-random", "--task-seed", "1000",
                     flag, str(out)]) == 2, command
        err = capsys.readouterr().err
        assert "--task-seed 1000 is a held-out seed of gmm2d-random (1000-1099)" in err
        assert "pass --heldout only for the final evaluation" in err
        assert not out.exists()
    from diffgym.cli import build_parser, user_task_overrides

    args = build_parser().parse_args(["grid", "--task", "gmm2d-random", "--task-seed", "1000",
                                      "--heldout"])
    assert user_task_overrides("gmm2d-random", args) == ("gmm2d-random", {"seed": 1000})


def test_train_config_without_a_train_block_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text('{"task": "gmm2d"}')
    args = ["train", "--config", str(bad), "--run-dir", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "expected a run's config.json" in err and "['task']" in err
    bad.write_text("{not json")
    assert main(args) == 2
    assert "cannot read a JSON config" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
