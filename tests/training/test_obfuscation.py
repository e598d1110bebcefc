"""MM-obfuscation decodes to the true product, and key-shift gradients equal autograd's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sealfn.training import obfuscation as ob
from sealfn.training.keys import AxisKey, KeyPool, MatmulKey, csprng, scale_range

# (2048, 9, 12): a tall operand with short rows, and results of 12 columns, scaled by one outer
# product (obfuscation._scale) rather than by each axis's factors in turn
SHAPES = [(1, 1, 1), (7, 5, 3), (32, 64, 10), (128, 144, 16), (2048, 9, 12)]


def _operands(m: int, n: int, p: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(m * 1000 + n * 10 + p)
    return torch.randn(m, n, generator=gen, dtype=dtype), torch.randn(
        n, p, generator=gen, dtype=dtype
    )


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize(("dtype", "limit"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shape", SHAPES)
def test_obfuscated_product_decodes_to_x_times_w(
    shape: tuple[int, int, int], dtype: torch.dtype, limit: float
) -> None:
    x, w = _operands(*shape, dtype)
    key = MatmulKey.draw(*shape, csprng())
    y = ob.decode_y(ob.encode_x(x, key) @ ob.encode_w(w, key), key)
    assert _relative(y, x @ w) <= limit


@pytest.mark.parametrize("shape", SHAPES)
def test_key_shift_gradients_equal_autograd(shape: tuple[int, int, int]) -> None:
    x, w = _operands(*shape, torch.float64)
    x.requires_grad_(True)
    w.requires_grad_(True)
    dy = torch.randn(shape[0], shape[2], dtype=torch.float64)
    (x @ w).backward(dy)
    assert x.grad is not None and w.grad is not None
    key = MatmulKey.draw(*shape, csprng())
    xp, wp = ob.encode_x(x.detach(), key), ob.encode_w(w.detach(), key)
    dyp = ob.encode_dy(dy, key)  # the one new encryption of the backward pass
    assert _relative(ob.decode_dx(dyp @ wp.T, key), x.grad) <= 1e-10
    assert _relative(ob.decode_dw(xp.T @ dyp, key), w.grad) <= 1e-10


def test_obfuscated_operands_hide_order_and_values() -> None:
    x, w = _operands(64, 32, 16, torch.float64)
    key = MatmulKey.draw(64, 32, 16, csprng())
    xp = ob.encode_x(x, key)
    assert not torch.equal(xp, x)
    assert not torch.equal(torch.sort(xp.flatten()).values, torch.sort(x.flatten()).values)
    assert not torch.equal(ob.encode_w(w, key), w)


def test_keys_are_fresh_permutations_with_bounded_scalings() -> None:
    rng = csprng()
    first, second = AxisKey.draw(256, rng), AxisKey.draw(256, rng)
    assert not torch.equal(first.perm, second.perm)
    for key in (first, second):
        assert torch.equal(torch.sort(key.perm).values, torch.arange(256))
        assert torch.equal(key.perm[key.inverse], torch.arange(256))
        low, high = scale_range()
        assert bool(((key.scale.abs() >= low) & (key.scale.abs() <= high)).all())
    assert bool((first.scale < 0).any()) and bool((first.scale > 0).any())


def test_two_generators_never_agree() -> None:
    draws = {csprng().integers(0, 2**63) for _ in range(32)}
    assert len(draws) == 32


def test_identity_key_changes_nothing() -> None:
    x, w = _operands(5, 4, 3, torch.float64)
    key = MatmulKey.draw(5, 4, 3, np.random.default_rng(0), identity=True)
    assert torch.equal(ob.encode_x(x, key), x)
    assert torch.equal(ob.encode_w(w, key), w)


@pytest.mark.parametrize("n", [1, 64, 3000])  # 3000: the row-wise path for long axes
def test_the_key_pool_hands_out_each_fresh_key_once(n: int) -> None:
    pool = KeyPool(csprng(), torch.float32)
    keys = [pool.axis(n) for _ in range(70)]  # more than one bulk draw
    pool.refill()
    keys.append(pool.axis(n))
    assert len({id(key) for key in keys}) == len(keys)  # never the same key twice
    if n > 1:
        assert len({key.perm.numpy().tobytes() for key in keys}) == len(keys)
    low, high = scale_range()
    for key in keys:
        # each key's tensors are contiguous: a strided one makes every gather miss cache
        tensors = (key.perm, key.inverse, key.scale, *key.factors.values())
        assert all(t.is_contiguous() for t in tensors)
        assert torch.equal(torch.sort(key.perm).values, torch.arange(n))
        assert torch.equal(key.perm[key.inverse], torch.arange(n))
        assert bool(((key.scale.abs() >= low) & (key.scale.abs() <= high)).all())
        for e in (1, -1):
            want = (key.scale**e).to(torch.float32)
            assert torch.equal(key.factor(e, torch.float32, permuted=False), want)
            assert torch.equal(key.factor(e, torch.float32, permuted=True), want[key.perm])
    signs = torch.cat([key.scale for key in keys]).sign()
    assert bool((signs < 0).any()) and bool((signs > 0).any())
