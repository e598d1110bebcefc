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


def _passes(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, rng: np.random.Generator) -> bool:
    try:
        freivalds.check(a, b, c, rng)
    except IntegrityError:
        return False
    return True


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_honest_products_never_fail(dtype: torch.dtype) -> None:
    rng = csprng()
    alarms = 0
    for _ in range(HONEST // 2):
        a, b = _operands(rng, dtype)
        alarms += not _passes(a, b, a @ b, rng)
    assert alarms == 0


@pytest.mark.parametrize("tamper", [one_entry(1e-3), scaled, swapped_rows, stale])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tampering_is_caught(tamper: Tamper, dtype: torch.dtype) -> None:
    rng = csprng()
    caught = tried = 0
    while tried < TRIALS:
        a, b = _operands(rng, dtype)
        c = a @ b
        bad = tamper(a, b, c, rng)
        if torch.equal(bad, c):
            continue  # e.g. two equal rows swapped: nothing was tampered with
        tried += 1
        caught += not _passes(a, b, bad, rng)
    assert caught >= 0.999 * TRIALS


def test_wrong_shape_and_non_finite_results_fail() -> None:
    rng = csprng()
    a, b = _operands(rng, torch.float64)
    c = a @ b
    with pytest.raises(IntegrityError):
        freivalds.check(a, b, c[:-1], rng)
    c[0, 0] = float("nan")
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
