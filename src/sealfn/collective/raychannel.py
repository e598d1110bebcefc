"""A Ray-backed channel: data through Ray's object store, matched up by a mailbox actor.

The sender puts the bytes into the object store and hands the reference (wrapped in a list, so
Ray passes it on unresolved) to the group's mailbox actor under ``(src, dst, seq)``; the receiver
asks the mailbox for that key and fetches the object. Ray is an optional extra: this module
imports it only when a channel or mailbox is made.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sealfn.collective.channel import DEFAULT_TIMEOUT_S, Buffer, check_peer
from sealfn.errors import ConfigError, PeerLost

MAILBOX_CPUS = 0  # the mailbox only forwards references; it must not hold a core


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the ray channel needs Ray: pip install 'sealfn[ray]'") from exc
    return ray


class _Mailbox:
    """Holds object references until their receiver takes them (an async Ray actor)."""

    def __init__(self) -> None:
        self._slots: dict[tuple[int, int, int], asyncio.Future[list[Any]]] = {}

    def _slot(self, key: tuple[int, int, int]) -> asyncio.Future[list[Any]]:
        if key not in self._slots:
            self._slots[key] = asyncio.get_running_loop().create_future()
        return self._slots[key]

    async def put(self, src: int, dst: int, seq: int, refs: list[Any]) -> None:
        self._slot((src, dst, seq)).set_result(refs)

    async def take(self, src: int, dst: int, seq: int) -> list[Any]:
        refs = await self._slot((src, dst, seq))
        del self._slots[(src, dst, seq)]
        return refs


def create_mailbox() -> Any:
    """A mailbox actor for one group (Ray must be initialised)."""
    ray = _ray()
    return ray.remote(num_cpus=MAILBOX_CPUS)(_Mailbox).remote()


class RayChannel:
    name = "ray"

    def __init__(
        self, mailbox: Any, rank: int, size: int, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is outside a group of {size}")
        self._ray = _ray()
        self._mailbox = mailbox
        self.rank = rank
        self.size = size
        self._timeout = timeout
        self._sent = [0] * size
        self._received = [0] * size

    def send(self, dst: int, *parts: Buffer) -> None:
        check_peer(self, dst)
        ref = self._ray.put(b"".join(parts))
        self._mailbox.put.remote(self.rank, dst, self._sent[dst], [ref])
        self._sent[dst] += 1

    def recv(self, src: int) -> Buffer:
        check_peer(self, src)
        ray = self._ray
        try:
            refs = ray.get(
                self._mailbox.take.remote(src, self.rank, self._received[src]),
                timeout=self._timeout,
            )
            data = ray.get(refs[0], timeout=self._timeout)
        except ray.exceptions.GetTimeoutError:
            raise PeerLost(f"rank {src} sent nothing for {self._timeout:g} s") from None
        except ray.exceptions.RayError as exc:
            raise PeerLost(f"the message from rank {src} was lost: {type(exc).__name__}") from exc
        self._received[src] += 1
        if not isinstance(data, bytes):
            raise PeerLost(f"rank {src} sent something other than bytes")
        return data

    def close(self) -> None:
        """Nothing to release here; the group's owner kills the mailbox actor."""
