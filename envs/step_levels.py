"""Per-step levels of a sigma table, kept between steps, and the step's arithmetic (design §3.3).

A step that every sample takes from one step index (``sampler_step(..., uniform=i)``: the env's
neutral steps, a fixed schedule's whole trajectory) needs the same few 0-dim levels of the table
at every visit. :func:`uniform_levels` builds them once per (table, step, batch size) and keeps
them while the table lives unchanged, so each step saves a handful of tensor operations; every
value is the one the step computed from the table itself, so results are unchanged.

"Unchanged" is read from the table's version counter, as autograd does: a write through
``.data``, through a numpy view or a swap of ``.data`` does not bump it, and the kept levels then
stay stale; write a sigma table in place only through the tensor (or pass a new one). A table
that requires grad is never kept (its levels are rebuilt per step and stay on the graph), and
kept levels are built outside inference mode, so a later autograd pass can use them.

:func:`euler_point` and :func:`heun_point` are the step's arithmetic, shared by
:func:`~diffgym.envs.sampler.sampler_step`'s general path and its short path for neutral steps.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

__all__ = ["Levels", "euler_point", "heun_point", "uniform_levels"]


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
        # torch.full, not torch.tensor: no host-to-device copy (a stream sync on CUDA)
        self.advance = torch.full((), nxt - cur, dtype=torch.long, device=sig.device)
        self.half = torch.full((), 0.5, dtype=sig.dtype, device=sig.device)

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
    except RuntimeError:  # an inference tensor keeps no version
        return Levels(sig, cur, nxt, batch)
    if sig.requires_grad:
        return Levels(sig, cur, nxt, batch)
    key = id(sig)
    entry = _LEVELS.get(key)
    if entry is None or entry[0]() is not sig or entry[1] != version:
        ref = weakref.ref(sig, lambda _, key=key: _LEVELS.pop(key, None))
        entry = _LEVELS[key] = (ref, version, {})
    levels = entry[2].get((cur, nxt, batch))
    if levels is None:
        with torch.inference_mode(False):  # normal tensors, usable in and out of inference mode
            levels = entry[2][(cur, nxt, batch)] = Levels(sig, cur, nxt, batch)
    return levels


def euler_point(x_hat: torch.Tensor, x0_hat: torch.Tensor, t_hat: torch.Tensor,
                h: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """``d = (x_hat - x0_hat) / t_hat`` and the Euler point ``x_hat + h d`` (``t_hat``, ``h``
    broadcast against ``x_hat``); in place on fresh temporaries (+ and * commute exactly)."""
    d_cur = (x_hat - x0_hat).div_(t_hat)
    return d_cur, torch.mul(d_cur, h).add_(x_hat)


def heun_point(x_hat: torch.Tensor, x_euler: torch.Tensor, x0_prime: torch.Tensor,
               d_cur: torch.Tensor, t_eval: torch.Tensor, h: torch.Tensor | float,
               half: torch.Tensor | float) -> torch.Tensor:
    """The Heun point ``x_hat + h (d_cur / 2 + d' / 2)``, ``d' = (x_euler - x0_prime) /
    t_eval``. It overwrites ``d_cur``, unless ``h`` requires grad: the Euler point's product
    saved ``d_cur`` for the backward pass then."""
    d_prime = (x_euler - x0_prime).div_(t_eval)
    keep = torch.is_tensor(h) and h.requires_grad and torch.is_grad_enabled()
    d_half = d_cur.mul(half) if keep else d_cur.mul_(half)
    return d_half.add_(d_prime.mul_(half)).mul_(h).add_(x_hat)
