"""The exact mode: fixed-point quantisation into the field Z_P and one-time additive masks.

A product X·W is computed as the sum of four products of masked operands (a Beaver-style split):
with fresh uniform masks R (mxn), S (nxp) and E = X_q - R, F = W_q - S (mod P)::

    X_q W_q = E·F + E·S + R·F + R·S   (mod P)

Each of the four products goes to a different worker *role*; what one role sees (E and F, E and S,
R and F, or R and S) is uniform and independent of X and W, so a single role learns nothing about
the values (information-theoretic hiding). Two colluding roles can unmask, so the guarantee holds
only if the four roles run on four non-colluding workers; shapes always leak.

Quantisation is per tensor: x_q = round(x · 2**b / max|x|), |x_q| ≤ 2**b. With
b_x + b_w ≤ 24 - ⌈log2 n⌉ every exact product satisfies |Σ x_q w_q| ≤ n·2**(b_x+b_w) ≤ 2**24 <
P/2, so the centred lift of the result mod P is the exact integer product (no wrap-around).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sealfn.training.kernels import P

MAGNITUDE_BITS = 24  # |X_q W_q| ≤ 2**24 < P/2 = 2**25 - 2.5


@dataclass(frozen=True)
class Quantized:
    """An integer tensor (as float64) and the factor it was multiplied by: x ≈ values / factor."""

    values: torch.Tensor  # integers in [-2**bits, 2**bits], float64
    factor: float


def bits_for(n: int) -> tuple[int, int]:
    """Fraction bits (b_x, b_w) for a product with inner dimension ``n`` (see the docstring)."""
    budget = MAGNITUDE_BITS - math.ceil(math.log2(max(n, 2)))
    if budget < 2:
        raise ValueError(f"inner dimension {n} is too large for exact products mod {P}")
    return budget // 2, budget - budget // 2


def quantize(x: torch.Tensor, bits: int) -> Quantized:
    """Round x to integers with |x_q| ≤ 2**bits (a zero tensor stays zero)."""
    peak = float(x.abs().max()) if x.numel() else 0.0
    factor = (2.0**bits) / peak if peak > 0 else 1.0
    values = torch.round(x.to(torch.float64) * factor).clamp_(-(2.0**bits), 2.0**bits)
    return Quantized(values, factor)


def to_field(values: torch.Tensor) -> torch.Tensor:
    """Signed integers → residues in [0, P), as float64 (float32 cannot hold residues exactly)."""
    return torch.remainder(values.to(torch.float64), P)


def lift(residues: torch.Tensor) -> torch.Tensor:
    """Residues in [0, P) → the signed integers in (-P/2, P/2) they represent."""
    return torch.where(residues > P // 2, residues - P, residues)


def uniform_mask(shape: tuple[int, ...], rng: np.random.Generator) -> torch.Tensor:
    """A mask with entries uniform in [0, P), as float64 (from the caller's CSPRNG)."""
    return torch.from_numpy(rng.integers(0, P, size=shape, dtype=np.int64).astype(np.float64))


@dataclass(frozen=True)
class MaskedProduct:
    """The four (left, right) operand pairs of one exact product, one per worker role."""

    pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...]


def split(xq: torch.Tensor, wq: torch.Tensor, rng: np.random.Generator) -> MaskedProduct:
    """Mask X_q (mxn) and W_q (nxp) (integers) into the four role products."""
    r = uniform_mask(tuple(xq.shape), rng)
    s = uniform_mask(tuple(wq.shape), rng)
    e = torch.remainder(to_field(xq) - r, P)
    f = torch.remainder(to_field(wq) - s, P)
    return MaskedProduct(((e, f), (e, s), (r, f), (r, s)))


def combine(results: list[torch.Tensor]) -> torch.Tensor:
    """Sum the role results mod P and lift: the exact integer product X_q W_q."""
    total = torch.zeros_like(results[0])
    for part in results:
        total = torch.remainder(total + part, P)
    return lift(total)
