"""The gateway's Channel over a real socket pair: reply matching, inbox, and failure on close."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from sealfn.errors import InstanceFailed, ProtocolError
from sealfn.ipc.channel import Channel
from sealfn.ipc.frames import LENGTH, MAX_FRAME, Frame, Kind

Peer = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _read_frame(reader: asyncio.StreamReader) -> Frame:
    (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
    return Frame.from_bytes(await reader.readexactly(size))


def _run(scenario: Callable[[Channel, Peer], Awaitable[None]]) -> None:
    """Connect a Channel to a stream 'instance' on a socket pair and run ``scenario``."""

    async def main() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = await Channel.connect(ours)
        peer = await asyncio.open_unix_connection(sock=theirs)
        try:
            async with asyncio.timeout(10):
                await scenario(channel, peer)
        finally:
            channel.close()
            peer[1].close()

    asyncio.run(main())


def test_replies_are_matched_by_request_id() -> None:
    async def scenario(channel: Channel, peer: Peer) -> None:
        reader, writer = peer
        first = asyncio.ensure_future(channel.request(Kind.RUN, {"n": 1}))
        second = asyncio.ensure_future(channel.request(Kind.RUN, {"n": 2}, b"xyz"))
        a, b = await _read_frame(reader), await _read_frame(reader)
        assert (a.meta, b.meta, bytes(b.payload)) == ({"n": 1}, {"n": 2}, b"xyz")
        for frame in (b, a):  # answered out of order
            writer.write(Frame(Kind.RESULT, frame.request_id, {"echo": frame.meta["n"]}).to_bytes())
        assert (await first).meta == {"echo": 1}
        assert (await second).meta == {"echo": 2}

    _run(scenario)


def test_unsolicited_frames_go_to_the_inbox() -> None:
    async def scenario(channel: Channel, peer: Peer) -> None:
        peer[1].write(Frame(Kind.HELLO, 0, {"pid": 123}).to_bytes())
        hello = await channel.inbox.get()
        assert (hello.kind, hello.meta) == (Kind.HELLO, {"pid": 123})

    _run(scenario)


def test_a_frame_split_into_tiny_writes_is_reassembled() -> None:
    async def scenario(channel: Channel, peer: Peer) -> None:
        wire = Frame(Kind.RESULT, 0, {"k": "v" * 1000}, bytes(5000)).to_bytes()
        for i in range(0, len(wire), 7):
            peer[1].write(wire[i : i + 7])
            await peer[1].drain()
        frame = await channel.inbox.get()
        assert frame.meta == {"k": "v" * 1000}
        assert len(frame.payload) == 5000

    _run(scenario)


def test_peer_closing_fails_waiters_and_later_requests() -> None:
    async def scenario(channel: Channel, peer: Peer) -> None:
        pending = asyncio.ensure_future(channel.request(Kind.RUN, {}))
        await _read_frame(peer[0])
        peer[1].close()  # the instance died
        with pytest.raises(InstanceFailed):
            await pending
        await channel.closed
        with pytest.raises(InstanceFailed):
            await channel.request(Kind.RUN, {})
        channel.send(Kind.STOP, {})  # no-op on a closed channel, no error

    _run(scenario)


def test_oversized_frame_fails_the_channel() -> None:
    async def scenario(channel: Channel, peer: Peer) -> None:
        pending = asyncio.ensure_future(channel.request(Kind.RUN, {}))
        await _read_frame(peer[0])
        peer[1].write(LENGTH.pack(MAX_FRAME + 1))
        with pytest.raises(ProtocolError, match="refused"):
            await pending
        await channel.closed

    _run(scenario)


def test_submit_sends_at_once_and_a_cancelled_reply_is_dropped() -> None:
    async def scenario(channel: Channel, peer: Peer) -> None:
        reader, writer = peer
        forgotten = channel.submit(Kind.RUN, {"n": 1})  # written before this coroutine yields
        kept = channel.submit(Kind.RUN, {"n": 2})
        first, second = await _read_frame(reader), await _read_frame(reader)
        forgotten.cancel()  # its caller gave up (a deadline, say)
        for frame in (first, second):
            writer.write(Frame(Kind.RESULT, frame.request_id, {"echo": frame.meta["n"]}).to_bytes())
        assert (await kept).meta == {"echo": 2}
        assert channel.inbox.empty()  # the late reply is not taken for an unsolicited frame

    _run(scenario)
