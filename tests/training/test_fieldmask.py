"""The exact mode: products mod P are exact, masked shares decode to the integer product."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sealfn.training import fieldmask as fm
from sealfn.training.kernels import BLOCK, P, matmul_mod_p
from sealfn.training.keys import csprng


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def test_modulus_is_a_prime_below_2_26() -> None:
    assert _is_prime(P) and P < 2**26
    assert not _is_prime(P + 2)  # the test itself can say no


@pytest.mark.parametrize("n", [1, 100, BLOCK + 5])
def test_float64_product_mod_p_is_exact(n: int) -> None:
    rng = csprng()
    a = rng.integers(0, P, size=(6, n), dtype=np.int64)
    b = rng.integers(0, P, size=(n, 4), dtype=np.int64)
    a[0, :] = P - 1  # worst case: every term at its largest
    b[:, 0] = P - 1
    want = (a.astype(object) @ b.astype(object)) % P  # Python integers: no overflow
    got = matmul_mod_p(
        torch.from_numpy(a.astype(np.float64)), torch.from_numpy(b.astype(np.float64))
    )
    assert (got.numpy().astype(np.int64) == want.astype(np.int64)).all()


@pytest.mark.parametrize("n", [1, 64, 144, 1024])
def test_masked_shares_decode_to_the_exact_quantized_product(n: int) -> None:
    rng = csprng()
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(9, n, generator=gen, dtype=torch.float64)
    w = torch.randn(n, 5, generator=gen, dtype=torch.float64) * 1e-3
    bx, bw = fm.bits_for(n)
    xq, wq = fm.quantize(x, bx), fm.quantize(w, bw)
    masked = fm.split(xq.values, wq.values, rng)
    y = fm.combine([matmul_mod_p(left, right) for left, right in masked.pairs])
    assert torch.equal(y.long(), xq.values.long() @ wq.values.long())
    approx = y / (xq.factor * wq.factor)
    assert float((approx - x @ w).abs().max()) <= n * 2.0 ** -min(bx, bw) * float(
        (x @ w).abs().max()
    )


def test_each_role_sees_only_uniform_residues() -> None:
    rng = csprng()
    xq = torch.zeros(200, 100, dtype=torch.float64)  # the most structured secret there is
    masked = fm.split(xq, torch.zeros(100, 50, dtype=torch.float64), rng)
    for left, right in masked.pairs:
        for share in (left, right):
            assert bool(((share >= 0) & (share < P)).all())
            # mean of uniform [0, P) residues: P/2 ± a few standard errors
            mean = float(share.mean()) / P
            assert abs(mean - 0.5) < 5 * (1 / 12) ** 0.5 / share.numel() ** 0.5
    e = masked.pairs[0][0]
    assert not torch.equal(e, masked.pairs[3][0])  # E = X - R differs from R


def test_lift_is_the_inverse_of_to_field() -> None:
    values = torch.tensor([-(2.0**24), -1.0, 0.0, 1.0, 2.0**24])
    assert torch.equal(fm.lift(fm.to_field(values)), values)


def test_inner_dimension_too_large_is_refused() -> None:
    with pytest.raises(ValueError):
        fm.bits_for(2**23)
