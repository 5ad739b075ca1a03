"""Finite checks of the sampler (design §3): NaN/inf from a denoiser are found without a host
sync per step and reported with the stage, step index, sigma and sample where they first appear."""

from __future__ import annotations

import cmath
from collections.abc import Sequence

import torch

__all__ = ["FiniteCheck", "NonFiniteDenoiserError"]


class NonFiniteDenoiserError(FloatingPointError):
    """A denoiser returned NaN or inf."""


class FiniteCheck:
    """Finite checks of the sampler, deferred to the next host sync (or read at once on the CPU).

    :func:`sampler_step` records one value per step: the sum of the new state, which is finite
    whenever the state is (one cheap reduction; a NaN/inf anywhere makes it NaN/inf). Any NaN/inf
    that the denoiser or guide returns for an evaluated row reaches that row's new state (every
    stage output enters it with a non-zero weight, and ``0 * inf`` is NaN), so one reduction per
    step replaces one per stage. A sum that overflows although every entry is finite is
    confirmed entry by entry and then ignored, so the check never raises on finite samples. The
    flags are read with the one host sync of the next :func:`sampler_step` given this check, or
    by :meth:`check`; a failed flag is traced back to the first non-finite stage output, and
    :class:`NonFiniteDenoiserError` names its stage, step index, sigma and sample.

    On the CPU, where reading a value waits for no device, the sum is read at once and only a
    step whose sum is not finite is queued (with its state and stage outputs, for the trace):
    queued finite steps would keep every stage output of an episode alive, and that memory, not
    the reduction, was what the check cost a step (RESULTS §37). :attr:`unread` still counts
    every step recorded since the last read, so what raises, when and with which message is the
    same on every device.
    """

    max_pending = 64
    """Steps recorded without a host sync before :func:`sampler_step` reads them anyway."""

    def __init__(self) -> None:
        self._pending: list[tuple] = []
        self._unread = 0

    def record(
        self,
        state: torch.Tensor,
        outputs: Sequence[tuple],
        step_index: torch.Tensor,
        sigma: torch.Tensor,
    ) -> None:
        """Queue the check of ``state (B, ...)``, the samples after a step from step indices
        ``step_index (B,)`` at ``sigma (B,)`` (or 0-dim: every sample's); ``outputs``: ``(out
        (n, ...), rows (n,) or None for all, sigma_in (B,), stage name)`` of every evaluation of
        the step. A CPU state whose sum is finite is read now and not queued."""
        self._unread += 1
        total = state.sum()
        if state.device.type == "cpu" and cmath.isfinite(total.item()):  # real or complex
            return  # nothing to trace later: keep no tensor of this step alive
        self._pending.append((total, state, outputs, step_index, sigma))

    def flags(self) -> torch.Tensor | None:
        """The queued flags as one ``(steps,)`` bool tensor (``True`` = the step's sum is finite),
        to read with another host sync; ``None`` when nothing is queued."""
        if not self._pending:
            return None
        return torch.isfinite(torch.stack([p[0] for p in self._pending]))

    def __len__(self) -> int:
        """Steps queued (on the CPU: only the non-finite ones)."""
        return len(self._pending)

    @property
    def unread(self) -> int:
        """Steps recorded since the last read, queued or not: what :attr:`max_pending` bounds."""
        return self._unread

    def resolve(self, finite: Sequence[bool]) -> None:
        """Consume the host values of :meth:`flags`; raise for the first non-finite step."""
        pending, self._pending = self._pending[: len(finite)], self._pending[len(finite):]
        self._unread = len(self._pending)
        for ok, (_, state, outputs, step_index, sigma) in zip(finite, pending):
            if not ok:
                try:
                    self._raise(state, outputs, step_index, sigma)
                except NonFiniteDenoiserError:
                    self._pending, self._unread = [], 0
                    raise

    def check(self) -> None:
        """Read the queued flags now (one host sync) and raise if any step was not finite."""
        if self._pending:
            self.resolve(self.flags().tolist())
        self._unread = 0

    @staticmethod
    def _raise(state, outputs, step_index, sigma) -> None:
        """Raise for the first non-finite stage output or state entry (``None``: all finite, the
        queued sum only overflowed)."""
        for out, rows, sigma_in, what in outputs:
            bad = ~torch.isfinite(out.reshape(out.shape[0], -1)).all(dim=1)
            if bool(bad.any()):
                r = int(bad.nonzero()[0, 0])
                b = int(rows[r]) if rows is not None else r
                raise NonFiniteDenoiserError(
                    f"the denoiser returned NaN/inf ({what}) at step index "
                    f"{int(step_index[b])}, sigma={float(sigma_in[b]):.6g} (sample {b})"
                )
        bad = ~torch.isfinite(state.reshape(state.shape[0], -1)).all(dim=1)
        if not bool(bad.any()):
            return
        b = int(bad.nonzero()[0, 0])
        raise NonFiniteDenoiserError(
            f"the samples became NaN/inf at step index {int(step_index[b])}, "
            f"sigma={float(sigma if sigma.dim() == 0 else sigma[b]):.6g} (sample {b}; the "
            f"input was not finite)"
        )
