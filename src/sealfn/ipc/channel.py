"""The gateway's end of an instance's socket: asyncio, frames matched to replies by request id."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import Callable
from typing import Any

from sealfn.errors import InstanceFailed, ProtocolError
from sealfn.ipc import trace
from sealfn.ipc.frames import LENGTH, MAX_FRAME, Frame, Kind

log = logging.getLogger("sealfn.ipc")
# Called with a request's reply frame, or with the error that lost it, in the event-loop step
# that read the frame (or saw the connection fail): no task wakes in between.
OnReply = Callable[[Frame | Exception], None]


class _Protocol(asyncio.Protocol):
    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._channel._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if trace.ENABLED and not self._buffer:
            self._channel.arrived_ns = trace.now()
        buffer = self._buffer
        buffer += data
        while len(buffer) >= LENGTH.size:
            (size,) = LENGTH.unpack_from(buffer)
            if size > MAX_FRAME:
                self._channel._fail(ProtocolError(f"frame of {size} bytes refused"))
                return
            end = LENGTH.size + size
            if len(buffer) < end:
                return
            body = bytes(buffer[LENGTH.size : end])
            del buffer[:end]
            self._channel._deliver(Frame.from_bytes(body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._channel._fail(InstanceFailed("instance connection closed"))


class Channel:
    """Request/reply over one socket; unsolicited frames (HELLO) go to ``inbox``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._waiting: dict[int, OnReply] = {}
        self._ids = itertools.count(1)
        self.inbox: asyncio.Queue[Frame] = asyncio.Queue()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # when the last request's write began and its reply's first bytes came (trace.ENABLED)
        self.sent_ns = self.arrived_ns = 0

    @classmethod
    async def connect(cls, sock: socket.socket) -> Channel:
        channel = cls()
        loop = asyncio.get_running_loop()
        await loop.create_unix_connection(lambda: _Protocol(channel), sock=sock)
        return channel

    async def request(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> Frame:
        """Send one frame and wait for the reply with the same request id."""
        return await self.submit(kind, meta, payload)

    def submit(
        self, kind: Kind, meta: dict[str, Any], payload: bytes = b""
    ) -> asyncio.Future[Frame]:
        """Send one frame now (InstanceFailed if the connection is closed); the future of the
        reply with the same request id. Cancelling the future forgets the reply when it comes."""
        reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.send_request(kind, meta, payload, lambda outcome: _settle(reply, outcome))
        return reply

    def send_request(
        self, kind: Kind, meta: dict[str, Any], payload: bytes, on_reply: OnReply
    ) -> None:
        """Send one frame now (InstanceFailed if the connection is closed); ``on_reply`` gets
        the reply with the same request id, or the error that lost it, as soon as it is read."""
        if self._transport is None or self.closed.done():
            raise InstanceFailed("instance connection closed")
        request_id = next(self._ids)
        self._waiting[request_id] = on_reply
        frame = Frame(kind, request_id, meta, payload).to_bytes()
        if trace.ENABLED:
            self.sent_ns = trace.now()  # before the write: the reader may wake before it returns
        self._transport.write(frame)

    async def unsolicited(self) -> Frame:
        """The next unsolicited frame (HELLO); InstanceFailed if the connection closes first
        (an instance killed while it boots must not leave its caller waiting)."""
        if not self.inbox.empty():
            return self.inbox.get_nowait()
        getter = asyncio.ensure_future(self.inbox.get())
        either: set[asyncio.Future[Any]] = {getter, self.closed}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        raise InstanceFailed("instance connection closed before it said hello")

    def send(self, kind: Kind, meta: dict[str, Any]) -> None:
        """Send one frame that expects no reply (STOP)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(Frame(kind, 0, meta).to_bytes())

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _deliver(self, frame: Frame) -> None:
        on_reply = self._waiting.pop(frame.request_id, None)
        if on_reply is None:
            self.inbox.put_nowait(frame)
        else:
            _call(on_reply, frame)

    def _fail(self, error: Exception) -> None:
        # closed first: a waiter told of the failure must not pick this channel again
        if not self.closed.done():
            self.closed.set_result(None)
        if self._transport is not None:
            self._transport.close()
        waiting, self._waiting = self._waiting, {}
        for on_reply in waiting.values():
            _call(on_reply, error)


def _call(on_reply: OnReply, outcome: Frame | Exception) -> None:
    """A waiter's bug must not take the connection down with it (it runs inside the reader)."""
    try:
        on_reply(outcome)
    except Exception:
        log.exception("a reply's waiter failed")


def _settle(reply: asyncio.Future[Frame], outcome: Frame | Exception) -> None:
    if reply.done():  # cancelled: its caller gave up, the reply is dropped
        return
    if isinstance(outcome, Exception):
        reply.set_exception(outcome)
    else:
        reply.set_result(outcome)
