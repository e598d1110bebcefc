"""What the coordinator and an accelerator worker say to each other, over one blocking socket.

Frames are sealfn's IPC frames (:mod:`sealfn.ipc.frames`): HELLO (worker, once), RUN (a batch of
operands to store and products to compute), RESULT, FAILURE, STOP. Tensors travel inline in the
frame's payload. Operands are named by an id so a worker can keep them for later products: the
backward pass reuses the forward's X' and W' without resending them.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from sealfn.errors import InstanceFailed, ProtocolError
from sealfn.ipc.frames import LENGTH, MAX_FRAME, Frame, Kind, tensors_from_json, tensors_to_json
from sealfn.ipc.tensors import TensorWriter, read_tensor
from sealfn.training.kernels import CONV_OPS

_INLINE_ALL = MAX_FRAME  # no shared-memory arena here: every tensor travels inline
_SEPARATE_PAYLOAD = 1 << 16  # bytes; smaller payloads go out in one sendall with the header


def operand_id() -> str:
    """A fresh random name for an operand sent to a worker (names cache entries; not a secret).

    Random rather than a hash of the bytes: hashing cost every offloading mode ~0.4 ms per MB
    sent (6 ms of a 25 ms CNN step), and no two operands need to share a cache entry.
    """
    return secrets.token_hex(12)


@dataclass(frozen=True)
class Conv:
    """A convolution instead of a matrix product: which op (``kernels.CONV_OPS``), its geometry,
    and for the two gradients the shape of the input (``conv2d_input``) or weight
    (``conv2d_weight``) being computed."""

    op: str
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    shape: tuple[int, ...] = ()

    def to_json(self) -> list[Any]:
        return [
            self.op,
            list(self.stride),
            list(self.padding),
            list(self.dilation),
            list(self.shape),
        ]

    @classmethod
    def from_json(cls, raw: Any) -> Conv:
        if not isinstance(raw, list) or len(raw) != 5 or raw[0] not in CONV_OPS:
            raise ProtocolError("malformed convolution in a work request")
        op, stride, padding, dilation, shape = raw
        return cls(op, _pair(stride), _pair(padding), _pair(dilation), _ints(shape, 4))


def _ints(raw: Any, length: int) -> tuple[int, ...]:
    ok = isinstance(raw, list) and len(raw) in (0, length)
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in raw):
        raise ProtocolError("malformed convolution in a work request")
    return tuple(raw)


def _pair(raw: Any) -> tuple[int, int]:
    values = _ints(raw, 2)
    if len(values) != 2:
        raise ProtocolError("malformed convolution in a work request")
    return values[0], values[1]


@dataclass(frozen=True)
class Product:
    """One product ``op(left) @ op(right)`` of two cached operands; ``modular``: exact mod P;
    ``conv``: a convolution (or one of its gradients) of the two operands instead."""

    left: str
    right: str
    transpose_left: bool = False
    transpose_right: bool = False
    modular: bool = False
    conv: Conv | None = None

    def to_json(self) -> list[Any]:
        conv = None if self.conv is None else self.conv.to_json()
        return [
            self.left,
            self.right,
            self.transpose_left,
            self.transpose_right,
            self.modular,
            conv,
        ]

    @classmethod
    def from_json(cls, raw: Any) -> Product:
        if not isinstance(raw, list) or len(raw) != 6:
            raise ProtocolError("malformed product in a work request")
        left, right, t_left, t_right, modular, conv = raw
        parsed = None if conv is None else Conv.from_json(conv)
        return cls(str(left), str(right), bool(t_left), bool(t_right), bool(modular), parsed)


@dataclass(frozen=True)
class WorkRequest:
    """Operands to store (by content id), products to compute, then ids the worker may forget."""

    store: tuple[tuple[str, np.ndarray], ...]
    products: tuple[Product, ...]
    drop: tuple[str, ...] = ()

    def to_frame(self, request_id: int) -> Frame:
        writer = TensorWriter(None, 0, _INLINE_ALL)
        refs = tuple(writer.add(name, array) for name, array in self.store)
        meta = {
            "store": tensors_to_json(refs),
            "products": [product.to_json() for product in self.products],
            "drop": list(self.drop),
        }
        return Frame(Kind.RUN, request_id, meta, writer.payload())

    @classmethod
    def from_frame(cls, frame: Frame) -> WorkRequest:
        if frame.kind is not Kind.RUN:
            raise ProtocolError(f"expected a RUN frame, got {frame.kind.name}")
        refs = tensors_from_json(frame.meta.get("store", []))
        store = tuple((ref.name, read_tensor(ref, frame.payload, None)) for ref in refs)
        products = tuple(Product.from_json(raw) for raw in frame.meta.get("products", []))
        drop = frame.meta.get("drop", [])
        if not isinstance(drop, list):
            raise ProtocolError("malformed drop list in a work request")
        return cls(store, products, tuple(str(name) for name in drop))


@dataclass(frozen=True)
class WorkReply:
    """The products of one request, in order, and the worker's compute time in seconds."""

    results: tuple[np.ndarray, ...]
    seconds: float

    def to_frame(self, request_id: int) -> Frame:
        writer = TensorWriter(None, 0, _INLINE_ALL)
        refs = tuple(writer.add(str(i), array) for i, array in enumerate(self.results))
        meta = {"results": tensors_to_json(refs), "seconds": self.seconds}
        return Frame(Kind.RESULT, request_id, meta, writer.payload())

    @classmethod
    def from_frame(cls, frame: Frame) -> WorkReply:
        if frame.kind is Kind.FAILURE:
            raise InstanceFailed(f"worker failed: {frame.meta.get('message', 'no message')}")
        if frame.kind is not Kind.RESULT:
            raise ProtocolError(f"expected a RESULT frame, got {frame.kind.name}")
        refs = tensors_from_json(frame.meta.get("results", []))
        results = tuple(read_tensor(ref, frame.payload, None) for ref in refs)
        seconds = frame.meta.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ProtocolError("malformed compute time in a work reply")  # an untrusted worker
        return cls(results, float(seconds))


class FrameSocket:
    """Blocking frame I/O on a connected stream socket.

    Frames are read at their exact size into one buffer of their own (no intermediate chunks,
    no copy into a second buffer), and a large payload is sent as it is rather than joined to
    its header first: each MB of operands costs one copy less on each side.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, frame: Frame) -> None:
        if len(frame.payload) < _SEPARATE_PAYLOAD:
            self.sock.sendall(frame.to_bytes())
            return
        head = bytearray(Frame(frame.kind, frame.request_id, frame.meta).to_bytes())
        LENGTH.pack_into(head, 0, len(head) - LENGTH.size + len(frame.payload))  # u32 length
        self.sock.sendall(head)
        self.sock.sendall(frame.payload)

    def receive(self) -> Frame | None:
        """The next frame, or None when the peer closed the connection."""
        prefix = self._read(LENGTH.size)
        if prefix is None:
            return None
        (size,) = LENGTH.unpack(prefix)
        if size > MAX_FRAME:
            raise ProtocolError(f"frame of {size} bytes refused")
        body = self._read(size)
        return None if body is None else Frame.from_bytes(memoryview(body))

    def _read(self, size: int) -> bytearray | None:
        """Exactly ``size`` bytes, or None if the connection closes first."""
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        while got < size:
            received = self.sock.recv_into(view[got:])
            if not received:
                return None
            got += received
        return buffer

    def close(self) -> None:
        self.sock.close()
