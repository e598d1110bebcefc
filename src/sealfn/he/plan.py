"""Compile a folded network (``NetGraph``) into a straight-line plan of CKKS-friendly ops.

Layout: one ciphertext holds one image as a vector of width ``d`` (a power of two ≥ C·H·W),
channel-major ``(c, y, x)``, repeated ``slots / d`` times so that cyclic rotations by ``k < d``
act on every copy alike. Every convolution (and the linear head) is a ``d x d`` matrix applied with
the diagonal method (baby-step giant-step), one multiplicative level. Each activation
``a·x² + b·x + c`` (a > 0) is rewritten ``(√a·x + b/(2√a))² + (c - b²/(4a))``: the affine part
folds into the preceding matrix, so the activation costs one square (one level). Additions cost
no level; the operand at the higher level is switched down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sealfn.errors import ModelError
from sealfn.he.graph import Act, Conv, NetGraph
from sealfn.he.protocol import Requirements

INPUT = 0  # register of the encrypted input


@dataclass(frozen=True)
class Linear:
    dst: int
    src: int
    matrix: np.ndarray  # (d, d): out = matrix @ in + bias
    bias: np.ndarray  # (d,)


@dataclass(frozen=True)
class Square:
    dst: int
    src: int
    offset: np.ndarray  # (d,): out = in² + offset


@dataclass(frozen=True)
class Add:
    dst: int
    a: int
    b: int


Op = Linear | Square | Add


@dataclass(frozen=True)
class Plan:
    width: int  # d
    inputs: int  # C·H·W values of one image
    outputs: int  # classes
    ops: tuple[Op, ...]
    output: int  # register holding the logits (first ``outputs`` entries)

    def run_plain(self, x: np.ndarray) -> np.ndarray:
        """The plan on plaintext float64 (the reference the HE evaluation must match)."""
        registers = {INPUT: _pad(x.reshape(-1).astype(np.float64), self.width)}
        for op in self.ops:
            if isinstance(op, Linear):
                registers[op.dst] = op.matrix @ registers[op.src] + op.bias
            elif isinstance(op, Square):
                registers[op.dst] = registers[op.src] ** 2 + op.offset
            else:
                registers[op.dst] = registers[op.a] + registers[op.b]
        return registers[self.output][: self.outputs]


@dataclass(frozen=True)
class Cost:
    """What a plan costs under CKKS, counted from the plan (not measured)."""

    depth: int  # multiplicative levels on the longest path
    linears: int
    squares: int
    adds: int
    rotations: int  # rotate_vector calls (baby-step giant-step)
    plain_mults: int  # plaintext-ciphertext products (non-zero diagonals)
    bootstraps: int = 0  # TenSEAL/SEAL have no bootstrapping: depth is paid in coefficient moduli


def compile_graph(graph: NetGraph) -> Plan:
    """The plan for ``graph``; raises ``ModelError`` if it does not fit the layout."""
    c_in, h, w = graph.image
    channels = graph.stem.weight.shape[0]
    width = _pow2(max(c_in * h * w, channels * h * w, graph.classes))
    builder = _Builder(width, (h, w))
    source = builder.linear(INPUT, _conv_matrix(graph.stem, (h, w)), _conv_bias(graph.stem, h * w))
    y = source
    for block in graph.blocks:
        u = builder.activation(y, block.conv1, block.act1)
        if graph.kind == "standard":
            t = builder.linear(u, *_folded(block.conv2, block.act2, (h, w)))
            scaled = builder.linear(y, np.diag(np.repeat(np.sqrt(block.act2.a), h * w)), None)
            y = builder.square(builder.add(t, scaled), _offset(block.act2, h * w))
        else:
            y = builder.add(builder.activation(u, block.conv2, block.act2), source)
    logits = builder.linear(y, graph.head_weight, graph.head_bias)
    return Plan(width, c_in * h * w, graph.classes, tuple(builder.ops), logits)


def cost(plan: Plan) -> Cost:
    levels = {INPUT: 0}
    rotations = plain_mults = 0
    for op in plan.ops:
        if isinstance(op, Linear):
            levels[op.dst] = levels[op.src] + 1
            steps = bsgs_steps(diagonals(op.matrix), plan.width)
            rotations += len(steps.baby) + len(steps.giant)
            plain_mults += len(steps.offsets)
        elif isinstance(op, Square):
            levels[op.dst] = levels[op.src] + 1
        else:
            levels[op.dst] = max(levels[op.a], levels[op.b])
    linears, squares, adds = (
        sum(isinstance(op, k) for op in plan.ops) for k in (Linear, Square, Add)
    )
    return Cost(levels[plan.output], linears, squares, adds, rotations, plain_mults)


def requirements(plan: Plan) -> Requirements:
    counted = cost(plan)
    return Requirements(plan.width, plan.inputs, plan.outputs, counted.depth, counted.rotations)


# --- the diagonal method ------------------------------------------------------------------------


@dataclass(frozen=True)
class Steps:
    group: int  # g: offsets are g·i + j
    offsets: tuple[int, ...]  # non-zero diagonals
    baby: tuple[int, ...]  # j > 0 the input is rotated by
    giant: tuple[int, ...]  # g·i > 0 the partial sums are rotated by


def diagonals(matrix: np.ndarray) -> dict[int, np.ndarray]:
    """Non-zero generalised diagonals: ``diag_k[r] = M[r, (r + k) mod d]``."""
    d = matrix.shape[0]
    rows = np.arange(d)
    found = {k: matrix[rows, (rows + k) % d] for k in range(d)}
    return {k: v for k, v in found.items() if np.any(v)}


LinearSteps = tuple[dict[int, np.ndarray], Steps]


def linear_steps(plan: Plan) -> list[LinearSteps | None]:
    """Per op: a ``Linear``'s non-zero diagonals and their rotation steps; ``None`` otherwise."""
    prepared: list[LinearSteps | None] = []
    for op in plan.ops:
        if isinstance(op, Linear):
            diags = diagonals(op.matrix)
            prepared.append((diags, bsgs_steps(diags, plan.width)))
        else:
            prepared.append(None)
    return prepared


def bsgs_steps(diags: dict[int, np.ndarray], width: int) -> Steps:
    group = 1 << ((width.bit_length() - 1 + 1) // 2)  # ≈ √d, a power of two
    offsets = tuple(sorted(diags))
    baby = tuple(sorted({k % group for k in offsets} - {0}))
    giant = tuple(sorted({k - k % group for k in offsets} - {0}))
    return Steps(group, offsets, baby, giant)


# --- building ---------------------------------------------------------------------------------


class _Builder:
    def __init__(self, width: int, size: tuple[int, int]) -> None:
        self.width, self.size, self.ops = width, size, list[Op]()
        self._next = INPUT + 1

    def _register(self) -> int:
        self._next += 1
        return self._next - 1

    def linear(self, src: int, matrix: np.ndarray, bias: np.ndarray | None) -> int:
        full, vec = np.zeros((self.width, self.width)), np.zeros(self.width)
        rows, cols = matrix.shape
        full[:rows, :cols] = matrix
        if bias is not None:
            vec[: len(bias)] = bias
        dst = self._register()
        self.ops.append(Linear(dst, src, full, vec))
        return dst

    def square(self, src: int, offset: np.ndarray) -> int:
        dst = self._register()
        self.ops.append(Square(dst, src, _pad(offset, self.width)))
        return dst

    def add(self, a: int, b: int) -> int:
        dst = self._register()
        self.ops.append(Add(dst, a, b))
        return dst

    def activation(self, src: int, conv: Conv, act: Act) -> int:
        """``act(conv(src))`` as one matrix (affine part of the activation folded in) + a square."""
        return self.square(
            self.linear(src, *_folded(conv, act, self.size)), _offset(act, _n(self.size))
        )


def _folded(conv: Conv, act: Act, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``√a·(M x + β) + b/(2√a)`` as ``(matrix, bias)``."""
    root = np.repeat(np.sqrt(act.a), _n(size))
    shift = np.repeat(act.b / (2 * np.sqrt(act.a)), _n(size))
    return root[:, None] * _conv_matrix(conv, size), root * _conv_bias(conv, _n(size)) + shift


def _offset(act: Act, positions: int) -> np.ndarray:
    if np.any(act.a <= 0):
        raise ModelError("an activation has a leading coefficient ≤ 0: cannot fold it")
    result: np.ndarray = np.repeat(act.c - act.b**2 / (4 * act.a), positions)
    return result


def _conv_matrix(conv: Conv, size: tuple[int, int]) -> np.ndarray:
    """The 'same'-padded convolution as a (C_out·H·W, C_in·H·W) matrix."""
    c_out, c_in, k, _ = conv.weight.shape
    h, w = size
    pad = k // 2
    matrix = np.zeros((c_out * h * w, c_in * h * w))
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for dy in range(k):
        for dx in range(k):
            sy, sx = ys + dy - pad, xs + dx - pad
            inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
            out_pos, in_pos = (ys * w + xs)[inside], (sy * w + sx)[inside]
            for co in range(c_out):
                for ci in range(c_in):
                    matrix[co * h * w + out_pos, ci * h * w + in_pos] += conv.weight[co, ci, dy, dx]
    return matrix


def _conv_bias(conv: Conv, positions: int) -> np.ndarray:
    result: np.ndarray = np.repeat(conv.bias, positions)
    return result


def _n(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _pad(vector: np.ndarray, width: int) -> np.ndarray:
    if len(vector) > width:
        raise ModelError(f"a vector of {len(vector)} values does not fit width {width}")
    return np.pad(vector, (0, width - len(vector)))


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()
