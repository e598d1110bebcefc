"""Convolutions with channel-level keys: exact decoding, gradients equal autograd's, checks that
catch tampering without false alarms, training through workers equal to plain training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional

from sealfn.errors import ConfigError, IntegrityError, ProtocolError
from sealfn.training.bilinear import Checks, Conv2d
from sealfn.training.coordinator import TrainConfig, Trainer, batches
from sealfn.training.data import digits
from sealfn.training.keys import KeyPool, MatmulKey, csprng
from sealfn.training.offload import ObfuscatedEngine, PlainEngine
from sealfn.training.pool import WorkerOptions, WorkerPool
from sealfn.training.wire import Conv, Product
from sealfn_testing import lockstep

# (x shape, w shape, stride, padding, dilation)
GEOMETRIES = [
    ((4, 1, 8, 8), (16, 1, 3, 3), (1, 1), (1, 1), (1, 1)),  # the digits CNN's first layer
    ((3, 5, 7, 6), (4, 5, 3, 2), (2, 1), (0, 1), (1, 2)),
    ((2, 3, 9, 9), (6, 3, 5, 5), (2, 2), (2, 2), (1, 1)),
]
TRIALS = 1000
HONEST = 10_000


def _conv(geometry: tuple[tuple[int, ...], ...]) -> Conv2d:
    x_shape, w_shape, stride, padding, dilation = geometry
    return Conv2d(x_shape, w_shape, stride, padding, dilation)  # type: ignore[arg-type]


def _operands(op: Conv2d, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(op.x_shape, generator=gen, dtype=dtype)
    return x, torch.randn(op.w_shape, generator=gen, dtype=dtype)


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def _key(op: Conv2d, x: torch.Tensor, w: torch.Tensor) -> MatmulKey:
    return KeyPool(csprng(), x.dtype).draw(*op.sizes(x, w))


@pytest.mark.parametrize(("dtype", "limit"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_channel_keyed_convolution_decodes_to_the_convolution(
    geometry: tuple[tuple[int, ...], ...], dtype: torch.dtype, limit: float
) -> None:
    op = _conv(geometry)
    x, w = _operands(op, dtype, 1)
    key = _key(op, x, w)
    yp = op.y(op.encode_x(x, key), op.encode_w(w, key))  # what the worker computes
    want = functional.conv2d(x, w, None, op.stride, op.padding, op.dilation)
    assert tuple(want.shape) == op.y_shape
    assert _relative(op.decode_y(yp, key), want) <= limit


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_key_shift_convolution_gradients_equal_autograd(
    geometry: tuple[tuple[int, ...], ...],
) -> None:
    op = _conv(geometry)
    x, w = _operands(op, torch.float64, 2)
    x.requires_grad_(True)
    w.requires_grad_(True)
    dy = torch.randn(op.y_shape, dtype=torch.float64)
    functional.conv2d(x, w, None, op.stride, op.padding, op.dilation).backward(dy)
    assert x.grad is not None and w.grad is not None
    key = _key(op, x, w)
    xp, wp = op.encode_x(x.detach(), key), op.encode_w(w.detach(), key)
    dyp = op.encode_dy(dy, key)  # the one new encryption of the backward pass
    assert _relative(op.decode_dx(op.dx(dyp, wp), key), x.grad) <= 1e-10
    assert _relative(op.decode_dw(op.dw(xp, dyp), key), w.grad) <= 1e-10


def test_channel_keys_permute_and_scale_batch_and_channels() -> None:
    op = _conv(GEOMETRIES[1])
    x, w = _operands(op, torch.float64, 3)
    key = _key(op, x, w)
    xp, wp = op.encode_x(x, key), op.encode_w(w, key)
    assert not torch.equal(torch.sort(xp.flatten()).values, torch.sort(x.flatten()).values)
    assert not torch.equal(torch.sort(wp.flatten()).values, torch.sort(w.flatten()).values)
    # what this mode leaks: each (image, channel) plane is the plaintext's up to one factor
    plane = xp[0, 0] / x[key.m.perm[0], key.n.perm[0]]
    assert torch.allclose(plane, plane.flatten()[0].expand_as(plane))


# --- checks -----------------------------------------------------------------------------------


def _random_conv(rng: np.random.Generator) -> Conv2d:
    """Sums of at most 36 (y, dx) and 72 (dw) terms, near the matrix tests' n of 2..23, and at
    least 4 entries in each of y, dx, dw, like their m, p ≥ 2 (float detection falls as the
    terms grow, and a single output entry is often tiny next to its terms by cancellation)."""
    while True:
        b, c, o = int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
        k = int(rng.integers(1, 4))
        side = int(rng.integers(k, 5))
        stride, padding = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        op = Conv2d((b, c, side, side), (o, c, k, k), (stride, stride), (padding, padding), (1, 1))
        if min(math.prod(shape) for shape in (op.x_shape, op.w_shape, op.y_shape)) >= 4:
            return op


def _products(
    op: Conv2d, dtype: torch.dtype, rng: np.random.Generator
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """The three products of one layer: (which, A, B) with magnitudes of 10^-3..10^3."""
    scale = 10.0 ** rng.uniform(-3, 3)
    x = torch.from_numpy(rng.standard_normal(op.x_shape) * scale).to(dtype)
    w = torch.from_numpy(rng.standard_normal(op.w_shape)).to(dtype)
    dy = torch.from_numpy(rng.standard_normal(op.y_shape)).to(dtype)
    return [("y", x, w), ("dx", dy, w), ("dw", x, dy)]


def _run(op: Conv2d, which: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return {"y": op.y, "dx": op.dx, "dw": op.dw}[which](a, b)


def _passes(op: Conv2d, which: str, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> bool:
    checks = Checks(csprng(), 2, {})
    expect = {"y": op.expect_y, "dx": op.expect_dx, "dw": op.expect_dw}[which]
    try:
        expect(a, b, checks).verify(c)
    except IntegrityError:
        return False
    return True


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_honest_convolutions_and_gradients_never_fail(dtype: torch.dtype) -> None:
    rng = csprng()
    alarms = checked = 0
    while checked < HONEST // 2:
        op = _random_conv(rng)
        for which, a, b in _products(op, dtype, rng):
            alarms += not _passes(op, which, a, b, _run(op, which, a, b))
            checked += 1
    assert alarms == 0


def _tamper(kind: str, op: Conv2d, which: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c = _run(op, which, a, b)
    rng = np.random.default_rng()
    out = c.clone()
    if kind == "entry":  # one entry off by 0.1 % of the largest
        out.view(-1)[int(rng.integers(c.numel()))] += 1e-3 * float(c.abs().max())
    elif kind == "scale":
        out *= 1 + 1e-3
    elif kind == "swap":  # two slices of the first axis exchanged
        i, k = rng.choice(c.shape[0], size=2, replace=False) if c.shape[0] > 1 else (0, 0)
        out[[i, k]] = c[[k, i]]
    else:  # stale: B one small SGD update old
        update = torch.from_numpy(rng.standard_normal(tuple(b.shape))).to(b.dtype) * 1e-2
        out = _run(op, which, a, b - update * b.abs().max())
    return out


@pytest.mark.parametrize("kind", ["entry", "scale", "swap", "stale"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tampered_convolutions_are_caught(kind: str, dtype: torch.dtype) -> None:
    rng = csprng()
    caught = tried = 0
    while tried < TRIALS:
        op = _random_conv(rng)
        which, a, b = _products(op, dtype, rng)[tried % 3]
        bad = _tamper(kind, op, which, a, b)
        if torch.equal(bad, _run(op, which, a, b)):
            continue  # e.g. two equal slices swapped: nothing was tampered with
        tried += 1
        caught += not _passes(op, which, a, b, bad)
    assert caught >= 0.999 * TRIALS


def test_a_wrong_shape_or_nan_fails() -> None:
    op = _conv(GEOMETRIES[0])
    x, w = _operands(op, torch.float32, 4)
    y = op.y(x, w)
    assert not _passes(op, "y", x, w, y[:, :-1])
    y[0, 0, 0, 0] = float("nan")
    assert not _passes(op, "y", x, w, y)


# --- the wire and the workers -----------------------------------------------------------------


def test_convolutions_round_trip_and_malformed_ones_are_refused() -> None:
    spec = Conv("conv2d_input", (2, 1), (0, 1), (1, 2), (3, 5, 7, 6))
    product = Product("a", "b", conv=spec)
    assert Product.from_json(product.to_json()) == product
    for bad in (["conv3d", [1, 1], [0, 0], [1, 1], []], ["conv2d", [1], [0, 0], [1, 1], []]):
        with pytest.raises(ProtocolError):
            Product.from_json(["a", "b", False, False, False, bad])
    with pytest.raises(ProtocolError):
        Conv.from_json(["conv2d", [1, True], [0, 0], [1, 1], []])


def test_float64_channel_keyed_cnn_training_matches_plain_training() -> None:
    config = TrainConfig(model="cnn", dtype="float64", batch_size=32, conv="channel")
    with WorkerPool(1, WorkerOptions(threads=1)) as workers:
        engine = ObfuscatedEngine(workers, conv="channel")
        plain, offloaded = lockstep(config, engine, 100)
    assert max(abs(a - b) for a, b in zip(plain, offloaded, strict=True)) <= 1e-8
    assert plain[-1] < plain[0] / 2
    assert engine.counts.checks == engine.counts.products == 8 * 100  # 3 layers, 8 products
    assert engine.counts.encryptions == 9 * 100  # the key shift: 2 + 1 per layer (2 first)


def test_plain_offloading_of_whole_convolutions_matches_too() -> None:
    config = TrainConfig(model="cnn", dtype="float64", conv="channel")
    with WorkerPool(1, WorkerOptions(threads=1)) as workers:
        plain, offloaded = lockstep(config, PlainEngine(workers, conv="channel"), 5)
    assert max(abs(a - b) for a, b in zip(plain, offloaded, strict=True)) <= 1e-8


def test_channel_keys_need_the_key_shift_and_a_float_mode() -> None:
    with pytest.raises(ConfigError):
        TrainConfig(conv="channel", key_shift=False)
    with pytest.raises(ConfigError):
        TrainConfig(conv="channel", mode="exact")
    with pytest.raises(ConfigError):
        TrainConfig(conv="winograd")


def test_a_tampering_worker_is_caught_on_convolutions_and_recomputed_elsewhere() -> None:
    config = TrainConfig(model="cnn", dtype="float64", workers=2, conv="channel")
    options = WorkerOptions(threads=1, tamper="entry", tamper_workers=frozenset({0}))
    with WorkerPool(2, options) as workers:
        engine = ObfuscatedEngine(workers, conv="channel")
        plain, offloaded = lockstep(config, engine, 4)
    assert max(abs(a - b) for a, b in zip(plain, offloaded, strict=True)) <= 1e-8
    assert engine.incidents and {incident.worker for incident in engine.incidents} == {0}
    assert {incident.reason for incident in engine.incidents} == {"verification"}


def test_a_lone_tampering_worker_aborts_the_step_with_weights_untouched() -> None:
    config = TrainConfig(model="cnn", conv="channel")
    with WorkerPool(1, WorkerOptions(threads=1, tamper="swap")) as workers:
        trainer = Trainer(config, ObfuscatedEngine(workers, conv="channel"))
        before = [p.detach().clone() for p in trainer.net.parameters()]
        x, y = batches(digits(), config, 1)[0]
        with pytest.raises(IntegrityError):
            trainer.step(x, y)
        after = list(trainer.net.parameters())
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
