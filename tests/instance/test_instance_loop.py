"""InstanceLoop over a real socket pair and arena: HELLO, LOAD, RUN (inline and arena), STOP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from sealfn.instance.loop import InstanceLoop
from sealfn.instance.models import ModelHost
from sealfn.ipc.arena import Arena, ArenaLayout
from sealfn.ipc.frames import LENGTH, Frame, Kind, Where, tensors_from_json, tensors_to_json
from sealfn.ipc.tensors import TensorWriter, read_tensor

if TYPE_CHECKING:
    from pathlib import Path

    from sealfn_testing import Models

Reference = Callable[["Path", dict[str, np.ndarray]], dict[str, np.ndarray]]

INLINE = 4096  # bytes: small, so that modest tensors already take the arena
SLOTS = 2


@dataclass
class Gateway:
    """The test's side of the socket: blocking frame I/O and the shared arena."""

    sock: socket.socket
    arena: Arena
    thread: threading.Thread
    _ids: Iterator[int]

    def send(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> int:
        request_id = next(self._ids)
        self.sock.sendall(Frame(kind, request_id, meta, payload).to_bytes())
        return request_id

    def receive(self) -> Frame:
        (size,) = LENGTH.unpack(self._exactly(LENGTH.size))
        return Frame.from_bytes(self._exactly(size))

    def request(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> Frame:
        request_id = self.send(kind, meta, payload)
        reply = self.receive()
        assert reply.request_id == request_id
        return reply

    def run(self, model: str, slot: int, requests: list[dict[str, np.ndarray]]) -> Frame:
        start = self.arena.layout.in_offset(slot)
        region = self.arena.view[start : start + self.arena.layout.slot_bytes]
        writer = TensorWriter(region, start, INLINE)
        refs = [tensors_to_json(tuple(writer.add(k, v) for k, v in r.items())) for r in requests]
        meta = {"model": model, "slot": slot, "requests": refs}
        return self.request(Kind.RUN, meta, writer.payload())

    def outputs(self, reply: Frame) -> list[dict[str, np.ndarray]]:
        assert reply.kind is Kind.RESULT, reply.meta
        return [
            {r.name: read_tensor(r, reply.payload, self.arena.view).copy() for r in refs}
            for refs in map(tensors_from_json, reply.meta["outputs"])
        ]

    def _exactly(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                raise EOFError("instance closed the socket")
            chunks += chunk
        return bytes(chunks)


@pytest.fixture
def gateway(models: Models) -> Iterator[Gateway]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.settimeout(10)
    arena = Arena.create(ArenaLayout(SLOTS, 1 << 20))
    loop = InstanceLoop(theirs, arena, ModelHost(1), SLOTS, INLINE)
    thread = threading.Thread(target=loop.serve, daemon=True)
    thread.start()
    gateway = Gateway(ours, arena, thread, iter(range(1, 1 << 30)))
    hello = gateway.receive()
    assert hello.kind is Kind.HELLO
    reply = gateway.request(Kind.LOAD, {"model": "large", "path": str(models.large)})
    assert reply.kind is Kind.LOADED
    yield gateway
    ours.close()  # the loop sees EOF and returns
    thread.join(10)
    theirs.close()
    arena.close()


def test_hello_then_load_reports_load_time(gateway: Gateway, models: Models) -> None:
    reply = gateway.request(Kind.LOAD, {"model": "mlp", "path": str(models.mlp)})
    assert reply.kind is Kind.LOADED
    assert reply.meta["model"] == "mlp"
    assert reply.meta["load_s"] > 0


def test_small_batch_travels_inline(gateway: Gateway, models: Models, reference: Reference) -> None:
    gateway.request(Kind.LOAD, {"model": "mlp", "path": str(models.mlp)})
    requests = [{"input": np.full((rows, 16), rows, np.float32)} for rows in (1, 3)]
    reply = gateway.run("mlp", 0, requests)
    refs = [tensors_from_json(o)[0] for o in reply.meta["outputs"]]
    assert all(ref.where is Where.INLINE for ref in refs)
    for request, result in zip(requests, gateway.outputs(reply), strict=True):
        expected = reference(models.mlp, request)["output"]
        np.testing.assert_allclose(result["output"], expected, rtol=1e-6)


def test_run_batch_through_the_arena_and_started_flag(gateway: Gateway) -> None:
    rng = np.random.default_rng(0)
    requests = [{"x": rng.standard_normal((rows, 4096), dtype=np.float32)} for rows in (1, 2)]
    gateway.arena.mark_started(1, False)
    reply = gateway.run("large", 1, requests)
    assert gateway.arena.started(1)  # the instance flagged the slot before running
    assert not gateway.arena.started(0)
    refs = [tensors_from_json(o)[0] for o in reply.meta["outputs"]]
    assert all(ref.where is Where.ARENA for ref in refs)  # 16 KiB+ per output: over INLINE
    out_start = gateway.arena.layout.out_offset(1)
    assert all(
        out_start <= ref.offset < out_start + gateway.arena.layout.slot_bytes for ref in refs
    )
    for request, result in zip(requests, gateway.outputs(reply), strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 2 + 1)
    assert reply.meta["exec_s"] > 0


def test_failures_are_typed_and_the_loop_goes_on(gateway: Gateway) -> None:
    unknown = gateway.run("nope", 0, [{"x": np.zeros((1, 4096), np.float32)}])
    assert (unknown.kind, unknown.meta["error"]) == (Kind.FAILURE, "NotFound")
    bad_load = gateway.request(Kind.LOAD, {"model": "m", "path": "/no/such/model.onnx"})
    assert (bad_load.kind, bad_load.meta["error"]) == (Kind.FAILURE, "ModelError")
    wrong_kind = gateway.request(Kind.RESULT, {})
    assert (wrong_kind.kind, wrong_kind.meta["error"]) == (Kind.FAILURE, "ProtocolError")
    missing_meta = gateway.request(Kind.RUN, {"model": "large"})
    assert missing_meta.kind is Kind.FAILURE
    assert "instance error" in missing_meta.meta["message"]
    ok = gateway.run("large", 0, [{"x": np.ones((1, 4096), np.float32)}])
    assert gateway.outputs(ok)[0]["y"][0, 0] == 3


def test_unload(gateway: Gateway) -> None:
    reply = gateway.request(Kind.UNLOAD, {"model": "large"})
    assert reply.kind is Kind.UNLOADED
    gone = gateway.run("large", 0, [{"x": np.ones((1, 4096), np.float32)}])
    assert gone.meta["error"] == "NotFound"


def test_stop_ends_the_loop(gateway: Gateway) -> None:
    gateway.send(Kind.STOP, {})
    gateway.thread.join(10)
    assert not gateway.thread.is_alive()
