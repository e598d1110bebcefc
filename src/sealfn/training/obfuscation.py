"""MM-obfuscation (Tempo): permute and scale the operands of a product, decode the result.

For X (mxn) and W (nxp) with key (P_m D_m, P_n D_n, P_p D_p)::

    X'  = P_m D_m X D_n P_nᵀ            W'  = P_n D_n⁻¹ W D_p P_pᵀ
    Y'  = X' W' = P_m D_m (X W) D_p P_pᵀ          Y  = D_m⁻¹ P_mᵀ Y' P_p D_p⁻¹

Backward "key shift": the worker keeps X' and W'; only the incoming gradient is encrypted::

    dY' = P_m D_m⁻¹ dY D_p⁻¹ P_pᵀ
    dX' = dY' W'ᵀ = P_m D_m⁻¹ dX D_n⁻¹ P_nᵀ     dX = D_m P_mᵀ dX' P_n D_n
    dW' = X'ᵀ dY' = P_n D_n dW D_p⁻¹ P_pᵀ       dW = D_n⁻¹ P_nᵀ dW' P_p D_p

All six maps are one primitive: entry (i, j) of the image is a[r.perm[i], c.perm[j]] times
r.scale**e_r and c.scale**e_c at those indices (:func:`scramble`), and its inverse
(:func:`unscramble`). Encoding and decoding cost O(mn), O(np), O(mp); the product O(mnp).
"""

from __future__ import annotations

import torch

from sealfn.training.keys import AxisKey, MatmulKey


def scramble(a: torch.Tensor, rows: AxisKey, cols: AxisKey, e_r: int, e_c: int) -> torch.Tensor:
    """P_r D_r^e_r · a · D_c^e_c P_cᵀ on the first two axes of ``a`` (rows x cols x ...; any
    further axes, a convolution's spatial ones, are left as they are).

    Gather first, then scale by the keys' pre-permuted factors (P D = D[perm] P): two
    ``index_select`` (several times faster than one 2-D advanced-index gather) and the scaling
    in place (:func:`_scale`), one new tensor.
    """
    out = a.index_select(0, rows.perm).index_select(1, cols.perm)
    return _scale(
        out, rows.factor(e_r, a.dtype, permuted=True), cols.factor(e_c, a.dtype, permuted=True)
    )


def unscramble(a: torch.Tensor, rows: AxisKey, cols: AxisKey, e_r: int, e_c: int) -> torch.Tensor:
    """The inverse of :func:`scramble` with the same exponents: D_r^-e_r P_rᵀ · a · P_c D_c^-e_c."""
    out = a.index_select(0, rows.inverse).index_select(1, cols.inverse)
    return _scale(
        out, rows.factor(-e_r, a.dtype, permuted=False), cols.factor(-e_c, a.dtype, permuted=False)
    )


def _scale(out: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out (r, c, ...) times rows[i] · cols[j], in place.

    Two broadcast multiplies, one per axis, or one by the outer product rows ⊗ cols where that
    is cheaper: for a convolution's (B, C, H, W) tensor (the outer product is only B x C: one
    pass over the tensor instead of two, 79 -> 63 µs for 256 x 16 x 8 x 8), and for a tall
    matrix with short rows, whose row broadcast torch runs slowly (an im2col operand of
    16384 x 9: 174 -> 150 µs). Elsewhere the outer product's extra dispatch costs more than it
    saves.
    """
    if out.dim() > 2 or (out.shape[1] < 16 and out.shape[0] >= 1024):
        outer = torch.outer(rows, cols)
        return out.mul_(outer.view(*outer.shape, *(1,) * (out.dim() - 2)))
    return out.mul_(rows.unsqueeze(1)).mul_(cols)


def encode_x(x: torch.Tensor, key: MatmulKey) -> torch.Tensor:
    return scramble(x, key.m, key.n, 1, 1)


def encode_w(w: torch.Tensor, key: MatmulKey) -> torch.Tensor:
    return scramble(w, key.n, key.p, -1, 1)


def decode_y(y: torch.Tensor, key: MatmulKey) -> torch.Tensor:
    return unscramble(y, key.m, key.p, 1, 1)


def encode_dy(dy: torch.Tensor, key: MatmulKey) -> torch.Tensor:
    return scramble(dy, key.m, key.p, -1, -1)


def decode_dx(dx: torch.Tensor, key: MatmulKey) -> torch.Tensor:
    return unscramble(dx, key.m, key.n, -1, -1)


def decode_dw(dw: torch.Tensor, key: MatmulKey) -> torch.Tensor:
    return unscramble(dw, key.n, key.p, 1, -1)
