"""Closed-loop load generator shared by every arm: N clients, each with its own connection.

Each client is a thread that sends a request, waits for the reply, and sends the next one (no
think time). HTTP goes over a raw keep-alive socket with the request bytes built once, so the
client spends as little CPU as possible: on a 2-core machine it shares the cores with the server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Call = Callable[[], Any]  # one request; returns the reply (kept for verification), raises on error
CallFactory = Callable[[int], Call]  # client index -> that client's own call (its own connection)

_HEAD_END = b"\r\n\r\n"
_RECV_BYTES = 1 << 16


class Window(Protocol):
    """Something measured over the measurement window (server CPU, say); called from one thread."""

    def start(self) -> None: ...

    def stop(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Load:
    clients: int
    warmup_s: float  # seconds of load before the window opens (connections, caches, autoscaling)
    duration_s: float  # seconds of the measurement window


@dataclass(frozen=True)
class Measurement:
    """What one closed-loop run saw inside its window."""

    clients: int
    window_s: float
    completed: int  # replies that arrived inside the window
    errors: int
    first_error: str | None
    latencies_s: npt.NDArray[np.float64]  # requests both sent and answered inside the window
    client_cpu_s: float  # CPU of this (load generator) process over the window, all threads
    window: dict[str, Any]  # what the Window probe reported
    last_replies: list[Any] = field(repr=False)  # per client, the last reply it got

    @property
    def throughput_rps(self) -> float:
        return self.completed / self.window_s

    def summary(self) -> dict[str, Any]:
        lat_ms = self.latencies_s * 1000.0
        p50, p90, p99 = np.percentile(lat_ms, [50, 90, 99]) if lat_ms.size else (np.nan,) * 3
        per_req = 1000.0 / self.completed if self.completed else float("nan")
        return {
            "clients": self.clients,
            "window_s": round(self.window_s, 3),
            "requests": self.completed,
            "errors": self.errors,
            "first_error": self.first_error,
            "throughput_rps": self.throughput_rps,
            "p50_ms": float(p50),
            "p90_ms": float(p90),
            "p99_ms": float(p99),
            "mean_ms": float(lat_ms.mean()) if lat_ms.size else float("nan"),
            "max_ms": float(lat_ms.max()) if lat_ms.size else float("nan"),
            "client_cpu_ms_per_req": self.client_cpu_s * per_req,
            **self.window,
        }


def run(factory: CallFactory, load: Load, window: Window | None = None) -> Measurement:
    """Drive ``load.clients`` closed-loop clients; measure over ``[warmup, warmup + duration]``."""
    calls = [factory(i) for i in range(load.clients)]  # connect before the clock starts
    start = time.perf_counter() + 0.05
    opens, closes = start + load.warmup_s, start + load.warmup_s + load.duration_s
    workers = [_Client(call, opens, closes) for call in calls]
    threads = [threading.Thread(target=w.loop, args=(start,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    _sleep_until(opens)
    cpu0 = time.process_time()
    if window is not None:
        window.start()
    _sleep_until(closes)
    cpu1 = time.process_time()
    probe = window.stop() if window is not None else {}
    for thread in threads:
        thread.join()
    for call in calls:
        _close(call)
    errors = [w for w in workers if w.errors]
    return Measurement(
        clients=load.clients,
        window_s=closes - opens,
        completed=sum(w.completed for w in workers),
        errors=sum(w.errors for w in workers),
        first_error=errors[0].first_error if errors else None,
        latencies_s=np.concatenate([np.asarray(w.latencies, dtype=np.float64) for w in workers]),
        client_cpu_s=cpu1 - cpu0,
        window=probe,
        last_replies=[w.last_reply for w in workers],
    )


class _Client:
    """One closed-loop client; only the thread that runs ``loop`` touches its fields."""

    def __init__(self, call: Call, opens: float, closes: float) -> None:
        self.call = call
        self.opens, self.closes = opens, closes
        self.latencies: list[float] = []  # seconds
        self.completed = 0
        self.errors = 0
        self.first_error: str | None = None
        self.last_reply: Any = None

    def loop(self, start: float) -> None:
        _sleep_until(start)
        clock, call, opens, closes = time.perf_counter, self.call, self.opens, self.closes
        record = self.latencies.append
        sent = clock()
        while sent < closes:
            try:
                reply = call()
            except Exception as exc:  # count and go on: an error is a result, not a crash
                self._failed(exc)
                reply = None
            done = clock()
            if opens <= done <= closes:
                self.completed += 1
                if sent >= opens:
                    record(done - sent)
            if reply is not None:
                self.last_reply = reply
            sent = done

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.01)  # do not spin on a dead server


def _sleep_until(deadline: float) -> None:
    left = deadline - time.perf_counter()
    if left > 0:
        time.sleep(left)


def _close(call: Call) -> None:
    closer = getattr(call, "close", None)
    if callable(closer):
        closer()


# --- HTTP/1.1 over a raw socket ---------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def http_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str], *, method: str = "POST"
) -> bytes:
    """The full request bytes (head and body), built once and resent as they are."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpConnection:
    """A keep-alive HTTP/1.1 connection that sends prebuilt requests; reconnects when closed."""

    def __init__(self, host: str, port: int, timeout_s: float = 120.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._buffer = bytearray()
        self._sock = self._connect()

    def exchange(self, request: bytes) -> Reply:
        try:
            self._sock.sendall(request)
            reply = self._read_reply()
        except (ConnectionError, TimeoutError, OSError):
            self.reconnect()
            raise
        if reply.headers.get("connection", "").lower() == "close":
            self.reconnect()
        return reply

    def reconnect(self) -> None:
        self.close()
        self._buffer.clear()
        self._sock = self._connect()

    def close(self) -> None:
        self._sock.close()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _read_reply(self) -> Reply:
        head = self._read_until(_HEAD_END)
        status_line, *fields = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in fields:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            raise ConnectionError("reply has neither Content-Length nor chunked encoding")
        return Reply(status, headers, body)

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self._read_until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                self._read_until(b"\r\n")  # no trailers expected: the empty line ends the body
                return b"".join(parts)
            parts.append(self._read_exact(size))
            self._read_exact(2)

    def _read_until(self, marker: bytes) -> bytes:
        buffer = self._buffer
        while (end := buffer.find(marker)) < 0:
            self._fill()
        data = bytes(buffer[:end])
        del buffer[: end + len(marker)]
        return data

    def _read_exact(self, size: int) -> bytes:
        buffer = self._buffer
        while len(buffer) < size:
            self._fill()
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def _fill(self) -> None:
        chunk = self._sock.recv(_RECV_BYTES)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self._buffer += chunk


class HttpCall:
    """One client's call: send its request on its own connection, return the reply (2xx only)."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self._conn = HttpConnection(host, port)
        self._request = request

    def __call__(self) -> Reply:
        reply = self._conn.exchange(self._request)
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}: {reply.body[:200]!r}")
        return reply

    def close(self) -> None:
        self._conn.close()
