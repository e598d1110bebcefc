"""The instance's serving loop: read a frame, handle it, reply; one request id per reply."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sealfn.errors import ProtocolError, SealfnError
from sealfn.instance.models import ModelHost
from sealfn.ipc import trace
from sealfn.ipc.arena import Arena
from sealfn.ipc.frames import LENGTH, Frame, Kind, tensors_from_json, tensors_to_json
from sealfn.ipc.tensors import TensorWriter, read_tensor

if TYPE_CHECKING:
    from sealfn.he.serving import HeModels
    from sealfn.instance.sealed import SealedModels

log = logging.getLogger("sealfn.instance")
SEALED = "sealed"  # the one tensor a sealed request or reply travels as (uint8 bytes)


class InstanceLoop:
    """Serves frames from one socket until STOP or until the gateway goes away."""

    def __init__(
        self, sock: socket.socket, arena: Arena | None, host: ModelHost, slots: int, inline: int
    ) -> None:
        self._sock = sock
        self._arena = arena
        self._host = host
        self._sealed: SealedModels | None = None  # made on the first sealed model (enclave mode)
        self._he: HeModels | None = None  # made on the first HE (CKKS) network
        self._inline = inline
        self._send_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(slots) if slots > 1 else None
        self._buffer = bytearray()
        self._chunk = bytearray(1 << 20)
        self._chunk_view = memoryview(self._chunk)
        self._recv_ns = self._frame_ns = 0  # trace.ENABLED only

    def serve(self) -> None:
        self._send(Frame(Kind.HELLO, 0, {"pid": os.getpid()}))
        while (frame := self._receive()) is not None:
            self._frame_ns = trace.now() if trace.ENABLED else 0
            if frame.kind is Kind.STOP:
                break
            if frame.kind is Kind.RUN and self._pool is not None:
                self._pool.submit(self._handle, frame)
            else:
                self._handle(frame)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._sealed is not None:
            self._sealed.close()

    def _handle(self, frame: Frame) -> None:
        try:
            reply_kind, meta, payload = self._dispatch(frame)
        except SealfnError as exc:
            reply_kind, meta, payload = Kind.FAILURE, _failure(exc), b""
        except Exception as exc:  # never let one bad request take the instance down
            log.exception("unexpected error handling %s", frame.kind.name)
            reply_kind, meta, payload = Kind.FAILURE, _failure(exc), b""
        self._send(Frame(reply_kind, frame.request_id, meta, payload))

    def _dispatch(self, frame: Frame) -> tuple[Kind, dict[str, Any], bytes]:
        meta = frame.meta
        if frame.kind is Kind.RUN:
            return self._run(frame)
        if frame.kind is Kind.LOAD:
            return self._load(meta)
        if frame.kind is Kind.UNLOAD:
            if self._sealed is not None:
                self._sealed.unload(str(meta["model"]))
            if self._he is not None:
                self._he.unload(str(meta["model"]))
            self._host.unload(str(meta["model"]))
            return Kind.UNLOADED, {"model": meta["model"]}, b""
        raise ProtocolError(f"instance cannot handle frame kind {frame.kind.name}")

    def _load(self, meta: dict[str, Any]) -> tuple[Kind, dict[str, Any], bytes]:
        name, path = str(meta["model"]), Path(str(meta["path"]))
        self._host.fix_thread_pool(own=bool(meta.get("own_thread_pool")))
        before = _rss_mb()
        if meta.get("he"):
            return self._load_he(name, path, Path(str(meta["state_dir"])), before)
        if not meta.get("sealed"):
            model = self._host.load(name, path)
            growth = _rss_mb() - before
            return (
                Kind.LOADED,
                {"model": name, "load_s": model.load_s, "rss_growth_mb": growth},
                b"",
            )
        if self._sealed is None:
            from sealfn.instance.sealed import SealedModels  # plain instances skip its imports

            self._sealed = SealedModels(self._host)
        breakdown = self._sealed.load(
            name,
            meta.get("store") or path,
            str(meta["keyservice"]),
            str(meta.get("tee", "auto")),
            meta.get("platform_dir"),
        )
        return Kind.LOADED, {"model": name, "load_s": sum(breakdown.values()), **breakdown}, b""

    def _load_he(
        self, name: str, path: Path, state_dir: Path, before: float
    ) -> tuple[Kind, dict[str, Any], bytes]:
        if self._he is None:
            from sealfn.he.serving import HeModels  # TenSEAL only where an HE network is served

            self._he = HeModels()
        started = time.perf_counter()
        self._he.load(name, path, state_dir)
        meta = {"model": name, "load_s": time.perf_counter() - started}
        return Kind.LOADED, {**meta, "rss_growth_mb": _rss_mb() - before}, b""

    def _run(self, frame: Frame) -> tuple[Kind, dict[str, Any], bytes]:
        """One batch: read inputs (zero-copy) → run → write outputs to the slot's out region."""
        meta = frame.meta
        if self._sealed is not None and str(meta["model"]) in self._sealed:
            return self._run_sealed(frame, self._sealed)
        if self._he is not None and str(meta["model"]) in self._he:
            return self._run_sealed(frame, self._he)  # ciphertext in, ciphertext out: same path
        slot = int(meta["slot"])
        arena = self._arena
        view = arena.view if arena is not None else None
        if arena is not None:
            arena.mark_started(slot)
        started = time.perf_counter()
        requests = [
            {ref.name: read_tensor(ref, frame.payload, view) for ref in tensors_from_json(refs)}
            for refs in meta["requests"]
        ]
        ran = trace.now() if trace.ENABLED else 0
        results = self._host.run_batch(str(meta["model"]), requests)
        exec_s = time.perf_counter() - started
        writer = self._writer(slot)
        outputs = [
            tensors_to_json(tuple(writer.add(name, value) for name, value in result.items()))
            for result in results
        ]
        reply = {"outputs": outputs, "exec_s": exec_s}
        if trace.ENABLED:
            reply["stamps"] = self._stamps(ran)
        return Kind.RESULT, reply, writer.payload()

    def _stamps(self, ran: int) -> dict[str, int]:
        """Woken by the frame, frame decoded, inputs read, run done + outputs written (ns)."""
        return {
            "i_recv": self._recv_ns,
            "i_frame": self._frame_ns,
            "i_run": ran,
            "i_done": trace.now(),
        }

    def _run_sealed(
        self, frame: Frame, sealed: SealedModels | HeModels
    ) -> tuple[Kind, dict[str, Any], bytes]:
        """A batch of sealed (or HE) requests: opaque bytes in, opaque replies or refusals out."""
        meta = frame.meta
        arena = self._arena
        view = arena.view if arena is not None else None
        slot = int(meta["slot"])
        if arena is not None:
            arena.mark_started(slot)
        started = time.perf_counter()
        bodies = [
            read_tensor(ref, frame.payload, view).tobytes()
            for refs in meta["requests"]
            for ref in tensors_from_json(refs)
        ]
        answers = sealed.run(str(meta["model"]), bodies)
        exec_s = time.perf_counter() - started
        writer = self._writer(slot)
        outputs = [
            tensors_to_json(
                (writer.add(SEALED, np.frombuffer(a.sealed, np.uint8)),) if a.sealed else ()
            )
            for a in answers
        ]
        reply = {
            "outputs": outputs,
            "status": [a.status for a in answers],
            "message": [a.message for a in answers],
            "exec_s": exec_s,
        }
        return Kind.RESULT, reply, writer.payload()

    def _writer(self, slot: int) -> TensorWriter:
        arena = self._arena
        if arena is None:
            return TensorWriter(None, 0, self._inline)
        start = arena.layout.out_offset(slot)
        region = arena.view[start : start + arena.layout.slot_bytes]
        return TensorWriter(region, start, self._inline)

    def _send(self, frame: Frame) -> None:
        data = frame.to_bytes()
        with self._send_lock:
            self._sock.sendall(data)

    def _receive(self) -> Frame | None:
        buffer = self._buffer
        while True:
            if len(buffer) >= LENGTH.size:
                (size,) = LENGTH.unpack_from(buffer)
                end = LENGTH.size + size
                if len(buffer) >= end:
                    body = bytes(buffer[LENGTH.size : end])
                    del buffer[:end]
                    return Frame.from_bytes(body)
            # recv_into a reused buffer: recv(1 MiB) would allocate (and page-fault) 1 MiB a call
            received = self._sock.recv_into(self._chunk)
            if not received:
                return None  # the gateway closed its end: exit quietly
            if trace.ENABLED and not buffer:
                self._recv_ns = trace.now()  # woken by a frame's first bytes
            buffer += self._chunk_view[:received]


def _rss_mb() -> float:
    """This process's resident memory in MB (read from /proc: cheap, no psutil import)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _failure(exc: Exception) -> dict[str, Any]:
    kind = type(exc).__name__ if isinstance(exc, SealfnError) else "ModelError"
    message = exc.message if isinstance(exc, SealfnError) else f"instance error: {exc}"
    return {"error": kind, "message": message}
