"""Freivalds' check of a returned product, C ?= A·B, in O(k(mn + np + mp)) instead of O(mnp).

Float products: draw k random vectors r (entries ±[1, 2], from the caller's CSPRNG, drawn *after*
C arrived so a worker cannot adapt to them) and compare C·r with A·(B·r). An honest C differs from
A·B by rounding only; with unit roundoff u and g_k = k·u / (1 - k·u) the standard bounds give,
for each row i (|·| entrywise, n the inner and p the outer dimension)::

    |fl(C r) - fl(A fl(B r))|_i ≤ (2g_n + 2g_p + O(u²)) · (|A| (|B| |r|))_i

(rounding of C itself, of C·r, of B·r and of A·(B·r)). The tolerance is that bound times a safety
factor of 2: a worst-case bound, so honest results never fail it (barring underflow), and far
below what meaningful tampering changes: one entry off by δ moves row i by |δ·r_j| ≥ |δ|.

Exact products mod P: r uniform in [0, P), the comparison is exact; a wrong C passes one
repetition with probability ≤ 1/P (Freivalds over a field).
"""

from __future__ import annotations

import numpy as np
import torch

from sealfn.errors import IntegrityError
from sealfn.training.kernels import P, matmul_mod_p

DEFAULT_REPETITIONS = 2
SAFETY = 2.0


def unit_roundoff(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps) / 2


def _gamma(k: int, u: float) -> float:
    return k * u / (1 - k * u)


def probes(p: int, k: int, rng: np.random.Generator, dtype: torch.dtype) -> torch.Tensor:
    """k probe vectors as a (p, k) matrix, entries ±[1, 2]."""
    values = rng.uniform(1.0, 2.0, size=(p, k)) * rng.choice(np.array([-1.0, 1.0]), size=(p, k))
    return torch.from_numpy(values).to(dtype)


def residual(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, r: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(|C r - A (B r)|, tolerance), both (m, k)."""
    n, p = b.shape
    u = unit_roundoff(c.dtype)
    bound = SAFETY * (2 * _gamma(n, u) + 2 * _gamma(p, u) + 4 * u)
    scale = a.abs() @ (b.abs() @ r.abs())
    tiny = float(torch.finfo(c.dtype).tiny) * (n + p)  # keeps an all-zero honest row passing
    return (c @ r - a @ (b @ r)).abs(), bound * scale + tiny


def check(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    rng: np.random.Generator,
    *,
    repetitions: int = DEFAULT_REPETITIONS,
) -> None:
    """Raise IntegrityError unless C = A·B up to floating-point rounding."""
    if c.shape != (a.shape[0], b.shape[1]):
        raise IntegrityError("a worker returned a product that fails verification")
    r = probes(b.shape[1], repetitions, rng, c.dtype)
    diff, tolerance = residual(a, b, c, r)
    if not bool((diff <= tolerance).all()):  # NaN compares False, so a NaN or inf in C fails
        raise IntegrityError("a worker returned a product that fails verification")


def check_mod_p(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    rng: np.random.Generator,
    *,
    repetitions: int = DEFAULT_REPETITIONS,
) -> None:
    """Raise IntegrityError unless C = A·B mod P exactly (residues in [0, P) as float64)."""
    shape_ok = c.shape == (a.shape[0], b.shape[1]) and c.dtype == torch.float64
    if not shape_ok or not bool(((c >= 0) & (c < P) & (c == torch.floor(c))).all()):
        raise IntegrityError("a worker returned a product that fails verification")
    r = torch.from_numpy(
        rng.integers(0, P, size=(b.shape[1], repetitions), dtype=np.int64).astype(np.float64)
    )
    if not bool(torch.equal(matmul_mod_p(c, r), matmul_mod_p(a, matmul_mod_p(b, r)))):
        raise IntegrityError("a worker returned a product that fails verification")
