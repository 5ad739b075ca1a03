"""Bring your own model and data: `diffgym train` -> `diffgym sample` on a user task (CPU)."""

from __future__ import annotations

import numpy as np
import torch

from diffgym.cli import main
from diffgym.envs import GaussianMixture, GMMDenoiser

MEANS = [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]]



def test_train_then_sample_on_a_user_model_and_data(tmp_path, capsys):
    # An EDM-convention module (the exact denoiser of a conditional mixture, trusted pickle) and
    # data on disk stand in for a user's pretrained model and data set.
    mixture = GaussianMixture(MEANS, 0.3, component_labels=[0, 1, 1])
    torch.save(GMMDenoiser(mixture, sigma_max=20.0), tmp_path / "model.pt")
    x, labels = mixture.sample(64, torch.Generator().manual_seed(0))
    np.savez(tmp_path / "data.npz", x=x.numpy(), labels=labels.numpy())
    user = ["--denoiser", f"edm-module:{tmp_path / 'model.pt'}", "--data",
            str(tmp_path / "data.npz"), "--guide", "uncond"]

    run = tmp_path / "run"
    assert main(["train", *user, "--agent", "reinforce", "--timesteps", str(4 * 18 * 2), "--n-envs",
                 "4", "--eval-samples", "32", "--run-dir", str(run), "--no-progress"]) == 0
    assert (run / "final_model.zip").is_file()
    out = tmp_path / "samples"
    assert main(["sample", "--policy", str(run), "--n", "32", "--out", str(out)]) == 0
    data = np.load(out / "user_policy_samples.npz")
    assert data["x"].shape == (32, 2)
    assert set(np.unique(data["labels"])) <= {0, 1}
    assert "sw2" in capsys.readouterr().out

    # --denoiser without --data is refused with a clear message
    assert main(["train", "--denoiser", f"edm-module:{tmp_path / 'model.pt'}",
                 "--run-dir", str(tmp_path / "x")]) == 2
    assert "--denoiser and --data go together" in capsys.readouterr().err
