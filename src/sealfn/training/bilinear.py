"""The two products a layer hands to an engine: a matrix product, and a convolution with
channel-level keys. Each says once how its operands are encoded and decoded, which worker
products compute it and its gradients, and how each result is checked.

Both have the same key structure, a :class:`~sealfn.training.keys.MatmulKey` (m, n, p):

* :class:`Matmul`, x (m, n) @ w (n, p): the Tempo algebra of :mod:`~sealfn.training.obfuscation`.
* :class:`Conv2d`, x (B, C, H, W) conv w (O, C, kh, kw): a convolution is a matrix product over
  channels with a spatial convolution in each term, so the batch plays m, the input channels n
  and the output channels p; permuting and scaling those axes commutes with the convolution::

      X' = P_B D_B X D_C P_Cᵀ        W' = P_O D_O W D_C⁻¹ P_Cᵀ
      Y' = conv(X', W') = P_B D_B Y D_O P_Oᵀ
      dY' = P_B D_B⁻¹ dY D_O⁻¹ P_Oᵀ   dX' = conv2d_input(dY', W') = P_B D_B⁻¹ dX D_C⁻¹ P_Cᵀ
      dW' = conv2d_weight(X', dY') = P_O D_O⁻¹ dW D_C P_Cᵀ

  (on the first two axes of each tensor; the spatial axes are untouched, which is what this
  mode leaks: each image's spatial layout, up to one scale factor per channel).

Checks contract the product's outer axis (p) with secret probes, as Freivalds does: for the
convolution, ``conv(X', W' r) = conv(X', W') r``, one convolution with k filters instead of O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from sealfn.training import freivalds
from sealfn.training import obfuscation as ob
from sealfn.training.kernels import conv
from sealfn.training.keys import MatmulKey
from sealfn.training.wire import Conv, Product

Tensor = torch.Tensor


class Bilinear(Protocol):
    """A product y = f(x, w), linear in each operand, with its two gradients."""

    def sizes(self, x: Tensor, w: Tensor) -> tuple[int, int, int]: ...
    def y(self, x: Tensor, w: Tensor) -> Tensor: ...
    def dx(self, dy: Tensor, w: Tensor) -> Tensor: ...
    def dw(self, x: Tensor, dy: Tensor) -> Tensor: ...
    def encode_x(self, x: Tensor, key: MatmulKey) -> Tensor: ...
    def encode_w(self, w: Tensor, key: MatmulKey) -> Tensor: ...
    def encode_dy(self, dy: Tensor, key: MatmulKey) -> Tensor: ...
    def decode_y(self, y: Tensor, key: MatmulKey) -> Tensor: ...
    def decode_dx(self, dx: Tensor, key: MatmulKey) -> Tensor: ...
    def decode_dw(self, dw: Tensor, key: MatmulKey) -> Tensor: ...
    def product_y(self, x: str, w: str) -> Product: ...
    def product_dx(self, dy: str, w: str) -> Product: ...
    def product_dw(self, x: str, dy: str) -> Product: ...
    def expect_y(self, x: Tensor, w: Tensor, checks: Checks) -> freivalds.Expectation: ...
    def expect_dx(self, dy: Tensor, w: Tensor, checks: Checks) -> freivalds.Expectation: ...
    def expect_dw(self, x: Tensor, dy: Tensor, checks: Checks) -> freivalds.Expectation: ...


@dataclass
class Checks:
    """What the checks of one product share: where its probes come from (a CSPRNG, or a
    :class:`~sealfn.training.freivalds.ProbePool` of fresh probes drawn ahead), k, and |·| of
    each operand (each operand is checked in two products, so its absolute value is computed
    once)."""

    rng: freivalds.ProbeSource
    repetitions: int
    abs_of: dict[int, Tensor]

    def abs(self, t: Tensor) -> Tensor:
        cached = self.abs_of.get(id(t))
        if cached is None:
            cached = self.abs_of[id(t)] = t.abs()
        return cached


class Matmul:
    """x (m, n) @ w (n, p)."""

    def sizes(self, x: Tensor, w: Tensor) -> tuple[int, int, int]:
        return x.shape[0], x.shape[1], w.shape[1]

    def y(self, x: Tensor, w: Tensor) -> Tensor:
        return x @ w

    def dx(self, dy: Tensor, w: Tensor) -> Tensor:
        return dy @ w.T

    def dw(self, x: Tensor, dy: Tensor) -> Tensor:
        return x.T @ dy

    encode_x = staticmethod(ob.encode_x)
    encode_w = staticmethod(ob.encode_w)
    encode_dy = staticmethod(ob.encode_dy)
    decode_y = staticmethod(ob.decode_y)
    decode_dx = staticmethod(ob.decode_dx)
    decode_dw = staticmethod(ob.decode_dw)

    def product_y(self, x: str, w: str) -> Product:
        return Product(x, w)

    def product_dx(self, dy: str, w: str) -> Product:
        return Product(dy, w, transpose_right=True)

    def product_dw(self, x: str, dy: str) -> Product:
        return Product(x, dy, transpose_left=True)

    def expect_y(self, x: Tensor, w: Tensor, checks: Checks) -> freivalds.Expectation:
        return _expect(x, w, checks.abs(x), checks.abs(w), checks)

    def expect_dx(self, dy: Tensor, w: Tensor, checks: Checks) -> freivalds.Expectation:
        return _expect(dy, w.T, checks.abs(dy), checks.abs(w).T, checks)

    def expect_dw(self, x: Tensor, dy: Tensor, checks: Checks) -> freivalds.Expectation:
        return _expect(x.T, dy, checks.abs(x).T, checks.abs(dy), checks)


def _expect(a: Tensor, b: Tensor, abs_a: Tensor, abs_b: Tensor, c: Checks) -> freivalds.Expectation:
    return freivalds.expect(a, b, c.rng, repetitions=c.repetitions, abs_a=abs_a, abs_b=abs_b)


MATMUL = Matmul()


@dataclass(frozen=True)
class Conv2d:
    """x (B, C, H, W) conv w (O, C, kh, kw), no bias, no groups, channel-level keys."""

    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        (batch, _, height, width), kernel = self.x_shape, self.w_shape[2:]
        out = [
            (size + 2 * pad - dil * (k - 1) - 1) // step + 1
            for size, pad, dil, k, step in zip(
                (height, width), self.padding, self.dilation, kernel, self.stride, strict=True
            )
        ]
        return batch, self.w_shape[0], out[0], out[1]

    def sizes(self, x: Tensor, w: Tensor) -> tuple[int, int, int]:
        return x.shape[0], x.shape[1], w.shape[0]

    def _run(self, op: str, left: Tensor, right: Tensor, shape: tuple[int, ...] = ()) -> Tensor:
        return conv(
            op,
            left,
            right,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            shape=shape,
        )

    def y(self, x: Tensor, w: Tensor) -> Tensor:
        return self._run("conv2d", x, w)

    def dx(self, dy: Tensor, w: Tensor) -> Tensor:
        return self._run("conv2d_input", dy, w, self.x_shape)

    def dw(self, x: Tensor, dy: Tensor) -> Tensor:
        return self._run("conv2d_weight", x, dy, self.w_shape)

    def encode_x(self, x: Tensor, key: MatmulKey) -> Tensor:
        return ob.scramble(x, key.m, key.n, 1, 1)

    def encode_w(self, w: Tensor, key: MatmulKey) -> Tensor:
        return ob.scramble(w, key.p, key.n, 1, -1)

    def encode_dy(self, dy: Tensor, key: MatmulKey) -> Tensor:
        return ob.scramble(dy, key.m, key.p, -1, -1)

    def decode_y(self, y: Tensor, key: MatmulKey) -> Tensor:
        return ob.unscramble(y, key.m, key.p, 1, 1)

    def decode_dx(self, dx: Tensor, key: MatmulKey) -> Tensor:
        return ob.unscramble(dx, key.m, key.n, -1, -1)

    def decode_dw(self, dw: Tensor, key: MatmulKey) -> Tensor:
        return ob.unscramble(dw, key.p, key.n, -1, 1)

    def _spec(self, op: str, shape: tuple[int, ...] = ()) -> Conv:
        return Conv(op, self.stride, self.padding, self.dilation, shape)

    def product_y(self, x: str, w: str) -> Product:
        return Product(x, w, conv=self._spec("conv2d"))

    def product_dx(self, dy: str, w: str) -> Product:
        return Product(dy, w, conv=self._spec("conv2d_input", self.x_shape))

    def product_dw(self, x: str, dy: str) -> Product:
        return Product(x, dy, conv=self._spec("conv2d_weight", self.w_shape))

    def expect_y(self, x: Tensor, w: Tensor, checks: Checks) -> freivalds.Expectation:
        channels, kh, kw = self.w_shape[1:]
        return self._expect(self.y, x, w, 0, 1, self.y_shape, channels * kh * kw, checks)

    def expect_dx(self, dy: Tensor, w: Tensor, checks: Checks) -> freivalds.Expectation:
        def op(a: Tensor, b: Tensor) -> Tensor:  # b: W' with k input channels
            return self._run("conv2d_input", a, b, (self.x_shape[0], b.shape[1], *self.x_shape[2:]))

        filters, _, kh, kw = self.w_shape
        return self._expect(op, dy, w, 1, 1, self.x_shape, filters * kh * kw, checks)

    def expect_dw(self, x: Tensor, dy: Tensor, checks: Checks) -> freivalds.Expectation:
        def op(a: Tensor, b: Tensor) -> Tensor:  # b: dY' with k output channels
            return self._run("conv2d_weight", a, b, (b.shape[1], *self.w_shape[1:]))

        batch, _, height, width = self.y_shape
        return self._expect(op, x, dy, 1, 0, self.w_shape, batch * height * width, checks)

    @staticmethod
    def _expect(  # noqa: PLR0917 (one call shape for the three checks)
        op: Callable[[Tensor, Tensor], Tensor],
        a: Tensor,
        b: Tensor,
        b_axis: int,
        c_axis: int,
        c_shape: tuple[int, ...],
        terms: int,
        checks: Checks,
    ) -> freivalds.Expectation:
        return freivalds.expect_bilinear(
            op,
            a,
            b,
            b_axis=b_axis,
            c_axis=c_axis,
            c_shape=c_shape,
            terms=terms,
            rng=checks.rng,
            repetitions=checks.repetitions,
            abs_a=checks.abs(a),
            abs_b=checks.abs(b),
        )
