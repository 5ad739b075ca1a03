"""The digits tasks: ``digits`` (the shipped network, classifier-free guidance or autoguidance)
and ``digits-weak`` (its early snapshot with its own classifier-free guidance), both scored
against the whole data set (``Task.reference``). Registered on import of
:mod:`diffgym.envs.tasks`."""

from __future__ import annotations

import torch
from torch import nn

from diffgym.envs.denoisers import UncondBranch
from diffgym.envs.tasks import DataSampler, Task, array_data_sampler, register_task

__all__ = ["GUIDES", "build_digits", "build_digits_weak", "digits_task"]

GUIDES = ("uncond", "autoguidance")


def build_digits(*, guide: str = "uncond") -> Task:
    """``digits``: shipped class-conditional network; ``guide`` is ``"uncond"`` (classifier-free
    guidance) or ``"autoguidance"`` (the shipped early snapshot)."""
    from diffgym.envs.data import load_digits_data
    from diffgym.envs.train_denoiser import load_digits_denoiser

    if guide not in GUIDES:
        raise ValueError(f"unknown guide {guide!r}; allowed: {', '.join(GUIDES)}")
    model = load_digits_denoiser("model")
    x_all, y_all, _ = load_digits_data()
    counts = torch.bincount(y_all, minlength=10).double()
    return digits_task(
        model,
        guide=load_digits_denoiser("guide") if guide == "autoguidance" else None,
        data=array_data_sampler(x_all, y_all),
        label_probs=counts / counts.sum(),
        reference=(x_all, y_all),
    )


def build_digits_weak() -> Task:
    """``digits-weak``: the digits setting with a *weak* network, where the sampler matters.

    The denoiser is the shipped early snapshot of the digits training run (5 % of its steps, the
    network ``digits``' autoguidance uses) with classifier-free guidance from its own
    unconditional branch (it was trained with label dropout, like the final network). Unguided it
    is far from the data (FD-digits 34.4 at 18 steps against about 1.5 for ``digits``), and the
    guidance weight moves FD by tens of units: the headroom ``digits`` lacks (RESULTS §19). Same
    data, whole-data-set reference, menus and metrics as ``digits``.
    """
    from diffgym.envs.data import load_digits_data
    from diffgym.envs.train_denoiser import load_digits_denoiser

    model = load_digits_denoiser("guide")
    x_all, y_all, _ = load_digits_data()
    counts = torch.bincount(y_all, minlength=10).double()
    task = digits_task(
        model,
        data=array_data_sampler(x_all, y_all),
        label_probs=counts / counts.sum(),
        reference=(x_all, y_all),
    )
    return task.replace(name="digits-weak")


def digits_task(
    model: nn.Module,
    *,
    guide: nn.Module | None = None,
    data: DataSampler | None = None,
    label_probs: torch.Tensor | None = None,
    reference: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Task:
    """The ``digits`` task around a digits network ``model`` (the shipped one, or e.g. a randomly
    initialised one for timing): its menus, classifier-free guidance (or autoguidance with
    ``guide``), uniform labels unless ``label_probs`` is given, ``data`` (none by default) and
    the fixed ``reference`` set it is scored against (``build_digits``: the whole data set)."""

    def no_data(*args, **kwargs):
        raise RuntimeError("this digits task was built without data")

    return Task(
        name="digits",
        denoiser=model,
        guide=UncondBranch(model) if guide is None else guide,
        guide_kind="cfg" if guide is None else "autoguidance",
        data=no_data if data is None else data,
        label_probs=(
            torch.full((10,), 0.1, dtype=torch.float64) if label_probs is None else label_probs
        ),
        churn_levels=(0.0, 0.1, 0.25, 0.5),
        guidance_levels=(1.0, 1.5, 2.0, 3.0),
        feature_kind="image",
        metric_suite="digits",
        headline_metric="fd_digits",
        reference=reference,
    )


register_task("digits", build_digits, ("guide",))
register_task("digits-weak", build_digits_weak)
