"""A cost ledger: denoiser evaluations and wall-clock seconds by category (design §5).

Cost is counted in denoiser evaluations summed over samples (NFE × samples) and in wall-clock
seconds on the same machine. A :class:`Cost` is an immutable value: costs add with ``+`` (and
``sum(costs)``), and round-trip through JSON with :meth:`Cost.to_dict` / :meth:`Cost.from_dict`.

Example::

    total = Cost()
    with Stopwatch() as sw:
        result = sample(...)
    total += Cost(nfe=int(result.nfe.sum()), samples=n, seconds={"rollouts": sw.seconds})
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["COST_CATEGORIES", "Cost", "Stopwatch"]

COST_CATEGORIES = (
    "rollouts",  # environment rollouts of a policy being trained (sampling + reward)
    "discriminator",  # discriminator / reward-net updates
    "policy_update",  # policy-gradient updates
    "evaluation",  # sampling the final evaluation set of a method
    "grid_point",  # sampling one grid-search point
    "metrics",  # scoring samples (task metrics)
)
"""The wall-clock categories a :class:`Cost` may hold."""


@dataclass(frozen=True)
class Cost:
    """Compute spent to obtain a result.

    Attributes:
        nfe: denoiser evaluations summed over samples (a guided stage counts 2, as in
            :func:`diffgym.envs.sampler.sampler_step`).
        samples: samples (trajectories) run through the denoiser.
        seconds: wall-clock seconds by category, each a key of :data:`COST_CATEGORIES`.

    Raises:
        ValueError: a negative or non-integer count, a negative or non-finite time, an unknown
            category.
    """

    nfe: int = 0
    samples: int = 0
    seconds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("nfe", "samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"Cost.{name} must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        seconds = {}
        for category, value in self.seconds.items():
            if category not in COST_CATEGORIES:
                raise ValueError(
                    f"unknown cost category {category!r}; allowed: {', '.join(COST_CATEGORIES)}"
                )
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"seconds[{category!r}] must be finite and >= 0, got {value}")
            seconds[category] = value
        # A private copy in the canonical category order: the value stays immutable in practice.
        ordered = {c: seconds[c] for c in COST_CATEGORIES if c in seconds}
        object.__setattr__(self, "seconds", ordered)

    @property
    def total_seconds(self) -> float:
        """Wall-clock seconds over all categories."""
        return float(sum(self.seconds.values()))

    @property
    def nfe_per_sample(self) -> float:
        """Mean denoiser evaluations per sample (``nan`` when no sample was drawn)."""
        return self.nfe / self.samples if self.samples else math.nan

    def add_seconds(self, category: str, seconds: float) -> Cost:
        """A copy with ``seconds`` more in ``category``."""
        return self + Cost(seconds={category: seconds})

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        seconds = dict(self.seconds)
        for category, value in other.seconds.items():
            seconds[category] = seconds.get(category, 0.0) + value
        return Cost(nfe=self.nfe + other.nfe, samples=self.samples + other.samples, seconds=seconds)

    def __radd__(self, other: Any) -> Cost:
        # ``sum(costs)`` starts from the integer 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"nfe", "samples", "seconds": {category: s}, "total_seconds"}``."""
        return {
            "nfe": self.nfe,
            "samples": self.samples,
            "seconds": dict(self.seconds),
            "total_seconds": self.total_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        """Inverse of :meth:`to_dict` (``total_seconds`` is recomputed, not read)."""
        return cls(
            nfe=data.get("nfe", 0), samples=data.get("samples", 0), seconds=data.get("seconds", {})
        )


class Stopwatch:
    """Wall-clock timer, a context manager: ``with Stopwatch() as sw: ...``; then ``sw.seconds``.

    Inside the block ``seconds`` is the time elapsed so far. With a CUDA ``device`` the device is
    synchronised on entry and exit, so queued kernels are counted where they were launched.

    Args:
        device: the device whose queued work should be counted (only CUDA needs this).
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else None
        self._start: float | None = None
        self._seconds = 0.0

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Stopwatch:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sync()
        assert self._start is not None
        self._seconds = time.perf_counter() - self._start
        self._start = None

    @property
    def seconds(self) -> float:
        """Seconds between entry and exit (elapsed so far while running)."""
        if self._start is not None:
            return time.perf_counter() - self._start
        return self._seconds
