"""Bodies of command-line commands that need no argument parser (the parser and the dispatch are
in :mod:`diffgym.cli`): the sampling demo, the report of a sampling run, reading a run's config."""

from __future__ import annotations

import json
import time
from pathlib import Path

from diffgym.tables import print_table

__all__ = ["report_samples", "run_demo", "torch_generator", "train_section", "with_fid_weights"]


def with_fid_weights(task, fid_weights: Path | None):
    """``task`` with FID switched on when ``--fid-weights`` is given (checked before sampling)."""
    if fid_weights is None:
        return task
    from diffgym.benchmarks.evaluate import with_fid

    return with_fid(task, fid_weights)


def report_samples(task, result, seconds: float, sampler: str, stem: str, *, n: int, seed: int,
                   out: Path) -> int:
    """Evaluate ``result``, write ``out/<task>_<stem>.npz`` and ``.png``, print a table."""
    from diffgym.agents.policy_sampling import save_samples
    from diffgym.benchmarks.evaluate import task_metrics

    metrics = task_metrics(task, result.x, result.labels, seed=seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    npz = out / f"{task.name}_{stem}.npz"
    png = out / f"{task.name}_{stem}.png"
    save_samples(result, npz, png, task)
    row = {
        "sampler": sampler,
        "nfe/sample": float(result.nfe.double().mean()),
        "seconds": seconds,
        **metrics,
    }
    print_table(f"{task.name}: {n} samples", [row])
    print(f"wrote {npz} and {png}")
    return 0


def torch_generator(seed: int):
    import torch

    return torch.Generator().manual_seed(int(seed))


def train_section(path: Path) -> dict:
    """The ``"train"`` block of a run's ``config.json`` (what ``train --config`` reproduces)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--config {path}: cannot read a JSON config ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("train"), dict):
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(
            f"--config {path}: expected a run's config.json, an object with a \"train\" object "
            f"(e.g. {{\"train\": {{\"task\": \"gmm2d\", \"task_overrides\": {{...}}}}}}); "
            f"got {keys}"
        )
    return dict(doc["train"])


def run_demo(n: int, seed: int, out: Path) -> int:
    """``diffgym demo``: plain Heun against a few fixed samplers on gmm2d, same seeds per sampler;
    prints a table and writes ``out/demo.png``."""
    from diffgym.benchmarks.evaluate import task_metrics
    from diffgym.benchmarks.plots import save_samples_png
    from diffgym.envs import PerSampleNoise, make_task, sample, schedule_actions

    task = make_task("gmm2d")
    n_steps = task.num_steps
    samplers = {
        "Heun (deterministic)": {},
        "churn 0.25": {"churn": [0.25] * n_steps},
        "autoguidance w=2": {"guidance": [2.0] * n_steps},
        "autoguidance w=3": {"guidance": [3.0] * n_steps},
    }
    rows, panels = [], {}
    for name, table in samplers.items():
        noise = PerSampleNoise(range(seed, seed + n))  # common random numbers
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
        m = task_metrics(task, res.x, seed=seed + 1)
        rows.append(
            {
                "sampler": name,
                "nfe/sample": float(res.nfe.double().mean()),
                "seconds": seconds,
                "logp": m["logp"],
                "mode_tv": m["mode_tv"],
                "sw2": m["sw2"],
            }
        )
        panels[name] = (res.x, None)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "demo.png"
    save_samples_png(task, panels, png)
    print_table(f"gmm2d sampling demo ({n} samples, same seeds per sampler)", rows)
    print(f"wrote {png}")
    return 0
