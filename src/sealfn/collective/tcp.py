"""Direct TCP between ranks: a full mesh of connections set up through the rendezvous server.

Rank ``i`` connects to every lower rank and accepts every higher one; each connection opens with
a hello naming the group (a hash of its id) and the rank. A reader thread per peer drains its
socket into a queue, so ``send`` never waits for the peer to call ``recv`` (a ring step sends and
receives megabytes in both directions at once). A message on the wire: ``u64 length | bytes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import socket
import struct
import threading

from sealfn.collective.channel import DEFAULT_TIMEOUT_S, Buffer, check_peer
from sealfn.collective.rendezvous import Address, Register, rendezvous
from sealfn.errors import PeerLost, ProtocolError

_LENGTH = struct.Struct("<Q")
_HELLO = struct.Struct("<8sI")  # group hash, rank
_SMALL = 64 << 10  # bytes: below this, header and body go out in one write
_LOST = object()  # queued when a peer's connection ends


class TcpChannel:
    name = "tcp"

    def __init__(self, rank: int, size: int, sockets: dict[int, socket.socket], timeout: float):
        self.rank = rank
        self.size = size
        self._sockets = sockets
        self._timeout = timeout
        self._locks = {peer: threading.Lock() for peer in sockets}
        self._inbox: dict[int, queue.SimpleQueue[object]] = {
            p: queue.SimpleQueue() for p in sockets
        }
        for peer, sock in sockets.items():
            reader = threading.Thread(
                target=self._read, args=(peer, sock), name=f"tcp-{rank}<-{peer}", daemon=True
            )
            reader.start()

    @classmethod
    def join(
        cls,
        server: Address,
        group: str,
        rank: int,
        size: int,
        *,
        host: str = "127.0.0.1",
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> TcpChannel:
        """Register with the rendezvous at ``server`` and connect to every other rank."""
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is outside a group of {size}")
        tag = hashlib.sha256(group.encode()).digest()[:8]
        with socket.create_server((host, 0), backlog=max(1, size)) as listener:
            listener.settimeout(timeout)
            address = listener.getsockname()[:2]
            table = rendezvous(server, Register(group, rank, size, (host, address[1])), timeout)
            sockets = {
                peer: _dial(table.addresses[peer], tag, rank, timeout) for peer in range(rank)
            }
            for _ in range(size - 1 - rank):
                peer, sock = _accept(listener, tag, size)
                sockets[peer] = sock
        return cls(rank, size, sockets, timeout)

    def send(self, dst: int, data: Buffer) -> None:
        check_peer(self, dst)
        data = memoryview(data).cast("B")  # lengths in bytes, whatever the item size
        header = _LENGTH.pack(data.nbytes)
        try:
            with self._locks[dst]:
                sock = self._sockets[dst]
                if data.nbytes < _SMALL:
                    sock.sendall(header + bytes(data))
                else:
                    sock.sendall(header)
                    sock.sendall(data)
        except OSError as exc:
            raise PeerLost(f"rank {dst} is gone ({exc.strerror or exc})") from exc

    def recv(self, src: int) -> Buffer:
        check_peer(self, src)
        inbox = self._inbox[src]
        try:
            item = inbox.get(timeout=self._timeout)
        except queue.Empty:
            raise PeerLost(f"rank {src} sent nothing for {self._timeout:g} s") from None
        if item is _LOST:
            inbox.put(_LOST)  # every later recv fails the same way
            raise PeerLost(f"rank {src} closed its connection")
        if not isinstance(item, bytearray):
            raise ProtocolError(f"unexpected item in rank {src}'s inbox")
        return item

    def close(self) -> None:
        for sock in self._sockets.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _read(self, peer: int, sock: socket.socket) -> None:
        inbox = self._inbox[peer]
        try:
            while (header := _read_exact(sock, _LENGTH.size)) is not None:
                (length,) = _LENGTH.unpack(header)
                body = _read_exact(sock, length)
                if body is None:
                    break
                inbox.put(body)
        except OSError:
            pass
        inbox.put(_LOST)


def _dial(address: Address, tag: bytes, rank: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise PeerLost(f"cannot reach {address[0]}:{address[1]}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_HELLO.pack(tag, rank))
    sock.settimeout(None)
    return sock


def _accept(listener: socket.socket, tag: bytes, size: int) -> tuple[int, socket.socket]:
    try:
        sock, _ = listener.accept()
    except OSError as exc:
        raise PeerLost(f"a peer did not connect: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hello = _read_exact(sock, _HELLO.size)
    if hello is None:
        raise PeerLost("a peer hung up during the hello")
    their_tag, peer = _HELLO.unpack(hello)
    if their_tag != tag or not 0 <= peer < size:
        sock.close()
        raise ProtocolError("a connection from another group (or a stranger) was refused")
    sock.settimeout(None)
    return peer, sock


def _read_exact(sock: socket.socket, length: int) -> bytearray | None:
    """Exactly ``length`` bytes, or None if the connection ended first."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    while got < length:
        n = sock.recv_into(view[got:], min(length - got, 1 << 22))
        if n == 0:
            return None
        got += n
    return buffer
