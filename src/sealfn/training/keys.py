"""Fresh obfuscation keys: one random permutation and diagonal scaling per matrix axis.

Every key is drawn from a CSPRNG: a numpy ``Generator`` (PCG64) seeded with 128 bits from
``os.urandom``, made fresh for each :class:`KeySource`. The coordinator draws a new key for every
product of every step (no key reuse: reused keys let an observer difference consecutive obfuscated
weights and recover gradients); only the backward "key shift" reuses the forward's key, within the
same step.

:class:`KeyPool` draws keys ahead of use, in bulk (one vectorised draw for a batch of same-length
axes) and in the idle time while a worker computes. Drawing earlier changes nothing about
freshness: every key is handed out once, removed from the pool, and never handed out again.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

MIN_SCALE_LOG2 = -2.0  # scalings are ±2**u with u uniform in [MIN, MAX]: |d| in [1/4, 4], so
MAX_SCALE_LOG2 = 2.0  # neither overflow nor underflow is near, and D·D⁻¹ loses ~1 ulp at most


def csprng() -> np.random.Generator:
    """A numpy generator seeded with 128 bits from the OS CSPRNG (``os.urandom``)."""
    return np.random.Generator(np.random.PCG64(int.from_bytes(os.urandom(16), "little")))


@dataclass(frozen=True)
class AxisKey:
    """A permutation and a diagonal scaling of one axis of length ``n``.

    Applying it to an axis reorders entries as ``a[perm]`` and multiplies entry ``perm[i]`` by
    ``scale[perm[i]]`` (to some power ±1): it is P·D of the paper, P a permutation matrix.
    """

    perm: torch.Tensor  # (n,) int64, a permutation of range(n)
    inverse: torch.Tensor  # (n,) int64, inverse[perm[i]] == i
    scale: torch.Tensor  # (n,) float64, nonzero, |scale| in [2**MIN, 2**MAX]
    # scale**e in a dtype, in original or permuted order, by (e, dtype, permuted): computed once
    factors: dict[tuple[int, torch.dtype, bool], torch.Tensor] = field(
        default_factory=dict, compare=False, repr=False
    )

    def factor(self, e: int, dtype: torch.dtype, *, permuted: bool) -> torch.Tensor:
        """scale**e as ``dtype``, indexed by ``perm`` when ``permuted`` (``scale[perm]**e``)."""
        cached = self.factors.get((e, dtype, permuted))
        if cached is None:
            cached = (self.scale**e).to(dtype)
            cached = cached[self.perm] if permuted else cached
            self.factors[e, dtype, permuted] = cached
        return cached

    @property
    def size(self) -> int:
        return int(self.perm.shape[0])

    @classmethod
    def draw(cls, n: int, rng: np.random.Generator, *, identity: bool = False) -> AxisKey:
        """A fresh random key; ``identity`` gives P = D = I (only for negative controls)."""
        if identity:
            perm = np.arange(n)
            scale = np.ones(n)
        else:
            perm = rng.permutation(n)
            exponent = rng.uniform(MIN_SCALE_LOG2, MAX_SCALE_LOG2, size=n)
            sign = rng.choice(np.array([-1.0, 1.0]), size=n)
            scale = sign * np.exp2(exponent)
        inverse = np.empty(n, dtype=np.int64)
        inverse[perm] = np.arange(n)
        return cls(
            torch.from_numpy(perm.astype(np.int64)),
            torch.from_numpy(inverse),
            torch.from_numpy(scale),
        )


@dataclass(frozen=True)
class MatmulKey:
    """The key of one product X (mxn) · W (nxp): an :class:`AxisKey` for each of m, n and p."""

    m: AxisKey
    n: AxisKey
    p: AxisKey

    @classmethod
    def draw(
        cls, m: int, n: int, p: int, rng: np.random.Generator, *, identity: bool = False
    ) -> MatmulKey:
        return cls(
            AxisKey.draw(m, rng, identity=identity),
            AxisKey.draw(n, rng, identity=identity),
            AxisKey.draw(p, rng, identity=identity),
        )


BULK_ENTRIES = 1 << 16  # entries per vectorised draw: up to 64 keys of 1,024, one of 65,536
BULK_KEYS = 64
ROW_WISE = 1024  # axes longer than this are drawn one by one (see ``KeyPool._bulk``)
LOW_WATER = 4  # :meth:`KeyPool.refill` tops up every axis length with fewer keys ready


class KeyPool:
    """Fresh axis keys drawn ahead of use, in bulk, for products in ``dtype``.

    :meth:`draw` hands out each key exactly once (it is popped from the pool: no key is ever
    reused); :meth:`refill` draws more while the coordinator would otherwise wait for a worker.
    A bulk draw is one ``rng.permuted`` and one ``rng.uniform`` call for ``count`` axes, and the
    scale factors the encoders need are computed for all of them at once.
    """

    def __init__(self, rng: np.random.Generator, dtype: torch.dtype) -> None:
        self._rng = rng
        self._dtype = dtype
        self._ready: dict[int, list[AxisKey]] = {}

    def draw(self, m: int, n: int, p: int) -> MatmulKey:
        return MatmulKey(self.axis(m), self.axis(n), self.axis(p))

    def axis(self, n: int) -> AxisKey:
        ready = self._ready.setdefault(n, [])
        if not ready:
            ready.extend(self._bulk(n))
        return ready.pop()

    def refill(self) -> None:
        for n, ready in self._ready.items():
            if len(ready) < LOW_WATER:
                ready.extend(self._bulk(n))

    def _bulk(self, n: int) -> list[AxisKey]:
        count = max(1, min(BULK_KEYS, BULK_ENTRIES // max(n, 1)))
        values = self._rng.uniform(-1.0, 1.0, size=(count, n))  # sign and exponent in one draw
        exponent = np.abs(values) * (MAX_SCALE_LOG2 - MIN_SCALE_LOG2) + MIN_SCALE_LOG2
        scale = np.copysign(np.exp2(exponent), values)
        if n <= ROW_WISE:  # many short axes: 2-D ops, ~3x cheaper per key than a loop
            # permuted() returns a column-major array: made row-major, each key's perm, inverse and
            # factors are contiguous (strided ones cost a cache line per entry in every gather)
            perms = np.ascontiguousarray(
                self._rng.permuted(np.broadcast_to(np.arange(n), (count, n)), axis=1)
            )
            inverse = np.empty_like(perms)
            np.put_along_axis(inverse, perms, np.arange(n)[None, :], axis=1)
            permuted = np.take_along_axis(scale, perms, axis=1)
        else:  # few long axes: 1-D permutations and gathers, ~1.4-2x cheaper than 2-D ones
            perms = np.stack([self._rng.permutation(n) for _ in range(count)])
            inverse, permuted = np.empty_like(perms), np.empty_like(scale)
            for row, perm in enumerate(perms):
                inverse[row, perm] = np.arange(n)
                permuted[row] = scale[row, perm]
        dtype, tensors = self._dtype, torch.from_numpy
        table = {
            (1, False): tensors(scale).to(dtype),
            (-1, False): tensors(1.0 / scale).to(dtype),
            (1, True): tensors(permuted).to(dtype),
            (-1, True): tensors(1.0 / permuted).to(dtype),
        }
        # unbind: one call makes every row's view (indexing row by row cost ~1 µs a view, 7 per key)
        rows = {name: factors.unbind(0) for name, factors in table.items()}
        perm_rows, inverse_rows = tensors(perms).unbind(0), tensors(inverse).unbind(0)
        scale_rows = tensors(scale).unbind(0)
        return [
            AxisKey(
                perm_rows[i],
                inverse_rows[i],
                scale_rows[i],
                {(e, dtype, permuted): rows[e, permuted][i] for e, permuted in rows},
            )
            for i in range(count)
        ]


def scale_range() -> tuple[float, float]:
    """The smallest and largest |scaling| a key can hold."""
    return math.pow(2.0, MIN_SCALE_LOG2), math.pow(2.0, MAX_SCALE_LOG2)
