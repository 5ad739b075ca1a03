"""Per-step levels of a sigma table, kept between steps (design §3.3).

A step that every sample takes from one step index (``sampler_step(..., uniform=i)``: the env's
neutral steps, a fixed schedule's whole trajectory) needs the same few 0-dim levels of the table
at every visit. :func:`uniform_levels` builds them once per (table, step, batch size) and keeps
them while the table lives unchanged, so each step saves a handful of tensor operations; every
value is the one the step computed from the table itself, so results are unchanged.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

__all__ = ["Levels", "uniform_levels"]


class Levels:
    """What a step that every sample takes from step index ``cur`` to ``nxt`` of a sigma table
    needs of it: the 0-dim levels ``t_cur``, ``t_next`` and ``h = t_next - t_cur``, their
    ``(B,)`` expansions for the model, the 0-dim index advance and the Heun weight 1/2. Each is
    the value the step computed from the table itself before, so results are unchanged; building
    them once saves a handful of tensor operations per step (:func:`uniform_levels`)."""

    __slots__ = ("t_cur", "t_next", "h", "t_cur_b", "t_next_b", "advance", "half")

    def __init__(self, sig: torch.Tensor, cur: int, nxt: int, batch: int) -> None:
        # copies, not views: a view would keep the table alive, and with it this cache entry
        self.t_cur, self.t_next = sig[cur].clone(), sig[nxt].clone()
        self.h = self.t_next - self.t_cur
        self.t_cur_b, self.t_next_b = self.t_cur.expand(batch), self.t_next.expand(batch)
        self.advance = torch.tensor(nxt - cur, dtype=torch.long, device=sig.device)
        self.half = torch.tensor(0.5, dtype=sig.dtype, device=sig.device)

    def expanded(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """``t`` (0-dim) as ``(batch,)``: the kept expansion when ``t`` is one of the levels."""
        if t is self.t_cur:
            return self.t_cur_b
        return self.t_next_b if t is self.t_next else t.expand(batch)


_LEVELS: dict[int, tuple[Any, int, dict[tuple[int, int, int], Levels]]] = {}
"""Kept :class:`Levels` per sigma table: ``id(table) -> (weak reference, the table's version,
{(cur, nxt, batch): levels})``; an entry goes when its table is freed and is rebuilt when the
table is written to."""


def uniform_levels(sig: torch.Tensor, cur: int, nxt: int, batch: int) -> Levels:
    """The :class:`Levels` of the step ``cur -> nxt`` of ``sig`` for ``batch`` samples, kept
    while ``sig`` lives unchanged (an inference tensor, which keeps no version, is not kept)."""
    try:
        version = sig._version
    except RuntimeError:
        return Levels(sig, cur, nxt, batch)
    key = id(sig)
    entry = _LEVELS.get(key)
    if entry is None or entry[0]() is not sig or entry[1] != version:
        ref = weakref.ref(sig, lambda _, key=key: _LEVELS.pop(key, None))
        entry = _LEVELS[key] = (ref, version, {})
    levels = entry[2].get((cur, nxt, batch))
    if levels is None:
        levels = entry[2][(cur, nxt, batch)] = Levels(sig, cur, nxt, batch)
    return levels
