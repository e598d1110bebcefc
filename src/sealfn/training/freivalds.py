"""Freivalds' check of a returned product, C ?= A·B, in O(k(mn + np + mp)) instead of O(mnp).

Float products: draw k random vectors r (entries ±[1, 2], from the caller's CSPRNG) and compare
C·r with A·(B·r). r never leaves the coordinator, so it may be drawn before C arrives: the worker
cannot adapt to vectors it never sees. That splits a check in two (:func:`expect`, then
:meth:`Expectation.verify`): everything that needs only A, B and r (B·r, A·(B·r) and the
tolerance, nearly all the work) runs while the worker is still computing C, and only C·r and the
comparison are left once it arrives. An honest C differs from A·B by rounding only; with unit
roundoff u and g_k = k·u / (1 - k·u) the standard bounds give, for each row i (|·| entrywise,
n the inner and p the outer dimension)::

    |fl(C r) - fl(A fl(B r))|_i ≤ (2g_n + 2g_p + O(u²)) · (|A| (|B| |r|))_i

(rounding of C itself, of C·r, of B·r and of A·(B·r)). The tolerance is that bound times a safety
factor of 2: a worst-case bound, so honest results never fail it (barring underflow), and far
below what meaningful tampering changes: one entry off by δ moves row i by |δ·r_j| ≥ |δ|.

The k vectors are the rows of one (k, p) matrix and every product is computed as rᵀ·Cᵀ,
(rᵀ·Bᵀ)·Aᵀ: the same dot products (so the same bound), but a short-and-wide left operand, which
CPU GEMMs run 2-8x faster than the tall-and-skinny A·(B·r) for the (16384, 9) and (4096, 144)
operands of the CNN's im2col products.

Exact products mod P: r uniform in [0, P), the comparison is exact; a wrong C passes one
repetition with probability ≤ 1/P (Freivalds over a field).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

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
    """k probe vectors as the rows of a (k, p) matrix, entries ±[1, 2]."""
    values = rng.uniform(-1.0, 1.0, size=(k, p))
    values += np.copysign(1.0, values)  # |v| in [1, 2], the sign of the uniform draw
    return torch.from_numpy(values).to(dtype)


BULK_ENTRIES = 1 << 15  # probe entries per vectorised draw (up to BULK_PROBES sets at once)
BULK_PROBES = 64


class ProbePool:
    """Probes drawn ahead of use, in bulk, for products in ``dtype``: each set of k probe
    vectors (and its entrywise absolute value, which the tolerance needs) is handed out once.

    Drawing before the product exists changes nothing: the probes never leave the coordinator,
    so a worker cannot adapt its result to them however early they were drawn. One draw of
    ``count`` sets costs about what one set cost drawn alone (numpy and torch per-call overhead
    dominates at these sizes).
    """

    def __init__(self, rng: np.random.Generator, dtype: torch.dtype, repetitions: int) -> None:
        self.dtype = dtype
        self.repetitions = repetitions
        self._rng = rng
        self._ready: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def draw(self, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, |rows|): k fresh probe vectors of length ``p`` as a (k, p) matrix."""
        ready = self._ready.setdefault(p, [])
        if not ready:
            ready.extend(self._bulk(p))
        return ready.pop()

    def _bulk(self, p: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        k = self.repetitions
        count = max(1, min(BULK_PROBES, BULK_ENTRIES // max(k * p, 1)))
        rows = probes(p, count * k, self._rng, self.dtype).view(count, k, p)
        return list(zip(rows.unbind(0), rows.abs().unbind(0), strict=True))


ProbeSource = np.random.Generator | ProbePool


def _draw(source: ProbeSource, p: int, k: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """(rows, |rows|) from a pool, or drawn now from a generator."""
    if isinstance(source, ProbePool):
        if source.repetitions != k or source.dtype != dtype:
            raise ValueError("a probe pool serves one dtype and one number of repetitions")
        return source.draw(p)
    rows = probes(p, k, source, dtype)
    return rows, rows.abs()


@dataclass(frozen=True)
class Expectation:
    """What C = A·B must satisfy, computed from A, B and secret probes before C arrives."""

    shape: tuple[int, ...]  # of C: (m, p) for a matrix product
    rows: torch.Tensor  # (k, p): the probe vectors rᵀ
    expected: torch.Tensor  # matrix product: (k, m), rᵀ Bᵀ Aᵀ = (A (B r))ᵀ; else op(A, B r)
    tolerance: torch.Tensor  # the rounding bound of each entry of ``expected``
    axis: int | None = None  # the axis of C that r contracts; None: a matrix product's

    def verify(self, c: torch.Tensor) -> None:
        """Raise IntegrityError unless C = A·B up to floating-point rounding."""
        if c.shape != self.shape or c.dtype != self.rows.dtype:  # torch.Size is a tuple
            raise IntegrityError("a worker returned a product that fails verification")
        if self.axis is None:  # rᵀCᵀ - expected, the subtraction fused into the GEMM
            diff = torch.addmm(self.expected, self.rows, c.T, beta=-1).abs_()
        else:
            diff = contract(c, self.rows, self.axis).sub_(self.expected).abs_()
        if not bool((diff <= self.tolerance).all()):  # NaN compares False: NaN or inf in C fails
            raise IntegrityError("a worker returned a product that fails verification")


def expect(
    a: torch.Tensor,
    b: torch.Tensor,
    rng: ProbeSource,
    *,
    repetitions: int = DEFAULT_REPETITIONS,
    abs_a: torch.Tensor | None = None,
    abs_b: torch.Tensor | None = None,
) -> Expectation:
    """Draw the probes for C = A·B and compute all of the check that does not need C.

    ``rng`` draws the probes now, or hands out ones drawn ahead (a :class:`ProbePool`).
    ``abs_a``/``abs_b`` may pass |A| and |B| when the caller already has them (an operand that
    is checked in two products)."""
    n, p = b.shape
    bound, tiny = _terms(n, p, b.dtype)
    rows, abs_rows = _draw(rng, p, repetitions, b.dtype)
    expected = (rows @ b.T) @ a.T
    abs_a = a.abs() if abs_a is None else abs_a
    abs_b = b.abs() if abs_b is None else abs_b
    tolerance = torch.addmm(tiny, abs_rows @ abs_b.T, abs_a.T, alpha=bound)  # bound·S + tiny
    return Expectation((a.shape[0], p), rows, expected, tolerance)


@functools.lru_cache(maxsize=256)
def _terms(n: int, p: int, dtype: torch.dtype) -> tuple[float, torch.Tensor]:
    """The tolerance's factor on |A| (|B| |r|) for n inner and p outer terms, and its floor,
    which keeps an all-zero honest row passing (a (1, 1) tensor, to be broadcast)."""
    u = unit_roundoff(dtype)
    bound = SAFETY * (2 * _gamma(n, u) + 2 * _gamma(p, u) + 4 * u)
    tiny = float(torch.finfo(dtype).tiny) * (n + p)
    return bound, torch.full((1, 1), tiny, dtype=dtype)


def contract(t: torch.Tensor, rows: torch.Tensor, axis: int) -> torch.Tensor:
    """Σ_j rows[i, j] · t[..., j, ...] along ``axis``: that axis, of length p, becomes length k."""
    contracted: torch.Tensor = torch.tensordot(rows, t, dims=([1], [axis]))
    return contracted.movedim(0, axis)


def expect_bilinear(
    op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    b_axis: int,
    c_axis: int,
    c_shape: tuple[int, ...],
    terms: int,
    rng: ProbeSource,
    repetitions: int = DEFAULT_REPETITIONS,
    abs_a: torch.Tensor,
    abs_b: torch.Tensor,
) -> Expectation:
    """:func:`expect` for any product C = op(A, B) linear in B along ``b_axis``, where that axis
    becomes C's ``c_axis`` and each entry of C is a sum of at most ``terms`` products of an entry
    of A and one of B (a convolution and its two gradients): op(A, B r) = C r, and the rounding
    bound is the matrix product's with n = ``terms``. It assumes the worker sums those products
    directly (any order), as direct and im2col convolutions do; Winograd or FFT convolutions
    round differently and are not covered by the bound."""
    p = b.shape[b_axis]
    bound, tiny = _terms(terms, p, b.dtype)
    rows, abs_rows = _draw(rng, p, repetitions, b.dtype)
    expected = op(a, contract(b, rows, b_axis))
    tolerance = op(abs_a, contract(abs_b, abs_rows, b_axis)).mul_(bound).add_(tiny.view(()))
    return Expectation(c_shape, rows, expected, tolerance, c_axis)


def check(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    rng: np.random.Generator,
    *,
    repetitions: int = DEFAULT_REPETITIONS,
) -> None:
    """Raise IntegrityError unless C = A·B up to floating-point rounding (both halves at once)."""
    expect(a, b, rng, repetitions=repetitions).verify(c)


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
