"""Action menus: which knobs a task exposes, and menu indices -> knob levels (one lookup each)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from diffgym.envs.sampler import Knobs
from diffgym.envs.tasks import Task

__all__ = ["KNOBS", "ActionMenus"]

KNOBS = ("churn", "guidance", "renoise", "step")
"""Knob order in a ``MultiDiscrete`` action (only the knobs whose menu has > 1 entry); each is
also the name of its :class:`~diffgym.envs.sampler.Knobs` field."""

_INTEGER_KNOBS = ("renoise", "step")


class ActionMenus:
    """The active knobs of ``task`` (menus with more than one entry, in :data:`KNOBS` order) and
    lookup tables on ``device`` from menu indices to knob levels.

    Attributes:
        names: active knob names; ``menus``: name -> levels (entry 0 neutral); ``sizes``: menu
            sizes; ``levels``: name -> ``(size,)`` level tensor; ``renoise_budget``: the task's
            budget when renoise is active, else 0; ``guided``: guidance is active;
            ``schedule_factor``: the step knob's base-grid factor (1 when off), which is also the
            neutral ``advance`` of :func:`~diffgym.envs.sampler.sampler_step` on the base grid.

    Units on the base grid (:meth:`~diffgym.envs.tasks.Task.base_sigmas`): ``step`` levels are
    advances in base-grid levels; ``renoise`` menus stay in the task's default steps, so their
    level tables hold ``jump * schedule_factor`` base-grid levels (the renoise menus mean the
    same noise increase with and without the step knob, at the default grid positions).
    """

    def __init__(self, task: Task, *, device: torch.device | str, dtype: torch.dtype) -> None:
        every = {
            "churn": tuple(task.churn_levels),
            "guidance": tuple(task.guidance_levels),
            "renoise": tuple(task.renoise_jumps),
            "step": tuple(task.step_advances),
        }
        self.schedule_factor = int(task.schedule_factor)
        scale = {"renoise": self.schedule_factor}
        self.names = tuple(k for k in KNOBS if len(every[k]) > 1)
        self.menus = {k: every[k] for k in self.names}
        self.sizes = tuple(len(self.menus[k]) for k in self.names)
        self.levels = {
            k: torch.as_tensor(
                self.menus[k], device=device, dtype=torch.long if k in _INTEGER_KNOBS else dtype
            ) * scale.get(k, 1)
            for k in self.names
        }
        self.renoise_budget = int(task.renoise_budget) if "renoise" in self.names else 0
        self.guided = "guidance" in self.names

    def knobs(
        self,
        index: torch.Tensor | None,
        s_noise: torch.Tensor | None = None,
        used: Sequence[bool] | None = None,
    ) -> Knobs:
        """Menu indices ``(B, len(names))`` -> per-sample :class:`Knobs` (``s_noise`` ``(B,)``
        or ``None`` for the neutral 1). ``used[j] = False`` says knob ``j`` is at its neutral
        entry 0 in every sample (known on the host): it is left ``None``, which the sampler
        skips (``index`` may then be ``None`` when no knob is used)."""
        kw: dict[str, torch.Tensor] = {}
        for j, name in enumerate(self.names):
            if used is None or used[j]:
                kw[name] = self.levels[name][index[:, j]]
        if s_noise is not None and "churn" in kw:
            kw["s_noise"] = s_noise
        return Knobs(**kw)
