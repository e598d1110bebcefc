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


def test_send_request_calls_back_in_the_step_that_reads_the_reply() -> None:
    async def scenario(channel: Channel, peer: Peer) -> None:
        reader, writer = peer
        got: list[Frame | Exception] = []
        delivered = asyncio.Event()

        def on_reply(outcome: Frame | Exception) -> None:
            got.append(outcome)
            delivered.set()

        channel.send_request(Kind.RUN, {"n": 7}, b"", on_reply)
        frame = await _read_frame(reader)
        writer.write(Frame(Kind.RESULT, frame.request_id, {"echo": 7}).to_bytes())
        await delivered.wait()
        assert len(got) == 1 and isinstance(got[0], Frame) and got[0].meta == {"echo": 7}

    _run(scenario)


def test_a_failing_connection_is_closed_before_its_waiters_hear_of_it() -> None:
    """A waiter told that its instance died must not be able to pick the same channel again."""

    async def scenario(channel: Channel, peer: Peer) -> None:
        seen: list[tuple[type[Exception] | None, bool]] = []
        told = asyncio.Event()

        def on_reply(outcome: Frame | Exception) -> None:
            error = type(outcome) if isinstance(outcome, Exception) else None
            seen.append((error, channel.closed.done()))
            told.set()

        channel.send_request(Kind.RUN, {}, b"", on_reply)
        await _read_frame(peer[0])
        peer[1].close()
        await told.wait()
        assert seen == [(InstanceFailed, True)]

    _run(scenario)


def test_a_waiter_that_raises_does_not_take_the_channel_down() -> None:
    async def scenario(channel: Channel, peer: Peer) -> None:
        reader, writer = peer

        def broken(outcome: Frame | Exception) -> None:
            raise RuntimeError("a bug in the waiter")

        channel.send_request(Kind.RUN, {}, b"", broken)
        frame = await _read_frame(reader)
        writer.write(Frame(Kind.RESULT, frame.request_id, {}).to_bytes())
        after = asyncio.ensure_future(channel.request(Kind.RUN, {"n": 2}))
        second = await _read_frame(reader)
        writer.write(Frame(Kind.RESULT, second.request_id, {"echo": 2}).to_bytes())
        assert (await after).meta == {"echo": 2}
        assert not channel.closed.done()

    _run(scenario)
