"""The Ray Tune backend of :func:`diffgym.benchmarks.grid.run_grid`: pending grid points as one
Tune ``grid_search``, one CPU per trial (and one GPU when sampling on CUDA); each trial's result is
recorded in the driver as soon as it arrives."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from diffgym.agents.cost import Cost
from diffgym.envs.noise import default_noise_version
from diffgym.envs.tasks import Task

if TYPE_CHECKING:
    from diffgym.benchmarks.grid import PointResult, _PointSpec

__all__ = ["RAY_INSTALL_HINT", "import_ray", "run_ray"]

RAY_INSTALL_HINT = "pip install 'diffgym[ray]'"

_RAY_METRIC = "metric/"  # prefix of the metrics in a trial's reported result


def import_ray():
    try:
        import ray
        from ray import tune
    except ImportError as err:
        raise ImportError(
            f"the ray backend needs Ray Tune, which is not installed: {RAY_INSTALL_HINT}"
        ) from err
    return ray, tune


def _ray_trial(
    config: dict[str, Any],
    *,
    task: Task,
    specs: dict[str, _PointSpec],
    n: int,
    seed: int,
    device: str,
    noise_version: int,
) -> None:
    """A Tune function trainable: evaluate the point ``config["key"]`` and report its numbers,
    with the driver's noise version (the key was computed with it)."""
    from ray import tune

    from diffgym.benchmarks.grid import _evaluate_spec
    from diffgym.envs.noise import set_default_noise_version

    set_default_noise_version(noise_version)

    record = _evaluate_spec(task, specs[config["key"]], n=n, seed=seed, device=device)
    report: dict[str, Any] = {
        "key": record.key,
        "nfe": record.cost.nfe,
        "samples": record.cost.samples,
        "grid_point_seconds": record.cost.seconds["grid_point"],
        "metrics_seconds": record.cost.seconds["metrics"],
    }
    report.update({_RAY_METRIC + k: v for k, v in record.metrics.items()})
    tune.report(report)


def _record_from_report(spec: _PointSpec, report: Mapping[str, Any]) -> PointResult:
    from diffgym.benchmarks.grid import PointResult

    metrics = {
        k[len(_RAY_METRIC) :]: float(v) for k, v in report.items() if k.startswith(_RAY_METRIC)
    }
    cost = Cost(
        nfe=int(report["nfe"]),
        samples=int(report["samples"]),
        seconds={
            "grid_point": float(report["grid_point_seconds"]),
            "metrics": float(report["metrics_seconds"]),
        },
    )
    return PointResult(spec.key, spec.family, spec.params, metrics, cost, spec.schedule,
                       noise_version=default_noise_version())  # the trial drew the driver's


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune's newer console output prints its banner even at ``verbose=0``; the legacy output
    (``RAY_AIR_NEW_OUTPUT=0``) prints nothing. Set it while Tune runs unless the user chose."""
    if "RAY_AIR_NEW_OUTPUT" in os.environ:
        yield
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def run_ray(
    task: Task,
    pending: list[_PointSpec],
    *,
    n: int,
    seed: int,
    device: torch.device | str,
    num_cpus: int | None,
    out_dir: Path | None,
    finish: Callable[[PointResult], None],
) -> None:
    ray, tune = import_ray()
    if not pending:
        return
    by_key = {s.key: s for s in pending}

    class Collector(tune.Callback):
        """Records each trial's result in the driver as soon as it arrives."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = result.get("key")
            if key in by_key:
                finish(_record_from_report(by_key.pop(key), result))

    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    scratch = None
    try:
        if out_dir is None:
            scratch = tempfile.TemporaryDirectory(prefix="diffgym-grid-ray-")
            storage = Path(scratch.name)
        else:
            storage = out_dir / "ray"
        trainable = tune.with_resources(
            tune.with_parameters(
                _ray_trial, task=task, specs=dict(by_key), n=n, seed=seed, device=str(device),
                noise_version=default_noise_version(),
            ),
            # One CPU per trial, plus one GPU when sampling on CUDA.
            {"cpu": 1, "gpu": 1 if torch.device(device).type == "cuda" else 0},
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"key": tune.grid_search(list(by_key))},
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(storage.resolve()),
                verbose=0,
                callbacks=[Collector()],
            ),
        )
        with _quiet_tune():
            results = tuner.fit()
        if results.errors:
            raise RuntimeError(
                f"{len(results.errors)} grid point(s) failed on Ray (the finished ones are saved; "
                f"rerun to retry the rest); first error: {results.errors[0]}"
            )
        if by_key:
            raise RuntimeError(f"Ray returned no result for {len(by_key)} grid point(s)")
    finally:
        if started:
            ray.shutdown()
        if scratch is not None:
            scratch.cleanup()
