"""Noise sources of the sampler (design §3.5): randomness is injected, never drawn from the global
RNG. :class:`BatchNoise` is one generator for the whole batch (fast; training);
:class:`PerSampleNoise` gives every sample its own counter-based stream, so a sample's noise
depends only on its seed (common random numbers)."""

from __future__ import annotations

import math
import operator
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "NOISE_VERSIONS",
    "NOISE_VERSION_ENV",
    "PREFETCH_HASHES",
    "PREFETCH_MAX_DRAWS",
    "BatchNoise",
    "NoiseSource",
    "PerSampleNoise",
    "default_noise_version",
    "noise_key_fields",
    "set_default_noise_version",
]

NOISE_VERSIONS = (1, 2)
"""The per-sample generators (:class:`PerSampleNoise`): 1 is float64 Box-Muller with two
splitmix64 hashes per pair of normals on small draws; 2 (the default) is one hash per pair and a
float32 inverse-CDF transform, 1.4-1.7x cheaper per draw. They give different numbers from the
same seeds."""
NOISE_VERSION_ENV = "DIFFGYM_NOISE_VERSION"
"""Environment variable that holds the default version (so worker processes inherit it)."""
_DEFAULT_VERSION = 2


def _check_version(version: object, what: str = "noise version") -> int:
    """``version`` (an integer, numpy's too, or its decimal string) as an int of
    :data:`NOISE_VERSIONS`; ``ValueError`` naming ``what`` otherwise (``bool`` is refused)."""
    v = None
    if isinstance(version, str):
        v = int(version) if version.strip().isdigit() else None
    elif not isinstance(version, bool):
        try:
            v = operator.index(version)
        except TypeError:
            v = None
    if v not in NOISE_VERSIONS:
        raise ValueError(f"{what} must be one of {NOISE_VERSIONS}, got {version!r}")
    return v


def default_noise_version() -> int:
    """The version a :class:`PerSampleNoise` gets when none is given: ``$DIFFGYM_NOISE_VERSION``
    if set, else 2. ``ValueError`` for a set value that is not a version."""
    value = os.environ.get(NOISE_VERSION_ENV)
    if value is None or value == "":
        return _DEFAULT_VERSION
    return _check_version(value.strip(), f"${NOISE_VERSION_ENV}")


def set_default_noise_version(version: int) -> None:
    """Make ``version`` the default of this process and of the processes it starts (it is kept in
    ``$DIFFGYM_NOISE_VERSION``); the command line's ``diffgym --noise-version``."""
    os.environ[NOISE_VERSION_ENV] = str(_check_version(version))


def noise_key_fields(version: int | None = None) -> dict[str, int]:
    """The fields a cache key of per-sample-noise results adds for ``version`` (default: the
    current default): none for version 1, so keys written before versions existed still match;
    ``{"noise_version": v}`` otherwise."""
    v = default_noise_version() if version is None else _check_version(version)
    return {} if v == 1 else {"noise_version": v}


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
# Version 2 reads each 64-bit hash as two int32 words, the low word first.
_LOW_WORD_FIRST = sys.byteorder == "little"
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

    Draw ``c`` of sample ``b`` is a pure function of ``(key(seed_b), c)``: splitmix64 hashes of
    the key, the draw counter and the pair index, two normals per 64-bit hash. Every call of
    :meth:`randn` advances every sample's counter by one, whether or not the sample uses the
    draw, so a sample's stream never depends on the other samples or on the batch size;
    :meth:`randn_rows` and :meth:`categorical_rows` advance only the listed samples. One draw is
    one vectorised computation for the whole batch (integer ops are exact and the float maths is
    the same, so CPU and GPU give the same numbers up to the last bits of ``log``/``cos`` or
    ``erfinv``). :meth:`uniform_rows` (and so :meth:`categorical_rows`) is the same in both
    versions.

    Two generators (``version``, :data:`NOISE_VERSIONS`), with different numbers:

    * **2** (the default): pair ``p`` of draw ``c`` is ``h = mix(key + c D + (p + 1) G)``, one
      hash. Its low and then its high 32-bit word each give one normal: the word's top 24 bits
      ``v`` (signed) map to ``sqrt(2) erfinv((v + 1/2) / 2^23)``, the standard normal quantile
      of the midpoint of one of 2^24 equal bins, in float32. The numbers of a draw are in word
      order (the last word dropped when ``m`` is odd); other dtypes are the float32 numbers
      cast. The largest ``|z|`` is 5.42 (a 6e-8 two-sided tail is cut, as with float32
      uniforms in general).
    * **1** (runs before this version existed; ``--noise-version 1``): ``h = mix(mix(key + c D)
      + (p + 1) G)`` and Box-Muller in float64 from 32-bit uniforms, rounded once to the dtype;
      the pairs are interleaved (cos, sin, cos, sin, ...).

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
        version: the generator (default :func:`default_noise_version`).

    Raises:
        ValueError: no seeds, or an unknown version.
    """

    per_sample = True

    def __init__(
        self,
        seeds: Sequence[int] | torch.Tensor,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        prefetch: bool = True,
        version: int | None = None,
    ) -> None:
        seeds = [int(s) for s in (seeds.tolist() if torch.is_tensor(seeds) else seeds)]
        if not seeds:
            raise ValueError("PerSampleNoise needs at least one seed")
        self.version = default_noise_version() if version is None else _check_version(version)
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
        """``(n,)`` int64 key of each sample's current draw (hashed by version 1 only: version 2
        hashes it once with the pair index)."""
        base = keys + counters * _signed(_DRAW)
        return _mix64(base) if self.version == 1 else base

    def _hashes(self, draw_keys: torch.Tensor, pairs: int) -> tuple[torch.Tensor, ...]:
        """Scratch ``(h, t, c)`` of ``(n, pairs)`` int64, ``h`` the hash of every pair."""
        n = draw_keys.shape[0]
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
        h, t, _ = scratch
        torch.add(lanes, draw_keys[:, None], out=h)  # (n, pairs): one hash per two normals
        _mix64(h, t)
        return scratch

    def _normals(self, draw_keys: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """``(n, *shape)`` normals of the draws ``draw_keys (n,)`` (version 1: Box-Muller)."""
        if self.version == 2:
            return self._normals_v2(draw_keys, shape)
        n, m = draw_keys.shape[0], math.prod(shape)
        pairs = (m + 1) // 2
        h, t, c = self._hashes(draw_keys, pairs)
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

    def _normals_v2(self, draw_keys: torch.Tensor, shape: Sequence[int],
                    hashed_in: torch.Tensor | None = None) -> torch.Tensor:
        """Version 2: one hash per pair; each 32-bit word's top 24 bits ``v`` (signed) give
        ``sqrt(2) erfinv((v + 1/2) / 2^23)`` in float32. ``hashed_in``: for one pair per
        sample, ``draw_keys`` already hold the pair's lane and are hashed in place, with
        ``hashed_in`` as the scratch."""
        n, m = draw_keys.shape[0], math.prod(shape)
        pairs = (m + 1) // 2
        if hashed_in is not None and pairs == 1:
            h = _mix64(draw_keys, hashed_in)[:, None]
        else:
            h = self._hashes(draw_keys, pairs)[0]
        w = h.view(torch.int32)  # (n, 2 pairs) words
        if not _LOW_WORD_FIRST:  # big-endian: the low word first, as on little-endian
            w = w.view(n, pairs, 2).flip(-1).reshape(n, 2 * pairs)
        torch.bitwise_right_shift(w, 8, out=w)  # v in [-2^23, 2^23): exact in float32
        z = torch.empty(w.shape, dtype=torch.float32, device=self.device)
        torch.mul(w, 2.0**-23, out=z)  # v / 2^23 in float32, exactly (v has 24 bits)
        z.add_(2.0**-24)  # (v + 1/2) / 2^23 in (-1, 1), exactly
        z.erfinv_().mul_(math.sqrt(2.0))  # the standard normal quantile of (1 + x) / 2
        if 2 * pairs != m:  # an odd count: the last word is dropped
            z = z[:, :m]
        return z.to(self.dtype).contiguous().reshape(n, *shape)

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
        one_pair = self.version == 2 and math.prod(shape) <= 2
        if one_pair:  # add the only lane here, on n keys, not on the k n keys of the block
            base += _signed(_GOLDEN)
        torch.add(base[None, :], ahead, out=keys.view(k, n))
        if self.version == 1:
            _mix64(keys, t)
            block = self._normals(keys, shape).reshape(k, n, *shape)
        else:
            block = self._normals_v2(keys, shape, hashed_in=t if one_pair else None)
            block = block.reshape(k, n, *shape)
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
        h = _mix64(self._keys[index] + self._flushed()[index] * _signed(_DRAW))
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
        """``{"per_sample": 1, "batch_size": int, "keys": (B,) int64, "counters": (B,) int64,
        "version": int}`` (CPU tensors)."""
        return {"per_sample": 1, "batch_size": self.batch_size,
                "keys": self._keys.cpu().clone(), "counters": self._flushed().cpu().clone(),
                "version": self.version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (from any device), its generator version included (a
        state without one was written before versions existed: version 1); ``ValueError`` if
        it does not fit."""
        keys = {"per_sample", "batch_size", "keys", "counters"}
        versioned = isinstance(state, dict) and "version" in state
        _check_state(state, keys | ({"version"} if versioned else set()), True, self.batch_size)
        version = _check_version(state["version"], "noise state 'version'") if versioned else 1
        for name in ("keys", "counters"):
            v = torch.as_tensor(state[name])
            if v.shape != (self.batch_size,) or v.dtype != torch.long:
                raise ValueError(
                    f"noise state {name!r} must be a ({self.batch_size},) int64 tensor, got "
                    f"{tuple(v.shape)} {v.dtype}"
                )
        self._keys = torch.as_tensor(state["keys"]).to(self.device).clone()
        self._counters = torch.as_tensor(state["counters"]).to(self.device).clone()
        self.version = version
        self._lag = 0
        self._drop_blocks()
