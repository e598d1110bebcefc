"""Fresh obfuscation keys: one random permutation and diagonal scaling per matrix axis.

Every key is drawn from a CSPRNG: a numpy ``Generator`` (PCG64) seeded with 128 bits from
``os.urandom``, made fresh for each :class:`KeySource`. The coordinator draws a new key for every
product of every step (no key reuse: reused keys let an observer difference consecutive obfuscated
weights and recover gradients); only the backward "key shift" reuses the forward's key, within the
same step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

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


def scale_range() -> tuple[float, float]:
    """The smallest and largest |scaling| a key can hold."""
    return math.pow(2.0, MIN_SCALE_LOG2), math.pow(2.0, MAX_SCALE_LOG2)
