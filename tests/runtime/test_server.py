"""`sealfn serve`'s read-ahead: uvicorn buffers a large body without pausing, pinned to uvicorn."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from sealfn.runtime.server import read_ahead

BODY = 600_000  # about a ResNet-18 request: 1x3x224x224 float32


class Transport(asyncio.Transport):
    """What uvicorn's protocol needs of a socket transport; counts read pauses."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses = 0
        self.written = bytearray()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(3600)  # never reads: the body stays in uvicorn's buffer


def _pauses_for_body() -> int:
    """Feed a request with a BODY-byte body in one chunk; how often the protocol paused."""

    async def main() -> int:
        config = uvicorn.Config(_app, http="httptools", lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        protocol = HttpToolsProtocol(config, state, {}, asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)
        head = f"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: {BODY}\r\n\r\n".encode()
        protocol.data_received(head + bytes(BODY))
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        return transport.pauses

    return asyncio.run(main())


def test_uvicorn_still_reads_its_high_water_limit_per_body_chunk() -> None:
    """If this fails, uvicorn changed what read_ahead relies on: find the new knob."""
    assert isinstance(httptools_impl.HIGH_WATER_LIMIT, int)
    assert "HIGH_WATER_LIMIT" in HttpToolsProtocol.on_body.__code__.co_names
    assert _pauses_for_body() == 1  # uvicorn's own limit (64 KiB) pauses a 600 KB body


def test_read_ahead_lets_a_large_body_in_without_pausing_and_restores_the_limit() -> None:
    default = httptools_impl.HIGH_WATER_LIMIT
    with read_ahead(8 << 20):
        assert _pauses_for_body() == 0
    assert default == httptools_impl.HIGH_WATER_LIMIT
    with read_ahead(1024):  # never below uvicorn's own limit
        assert default == httptools_impl.HIGH_WATER_LIMIT
