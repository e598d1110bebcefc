"""A rendezvous server: ranks register their listening address and get everyone's back.

The runtime (or the batch job's root) starts one on loopback for a group; each rank connects,
sends a ``Register`` line and blocks until all ``size`` ranks of its group have registered, then
reads the ``PeerTable``. It carries addresses only, never data.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from dataclasses import dataclass
from typing import Any

from sealfn.errors import PeerLost, ProtocolError
from sealfn.ipc import jsonline

VERSION = 1
Address = tuple[str, int]


@dataclass(frozen=True)
class Endpoint:
    """Where a rank listens: TCP, and a unix socket that peers on the same host may use."""

    address: Address
    host_id: str = ""  # same value = same host and network namespace
    unix: str = ""  # abstract unix socket name; "" = none

    def to_json(self) -> list[Any]:
        return [list(self.address), self.host_id, self.unix]

    @classmethod
    def from_json(cls, raw: Any) -> Endpoint:
        (host, port), host_id, unix = raw
        return cls((str(host), int(port)), str(host_id), str(unix))


@dataclass(frozen=True)
class Register:
    group: str
    rank: int
    size: int
    endpoint: Endpoint

    def to_bytes(self) -> bytes:
        body = {"v": VERSION, "group": self.group, "rank": self.rank, "size": self.size}
        return json.dumps({**body, "endpoint": self.endpoint.to_json()}).encode() + b"\n"

    @classmethod
    def from_bytes(cls, line: bytes) -> Register:
        raw = jsonline.load(line, VERSION, "rendezvous message")
        try:
            endpoint = Endpoint.from_json(raw["endpoint"])
            return cls(str(raw["group"]), int(raw["rank"]), int(raw["size"]), endpoint)
        # a registration from any local process; OverflowError: int(1e999)
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            raise ProtocolError("malformed rendezvous registration") from exc


@dataclass(frozen=True)
class PeerTable:
    endpoints: tuple[Endpoint, ...]  # by rank

    def to_bytes(self) -> bytes:
        body = {"v": VERSION, "endpoints": [e.to_json() for e in self.endpoints]}
        return json.dumps(body).encode() + b"\n"

    @classmethod
    def from_bytes(cls, line: bytes) -> PeerTable:
        raw = jsonline.load(line, VERSION, "rendezvous message")
        try:
            return cls(tuple(Endpoint.from_json(e) for e in raw["endpoints"]))
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            raise ProtocolError("malformed rendezvous peer table") from exc


class _Groups:
    """The registrations seen so far, per group; a group completes once all ranks are in."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._members: dict[str, dict[int, Endpoint]] = {}
        self._aborted: set[str] = set()

    def join(self, entry: Register, timeout: float) -> PeerTable:
        with self._lock:
            members = self._members.setdefault(entry.group, {})
            members[entry.rank] = entry.endpoint
            self._lock.notify_all()
            self._lock.wait_for(
                lambda: len(members) >= entry.size or entry.group in self._aborted, timeout
            )
            if len(members) < entry.size or entry.group in self._aborted:
                raise PeerLost(f"group {entry.group!r}: {len(members)}/{entry.size} ranks came")
            return PeerTable(tuple(members[r] for r in range(entry.size)))

    def abort(self, group: str) -> None:
        with self._lock:
            self._aborted.add(group)
            self._lock.notify_all()


class RendezvousServer:
    """Serves rendezvous on ``host`` (loopback by default) from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0) -> None:
        groups = self._groups = _Groups()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    entry = Register.from_bytes(self.rfile.readline())
                    self.wfile.write(groups.join(entry, timeout).to_bytes())
                except (ProtocolError, PeerLost, OSError):
                    return  # the rank sees its connection close and reports PeerLost

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> Address:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def abort(self, group: str) -> None:
        """Fail every rank still waiting for ``group`` (one of its members died) and later ones."""
        self._groups.abort(group)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RendezvousServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rendezvous(server: Address, entry: Register, timeout: float = 60.0) -> PeerTable:
    """Register with the server and wait for the group's table."""
    try:
        with socket.create_connection(server, timeout=timeout) as sock:
            sock.sendall(entry.to_bytes())
            line = sock.makefile("rb").readline()
    except OSError as exc:
        raise PeerLost(f"rendezvous at {server[0]}:{server[1]} failed: {exc}") from exc
    if not line:
        raise PeerLost(f"group {entry.group!r} did not assemble at the rendezvous")
    return PeerTable.from_bytes(line)
