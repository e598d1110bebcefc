"""The channel seam: ordered point-to-point messages between the ranks of one group.

Every channel (direct TCP, mediated through a shared directory, Ray's object store) keeps
messages from one rank to another in order, and ``send`` never waits for the receiver to call
``recv``: a ring step sends and then receives, and must not deadlock when both sides are large.
"""

from __future__ import annotations

from typing import Protocol

Buffer = bytes | bytearray | memoryview


def nbytes(parts: tuple[Buffer, ...]) -> int:
    """Bytes in a message made of ``parts``."""
    return sum(memoryview(part).nbytes for part in parts)


DEFAULT_TIMEOUT_S = 60.0  # seconds a recv waits before the peer counts as lost


class Channel(Protocol):
    """Ordered, reliable point-to-point messages among ``size`` ranks."""

    rank: int
    size: int
    name: str  # "tcp", "directory", "ray": what the cost model calls it

    def send(self, dst: int, *parts: Buffer) -> None:
        """Queue one message, the concatenation of ``parts``, for rank ``dst`` (never waits for
        ``dst`` to receive). Parts let a header and a large array go out without a copy."""
        ...

    def recv(self, src: int) -> Buffer:
        """The next message from rank ``src``; raises ``PeerLost`` if it left or timed out."""
        ...

    def close(self) -> None:
        """Leave the group; peers blocked on this rank see ``PeerLost``."""
        ...


def check_peer(channel: Channel, peer: int) -> None:
    """Reject a rank outside the group (or the caller itself) early, with a clear message."""
    if not 0 <= peer < channel.size or peer == channel.rank:
        raise ValueError(
            f"rank {channel.rank} cannot talk to rank {peer} in a group of {channel.size}"
        )
