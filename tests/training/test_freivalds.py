"""Freivalds checks: no false alarm on honest products, tampering caught in ≥ 99.9% of trials."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sealfn.errors import IntegrityError
from sealfn.training import freivalds
from sealfn.training.kernels import P, matmul_mod_p
from sealfn.training.keys import csprng
from sealfn.training.tampering import Tamper, one_entry, scaled, stale, swapped_rows

TRIALS = 1000
HONEST = 10_000


def _operands(rng: np.random.Generator, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    m, n, p = (int(v) for v in rng.integers(2, 24, size=3))
    scale = 10.0 ** rng.uniform(-3, 3)  # products of all magnitudes
    a = torch.from_numpy(rng.standard_normal((m, n)) * scale).to(dtype)
    b = torch.from_numpy(rng.standard_normal((n, p))).to(dtype)
    return a, b


SOURCES = ("generator", "pool")  # probes drawn at the check, or ahead from a ProbePool


def _passes(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, source: freivalds.ProbeSource
) -> bool:
    try:
        if isinstance(source, freivalds.ProbePool):
            freivalds.expect(a, b, source).verify(c)
        else:
            freivalds.check(a, b, c, source)
    except IntegrityError:
        return False
    return True


def _source(kind: str, rng: np.random.Generator, dtype: torch.dtype) -> freivalds.ProbeSource:
    if kind == "pool":
        return freivalds.ProbePool(rng, dtype, freivalds.DEFAULT_REPETITIONS)
    return rng


@pytest.mark.parametrize("kind", SOURCES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_honest_products_never_fail(dtype: torch.dtype, kind: str) -> None:
    rng = csprng()
    source = _source(kind, rng, dtype)
    alarms = 0
    for _ in range(HONEST // 2):
        a, b = _operands(rng, dtype)
        alarms += not _passes(a, b, a @ b, source)
    assert alarms == 0


@pytest.mark.parametrize("kind", SOURCES)
@pytest.mark.parametrize("tamper", [one_entry(1e-3), scaled, swapped_rows, stale])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tampering_is_caught(tamper: Tamper, dtype: torch.dtype, kind: str) -> None:
    rng = csprng()
    source = _source(kind, rng, dtype)
    caught = tried = 0
    while tried < TRIALS:
        a, b = _operands(rng, dtype)
        c = a @ b
        bad = tamper(a, b, c, rng)
        if torch.equal(bad, c):
            continue  # e.g. two equal rows swapped: nothing was tampered with
        tried += 1
        caught += not _passes(a, b, bad, source)
    assert caught >= 0.999 * TRIALS


@pytest.mark.parametrize("p", [1, 7, 20_000])  # 20,000: one set per bulk draw
def test_the_probe_pool_hands_out_each_fresh_probe_set_once(p: int) -> None:
    pool = freivalds.ProbePool(csprng(), torch.float32, 2)
    sets = [pool.draw(p) for _ in range(70)]  # more than one bulk draw
    assert len({id(rows) for rows, _ in sets}) == len(sets)
    assert len({rows.numpy().tobytes() for rows, _ in sets}) == len(sets)
    for rows, abs_rows in sets:
        assert rows.shape == (2, p) and rows.dtype == torch.float32
        assert bool(((rows.abs() >= 1) & (rows.abs() <= 2)).all())
        assert torch.equal(abs_rows, rows.abs())
    signs = torch.cat([rows.flatten() for rows, _ in sets]).sign()
    assert bool((signs < 0).any()) and bool((signs > 0).any())


def test_a_probe_pool_serves_only_its_dtype_and_repetitions() -> None:
    a, b = _operands(csprng(), torch.float64)
    with pytest.raises(ValueError, match="one dtype"):
        freivalds.expect(a, b, freivalds.ProbePool(csprng(), torch.float32, 2))
    with pytest.raises(ValueError, match="one dtype"):
        freivalds.expect(a, b, freivalds.ProbePool(csprng(), torch.float64, 3))


def test_wrong_shape_and_non_finite_results_fail() -> None:
    rng = csprng()
    a, b = _operands(rng, torch.float64)
    c = a @ b
    with pytest.raises(IntegrityError):
        freivalds.check(a, b, c[:-1], rng)
    for bad in (float("nan"), float("inf")):
        c[0, 0] = bad
        with pytest.raises(IntegrityError):
            freivalds.check(a, b, c, rng)


def test_exact_check_accepts_the_exact_product_and_rejects_any_change() -> None:
    rng = csprng()
    a = torch.from_numpy(rng.integers(0, P, size=(20, 30)).astype(np.float64))
    b = torch.from_numpy(rng.integers(0, P, size=(30, 10)).astype(np.float64))
    c = matmul_mod_p(a, b)
    freivalds.check_mod_p(a, b, c, rng)
    for _ in range(200):
        bad = c.clone()
        i, j = int(rng.integers(20)), int(rng.integers(10))
        bad[i, j] = (bad[i, j] + int(rng.integers(1, P))) % P
        with pytest.raises(IntegrityError):
            freivalds.check_mod_p(a, b, bad, rng)
    bad = c.clone()
    bad[0, 0] = P  # not a residue
    with pytest.raises(IntegrityError):
        freivalds.check_mod_p(a, b, bad, rng)
