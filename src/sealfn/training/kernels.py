"""The only arithmetic an accelerator worker does: float products and convolutions, and exact
products mod p.

Imports torch and nothing of sealfn's training code, so the worker can use it without ever
loading model code.

Exact products mod p (``P = 2**26 - 5``, prime) run in float64 so GPUs and BLAS can do them, and are
exact because every intermediate is an integer below 2**53:

* operands hold residues in [0, P), so entries are < 2**26;
* the left operand is split into 13-bit limbs, a = a_hi·2**13 + a_lo with a_hi, a_lo < 2**13;
* one limb product term is < 2**13 · 2**26 = 2**39, and a block of at most ``BLOCK = 2**13``
  terms sums to < 2**52 < 2**53, whatever order (or FMA) the GEMM uses, because every partial
  sum is an integer below 2**53 and therefore representable: no rounding ever happens;
* each block is reduced mod P (``torch.remainder`` of an exact integer is exact), then
  (hi mod P)·2**13 < 2**39 and the final sums stay far below 2**53.
"""

from __future__ import annotations

import torch
from torch.nn import functional
from torch.nn import grad as conv_grad

P = (1 << 26) - 5  # prime (checked by a test with a deterministic Miller-Rabin)
LIMB_BITS = 13
BLOCK = 1 << 13  # inner-dimension terms per exact GEMM block (see the module docstring)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The plain float product a @ b (TF32 is switched off by the worker for exactness)."""
    return a @ b


CONV_OPS = ("conv2d", "conv2d_input", "conv2d_weight")


def conv(
    op: str,
    left: torch.Tensor,
    right: torch.Tensor,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    shape: tuple[int, ...],
) -> torch.Tensor:
    """A 2-D convolution or one of its two gradients (no bias, no groups).

    ``conv2d``: left = input (B, C, H, W), right = weight (O, C, kh, kw). ``conv2d_input``: the
    gradient of the input, left = grad_output (B, O, H', W'), right = weight, ``shape`` the
    input's. ``conv2d_weight``: the gradient of the weight, left = input, right = grad_output,
    ``shape`` the weight's.
    """
    if op == "conv2d":
        return functional.conv2d(left, right, None, stride, padding, dilation)
    out: torch.Tensor
    if op == "conv2d_input":
        out = conv_grad.conv2d_input(shape, right, left, stride, padding, dilation)  # type: ignore[no-untyped-call]
        return out
    if op == "conv2d_weight":
        out = conv_grad.conv2d_weight(left, shape, right, stride, padding, dilation)  # type: ignore[no-untyped-call]
        return out
    raise ValueError(f"unknown convolution op {op!r}")


def matmul_mod_p(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a @ b) mod P, exactly, for float64 ``a``, ``b`` holding integers in [0, P)."""
    if a.dtype != torch.float64 or b.dtype != torch.float64:
        raise TypeError("exact products need float64 operands holding residues mod P")
    limb = float(1 << LIMB_BITS)
    hi = torch.floor(a / limb)
    lo = a - hi * limb
    out = torch.zeros((a.shape[0], b.shape[1]), dtype=torch.float64, device=a.device)
    for start in range(0, a.shape[1], BLOCK):
        block = slice(start, start + BLOCK)
        high = torch.remainder(hi[:, block] @ b[block], P)
        low = torch.remainder(lo[:, block] @ b[block], P)
        out = torch.remainder(out + torch.remainder(high * limb, P) + low, P)
    return out
