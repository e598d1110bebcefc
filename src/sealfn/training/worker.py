"""An untrusted accelerator worker: multiplies (or convolves) the obfuscated tensors it is sent.

Run as ``python -m sealfn.training.worker --fd N`` by the coordinator, on one end of a socket pair.
It imports numpy, torch, sealfn's IPC frames and the product kernels, never model or key code (a
test checks ``sys.modules``). It uses the GPU through PyTorch when one is present, else the CPU,
with TF32 off so float32 products are true float32 products.

Two options exist to *play the adversary* in tests and demos: ``--trace DIR`` saves every tensor
the worker receives (what a curious host sees), ``--tamper KIND`` corrupts results the way a
malicious host might (the coordinator's Freivalds checks must catch it).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from sealfn.errors import ProtocolError, SealfnError
from sealfn.ipc.frames import Frame, Kind
from sealfn.training.kernels import conv, matmul, matmul_mod_p
from sealfn.training.wire import FrameSocket, Product, WorkReply, WorkRequest

TAMPERING = ("entry", "scale", "swap", "stale")
CACHE_BYTES = 2 << 30  # operands kept for reuse, least recently used evicted first


class OperandCache:
    """Operands by content id on the worker's device, reference-counted, bounded in bytes (LRU).

    Storing an id that is already cached adds a reference (the content is the same); each drop
    removes one, and the operand goes when none is left, so two products that happen to share
    an operand cannot drop it from under each other.
    """

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._refs: dict[str, int] = {}
        self._limit = limit
        self.bytes = 0

    def put(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._items:
            self._refs[name] += 1
            self._items.move_to_end(name)
            return
        self._items[name] = tensor
        self._refs[name] = 1
        self.bytes += tensor.numel() * tensor.element_size()
        while self.bytes > self._limit and len(self._items) > 1:
            self._evict(next(iter(self._items)))

    def get(self, name: str) -> torch.Tensor:
        tensor = self._items.get(name)
        if tensor is None:
            raise ProtocolError(f"operand {name} is not in the worker's cache")
        self._items.move_to_end(name)
        return tensor

    def drop(self, name: str) -> None:
        if name not in self._refs:
            return
        self._refs[name] -= 1
        if self._refs[name] == 0:
            self._evict(name)

    def __len__(self) -> int:
        return len(self._items)

    def _evict(self, name: str) -> None:
        tensor = self._items.pop(name)
        del self._refs[name]
        self.bytes -= tensor.numel() * tensor.element_size()


class Worker:
    """Serves work requests: store operands, compute products, return them."""

    def __init__(
        self, device: torch.device, *, trace: Path | None = None, tamper: str | None = None
    ) -> None:
        self.device = device
        self.cache = OperandCache()
        self._trace = trace
        self._tamper = tamper
        self._received = 0
        self._previous: dict[tuple[int, ...], torch.Tensor] = {}

    def handle(self, request: WorkRequest) -> WorkReply:
        start = time.perf_counter()
        for name, array in request.store:
            self._observe(array)
            self.cache.put(name, torch.from_numpy(np.array(array)).to(self.device))
        results = [self._tampered(self._product(p)) for p in request.products]
        for name in request.drop:
            self.cache.drop(name)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        arrays = tuple(result.cpu().numpy() for result in results)
        return WorkReply(arrays, time.perf_counter() - start)

    def _product(self, product: Product) -> torch.Tensor:
        left, right = self.cache.get(product.left), self.cache.get(product.right)
        if product.conv is not None:
            spec = product.conv
            if left.ndim != 4 or right.ndim != 4 or len(spec.shape) != (spec.op != "conv2d") * 4:
                raise ProtocolError("convolutions take 4-D operands (and a 4-D result shape)")
            return conv(
                spec.op,
                left,
                right,
                stride=spec.stride,
                padding=spec.padding,
                dilation=spec.dilation,
                shape=spec.shape,
            )
        left = left.T if product.transpose_left else left
        right = right.T if product.transpose_right else right
        if left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[0]:
            raise ProtocolError(f"cannot multiply {tuple(left.shape)} by {tuple(right.shape)}")
        if product.modular:
            return matmul_mod_p(left.contiguous(), right.contiguous())
        return matmul(left, right)

    def _observe(self, array: np.ndarray) -> None:
        """--trace: keep what a curious host would see."""
        if self._trace is not None:
            np.save(self._trace / f"{os.getpid()}-{self._received:06d}.npy", array)
        self._received += 1

    def _tampered(self, result: torch.Tensor) -> torch.Tensor:
        """--tamper: corrupt a result the way a malicious host might."""
        kind, shape = self._tamper, tuple(result.shape)
        stale = self._previous.get(shape)
        self._previous[shape] = result
        if kind is None:
            return result
        out = result.clone()
        if kind == "entry":
            out[0, 0] += 1e-3 * out.abs().max() + 1e-3
        elif kind == "scale":
            out *= 1.001
        elif kind == "swap" and shape[0] > 1:
            out[[0, 1]] = result[[1, 0]]
        elif kind == "stale" and stale is not None:
            out = stale
        return out


def serve(channel: FrameSocket, worker: Worker) -> None:
    """Answer RUN frames until STOP or until the coordinator hangs up."""
    channel.send(Frame(Kind.HELLO, 0, {"device": worker.device.type, "pid": os.getpid()}))
    while (frame := channel.receive()) is not None and frame.kind is not Kind.STOP:
        try:
            reply = worker.handle(WorkRequest.from_frame(frame)).to_frame(frame.request_id)
        except (SealfnError, RuntimeError, ValueError, TypeError) as exc:
            message = exc.message if isinstance(exc, SealfnError) else type(exc).__name__
            reply = Frame(Kind.FAILURE, frame.request_id, {"message": message})
        channel.send(reply)


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return torch.device("cuda")
    return torch.device("cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sealfn.training.worker")
    parser.add_argument("--fd", type=int, required=True, help="a connected socket's descriptor")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--trace", type=Path, default=None, help="save received tensors here")
    parser.add_argument("--tamper", choices=TAMPERING, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sock = socket.socket(fileno=args.fd)
    channel = FrameSocket(sock)
    try:
        serve(channel, Worker(pick_device(), trace=args.trace, tamper=args.tamper))
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
