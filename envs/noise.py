"""Noise sources of the sampler (design §3.5): randomness is injected, never drawn from the global
RNG. :class:`BatchNoise` is one generator for the whole batch (fast; training);
:class:`PerSampleNoise` gives every sample its own counter-based stream, so a sample's noise
depends only on its seed (common random numbers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["PREFETCH_HASHES", "PREFETCH_MAX_DRAWS", "BatchNoise", "NoiseSource", "PerSampleNoise"]

# --------------------------------------------------------------------------------------------
# Noise sources
# --------------------------------------------------------------------------------------------


class NoiseSource:
    """Standard-normal noise for a batch of ``batch_size`` samples.

    ``randn(shape, needed)`` returns ``(batch_size, *shape)``. ``needed`` says whether any sample
    uses the draw; a source may skip the work (return zeros) when it is not needed.
    ``randn_rows`` and ``categorical_rows`` draw for a subset of the samples (starts of new
    episodes in the env). ``state_dict``/``load_state_dict`` save and restore the streams.
    """

    batch_size: int
    device: torch.device
    dtype: torch.dtype
    per_sample: bool = False

    def randn(self, shape: Sequence[int], *, needed: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def skip(self, shape: Sequence[int]) -> None:
        """Consume one draw that no sample uses (no tensor is made): the same stream state as
        ``randn(shape, needed=False)``."""
        self.randn(shape, needed=False)

    def randn_rows(self, index: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """``(len(index), *shape)`` standard normals for the samples ``index`` (int64, unique)."""
        raise NotImplementedError

    def categorical_rows(self, index: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """``(len(index),)`` int64 draws from the categorical ``probs (K,)``, one per sample."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def _check_state(state: dict[str, Any], keys: set[str], per_sample: bool, batch: int) -> None:
    """``ValueError`` unless ``state`` is a noise state of this kind and batch size."""
    kinds = ("BatchNoise", "PerSampleNoise")
    if isinstance(state, dict) and state.get("per_sample") in (0, 1, False, True):
        if int(state["per_sample"]) != int(per_sample):
            raise ValueError(
                f"the state is a {kinds[int(state['per_sample'])]} state; this is a "
                f"{kinds[int(per_sample)]}"
            )
    if not isinstance(state, dict) or set(state) != keys:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a noise state: expected keys {sorted(keys)}, got {got}")
    if int(state["batch_size"]) != batch:
        raise ValueError(
            f"the state is for {int(state['batch_size'])} samples, this source has {batch}"
        )


class BatchNoise(NoiseSource):
    """One generator for the whole batch (fast). Draws nothing when no sample needs noise.

    Args:
        batch_size: number of samples.
        generator: a ``torch.Generator`` on ``device`` (created and seeded from ``seed`` if None).
        device, dtype: of the returned noise.
        seed: seed of the generator created when ``generator`` is None.
    """

    per_sample = False

    def __init__(
        self,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.dtype = dtype
        if generator is None:
            generator = torch.Generator(device=self.device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
        self.generator = generator

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def randn(self, shape: Sequence[int], *, needed: bool = True) -> torch.Tensor:
        full = (self.batch_size, *shape)
        if not needed:
            return torch.zeros(full, device=self.device, dtype=self.dtype)
        return torch.randn(full, generator=self.generator, device=self.device, dtype=self.dtype)

    def skip(self, shape: Sequence[int]) -> None:
        pass  # an unneeded draw does not advance the one generator

    def randn_rows(self, index: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(
            (index.numel(), *shape), generator=self.generator, device=self.device, dtype=self.dtype
        )

    def categorical_rows(self, index: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        if index.numel() == 0:
            return torch.zeros(0, dtype=torch.long, device=probs.device)
        return torch.multinomial(probs, index.numel(), replacement=True, generator=self.generator)

    def state_dict(self) -> dict[str, Any]:
        """``{"per_sample": 0, "batch_size": int, "generator": uint8 CPU tensor}``."""
        return {"per_sample": 0, "batch_size": self.batch_size,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; ``ValueError`` for another kind, batch size or device."""
        _check_state(state, {"per_sample", "batch_size", "generator"}, False, self.batch_size)
        try:
            self.generator.set_state(torch.as_tensor(state["generator"]).cpu())
        except RuntimeError as err:
            raise ValueError(
                f"the noise state does not fit this {self.generator.device} generator ({err})"
            ) from err


# Counter-based per-sample streams: splitmix64 (Steele et al. 2014) in int64 torch ops, which wrap
# modulo 2**64 like the unsigned original; ``>>`` is arithmetic in torch, so logical shifts mask.
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment: element lanes of one draw
_DRAW = 0xD1B54A32D192ED03  # odd multiplier of the draw counter
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_ONE_BITS = 0x3FF0000000000000  # float64 1.0: OR-ing 52 mantissa bits gives a number in [1, 2)
_MANTISSA_HI32 = 0x000FFFFFFFF00000  # the top 32 of the 52 mantissa bits
PREFETCH_HASHES = 1 << 16
"""Most hashes (two normals each) one prefetched block of full-batch draws may hold."""
PREFETCH_MAX_DRAWS = 64
"""Most full-batch draws one prefetched block holds."""


def _signed(v: int) -> int:
    """An unsigned 64-bit integer as the int64 with the same bits."""
    v &= _MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


def _mix64_int(z: int) -> int:
    """splitmix64's finaliser on a Python int (unsigned 64-bit arithmetic)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """splitmix64's finaliser, elementwise on int64 tensors, in place on ``z`` (returned).

    In place with one scratch tensor: fresh temporaries of every op cost more than the ops on
    a CPU (allocation and cache misses dominate at 2048 x 32 elements)."""
    t = torch.empty_like(z) if scratch is None else scratch
    for shift, mult in ((30, _signed(_MIX1)), (27, _signed(_MIX2)), (31, None)):
        torch.bitwise_right_shift(z, shift, out=t)
        t &= (1 << (64 - shift)) - 1  # logical shift
        z ^= t
        if mult is not None:
            z *= mult
    return z


def _seed_key(seed: int) -> int:
    """A sample's stream key (int64 bits) from its integer seed."""
    return _signed(_mix64_int(_mix64_int(int(seed)) ^ 0x5851F42D4C957F2D))


class PerSampleNoise(NoiseSource):
    """Per-sample counter-based streams: sample ``b``'s noise depends only on its own seed.

    Draw ``c`` of sample ``b`` is a pure function of ``(key(seed_b), c)``: a splitmix64 hash of
    the key, the draw counter and the element index, turned into normals by Box-Muller in float64
    (two normals per 64-bit hash). Every call of :meth:`randn` advances every sample's counter by
    one, whether or not the sample uses the draw, so a sample's stream never depends on the other
    samples or on the batch size; :meth:`randn_rows` and :meth:`categorical_rows` advance only the
    listed samples. One draw is one vectorised computation for the whole batch (integer ops are
    exact and the float64 maths is the same, so CPU and GPU give the same numbers up to the last
    bit of ``log``/``cos``).

    Small draws are prefetched: a full-batch :meth:`randn` computes the next 1, 2, 4, ... draws
    of that shape at once (doubling while nothing else touches the streams, up to
    :data:`PREFETCH_MAX_DRAWS` draws and :data:`PREFETCH_HASHES` hashes per block) and serves the
    following calls from the block. On small batches a draw costs mostly per-operation overhead,
    which a block pays once. The numbers are the same as without prefetching, since draw ``c`` is
    a pure function of ``(key, c)``; a draw too large for two per block (e.g. ``digits`` at
    B = 2048) is computed alone, as before. Anything that moves some samples' counters
    (:meth:`randn_rows`, :meth:`uniform_rows`, :meth:`reseed`, :meth:`load_state_dict`) drops
    the blocks.

    The noise is exactly the same whatever the batch; the *samples* of a neural denoiser can still
    differ across batch sizes in the last bits (at most about 4e-6 on ``digits``), because the
    network's kernels choose their blocking by batch size. The analytic mixture denoisers are
    exact per row.

    Args:
        seeds: ``batch_size`` integer seeds, one per sample.
        device, dtype: of the returned noise (the streams live on ``device``).
        prefetch: serve small full-batch draws from prefetched blocks (the same numbers; off:
            every draw is computed when asked for).

    Raises:
        ValueError: no seeds.
    """

    per_sample = True

    def __init__(
        self,
        seeds: Sequence[int] | torch.Tensor,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        prefetch: bool = True,
    ) -> None:
        seeds = [int(s) for s in (seeds.tolist() if torch.is_tensor(seeds) else seeds)]
        if not seeds:
            raise ValueError("PerSampleNoise needs at least one seed")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = len(seeds)
        self.prefetch = bool(prefetch)
        self._keys = torch.tensor([_seed_key(s) for s in seeds], dtype=torch.long,
                                  device=self.device)
        self._counters = torch.zeros(self.batch_size, dtype=torch.long, device=self.device)
        self._lag = 0  # full-batch draws not yet added to every counter (one add when read)
        self._lanes: dict[int, torch.Tensor] = {}
        self._scratch: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
        self._key_scratch: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._drop_blocks()

    def _drop_blocks(self) -> None:
        """Forget the prefetched draws (the counters of some samples moved on their own)."""
        self._t = 0  # full-batch draws since the blocks were dropped
        self._blocks: dict[tuple[int, ...], tuple[int, torch.Tensor]] = {}
        self._next_block = 1

    def reseed(self, index: int, seed: int) -> None:
        """Restart sample ``index``'s stream from ``seed``."""
        self._keys[index] = _seed_key(seed)
        self._flushed()[index] = 0
        self._drop_blocks()

    def _flushed(self) -> torch.Tensor:
        """The counters, with the full-batch draws since the last read added (in place)."""
        if self._lag:
            self._counters += self._lag
            self._lag = 0
        return self._counters

    # The draws ---------------------------------------------------------------------------

    def _draw_keys(self, keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
        """``(n,)`` int64 key of each sample's current draw."""
        return _mix64(keys + counters * _signed(_DRAW))

    def _normals(self, draw_keys: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """``(n, *shape)`` normals of the draws ``draw_keys (n,)`` (Box-Muller, float64)."""
        n, m = draw_keys.shape[0], math.prod(shape)
        pairs = (m + 1) // 2
        lanes = self._lanes.get(pairs)
        if lanes is None:
            lanes = torch.tensor([_signed(_GOLDEN * (p + 1)) for p in range(pairs)],
                                 dtype=torch.long, device=self.device)
            self._lanes[pairs] = lanes
        # Scratch buffers are kept between full-batch draws: fresh large tensors cost a page
        # fault per page on a CPU, several times the arithmetic below.
        scratch = self._scratch.get((n, pairs))
        if scratch is None:
            scratch = tuple(torch.empty((n, pairs), dtype=torch.long, device=self.device)
                            for _ in range(3))
            if n >= self.batch_size:  # a full-batch draw or a prefetched block (not rows)
                self._scratch = {(n, pairs): scratch}
        h, t, c = scratch
        torch.add(lanes, draw_keys[:, None], out=h)  # (n, pairs): one hash per two normals
        _mix64(h, t)
        # Box-Muller: r = sqrt(-2 ln u1) from the high 32 bits, theta = 2 pi u2 from the low.
        # 32 bits -> float64 by setting them as the top of the mantissa of a number in [1, 2)
        # (integer ops and a view; int64 -> float64 conversion is not vectorised on most CPUs).
        torch.bitwise_right_shift(h, 12, out=t)  # bits 63..32 -> mantissa bits 51..20
        t &= _MANTISSA_HI32
        t |= _ONE_BITS
        r = t.view(torch.float64)
        torch.sub(2.0, r, out=r)  # u1 = 1 - a 2^-32, in (0, 1]
        r.log_().mul_(-2.0).sqrt_()
        h <<= 20  # bits 31..0 -> mantissa bits 51..20
        h &= _MANTISSA_HI32
        h |= _ONE_BITS
        theta = h.view(torch.float64).sub_(1.0).mul_(2.0 * math.pi)  # 2 pi u2, u2 in [0, 1)
        # cos and sin on contiguous buffers (the vectorised kernels), scaled by r in place; the
        # pairs are interleaved by the two copies into the fresh output, which also round to
        # its dtype. The same float64 products rounded once, as before this layout (§30).
        cos = c.view(torch.float64)
        torch.cos(theta, out=cos).mul_(r)
        sin = theta.sin_().mul_(r)
        out = torch.empty((n, pairs, 2), dtype=self.dtype, device=self.device)
        out[:, :, 0].copy_(cos)
        out[:, :, 1].copy_(sin)
        flat = out.reshape(n, 2 * pairs)
        if 2 * pairs != m:  # an odd count: the last pair's second number is dropped
            flat = flat[:, :m].contiguous()
        return flat.reshape(n, *shape)  # never a scratch buffer

    def _full_draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The current full-batch draw of ``shape``, from a prefetched block when it holds it."""
        t0, block = self._blocks.get(shape, (0, None))
        if block is not None and 0 <= self._t - t0 < block.shape[0]:
            return block[self._t - t0]
        n = self.batch_size
        per_draw = n * ((math.prod(shape) + 1) // 2)
        k = max(1, min(self._next_block, PREFETCH_HASHES // max(per_draw, 1)))
        k = k if self.prefetch else 1
        self._next_block = min(2 * k, PREFETCH_MAX_DRAWS)
        if k == 1:
            return self._normals(self._draw_keys(self._keys, self._flushed()), shape)
        ahead = torch.arange(k, dtype=torch.long, device=self.device)[:, None] * _signed(_DRAW)
        keys, t = self._key_scratch.get(k * n, (None, None))
        if keys is None:  # kept between blocks, as the scratch of _normals
            keys, t = (torch.empty(k * n, dtype=torch.long, device=self.device) for _ in range(2))
            self._key_scratch = {k * n: (keys, t)}
        base = self._keys + self._flushed() * _signed(_DRAW)
        torch.add(base[None, :], ahead, out=keys.view(k, n))
        _mix64(keys, t)
        block = self._normals(keys, shape).reshape(k, n, *shape)
        self._blocks[shape] = (self._t, block)
        return block[0]

    def randn(self, shape: Sequence[int], *, needed: bool = True) -> torch.Tensor:
        if needed:
            out = self._full_draw(tuple(shape))
        else:
            out = torch.zeros((self.batch_size, *shape), device=self.device, dtype=self.dtype)
        self._lag += 1
        self._t += 1
        return out

    def skip(self, shape: Sequence[int]) -> None:
        self._lag += 1  # every sample's stream moves on, as after a draw
        self._t += 1

    def randn_rows(self, index: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        self._drop_blocks()
        index = index.to(self.device)
        out = self._normals(self._draw_keys(self._keys[index], self._flushed()[index]),
                            tuple(shape))
        self._counters[index] += 1
        return out

    def uniform_rows(self, index: torch.Tensor) -> torch.Tensor:
        """``(len(index),)`` float64 uniforms in ``[0, 1)`` (52 bits), one draw per sample."""
        self._drop_blocks()
        index = index.to(self.device)
        h = self._draw_keys(self._keys[index], self._flushed()[index])
        self._counters[index] += 1
        bits = _shr(_mix64(h + _signed(_GOLDEN)), 12) | _ONE_BITS  # 52 random mantissa bits
        return bits.view(torch.float64) - 1.0

    def categorical_rows(self, index: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Inverse-CDF draws from ``probs (K,)`` (any non-negative weights), one per sample."""
        cdf = torch.cumsum(probs.to(self.device, torch.float64), 0)
        u = self.uniform_rows(index) * cdf[-1]
        return torch.searchsorted(cdf, u, right=True).clamp_max(probs.shape[0] - 1)

    # State -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"per_sample": 1, "batch_size": int, "keys": (B,) int64, "counters": (B,) int64}``
        (CPU tensors)."""
        return {"per_sample": 1, "batch_size": self.batch_size,
                "keys": self._keys.cpu().clone(), "counters": self._flushed().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (from any device); ``ValueError`` if it does not fit."""
        _check_state(state, {"per_sample", "batch_size", "keys", "counters"}, True,
                     self.batch_size)
        for name in ("keys", "counters"):
            v = torch.as_tensor(state[name])
            if v.shape != (self.batch_size,) or v.dtype != torch.long:
                raise ValueError(
                    f"noise state {name!r} must be a ({self.batch_size},) int64 tensor, got "
                    f"{tuple(v.shape)} {v.dtype}"
                )
        self._keys = torch.as_tensor(state["keys"]).to(self.device).clone()
        self._counters = torch.as_tensor(state["counters"]).to(self.device).clone()
        self._lag = 0
        self._drop_blocks()
