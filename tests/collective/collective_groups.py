"""Run one function on every rank of a group, each rank a thread with its own channel."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sealfn.collective import Communicator, DirectoryChannel, SealedChannel, TcpChannel
from sealfn.collective.channel import Channel
from sealfn.collective.rendezvous import RendezvousServer

T = TypeVar("T")
ChannelFactory = Callable[[str, int, int], Channel]  # (group, rank, size) -> channel
TIMEOUT_S = 20.0


def tcp_factory(server: RendezvousServer) -> ChannelFactory:
    def make(group: str, rank: int, size: int) -> Channel:
        return TcpChannel.join(server.address, group, rank, size, timeout=TIMEOUT_S)

    return make


def directory_factory(stage: Path) -> ChannelFactory:
    def make(group: str, rank: int, size: int) -> Channel:
        return DirectoryChannel(stage, group, rank, size, timeout=TIMEOUT_S)

    return make


def sealed_factory(inner: ChannelFactory, key: bytes) -> ChannelFactory:
    def make(group: str, rank: int, size: int) -> Channel:
        return SealedChannel(inner(group, rank, size), key, group)

    return make


def run_group(make: ChannelFactory, size: int, body: Callable[[Communicator], T]) -> list[T]:
    """``body(comm)`` on every rank at once; the results by rank (the first error re-raised)."""
    group = uuid.uuid4().hex

    def rank_main(rank: int) -> T:
        comm = Communicator(make(group, rank, size))
        try:
            return body(comm)
        finally:
            comm.close()

    with ThreadPoolExecutor(size) as pool:
        futures = [pool.submit(rank_main, rank) for rank in range(size)]
        return [f.result(timeout=60) for f in futures]


def any_result(results: list[Any]) -> Any:
    return results[0]
