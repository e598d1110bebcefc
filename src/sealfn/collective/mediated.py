"""A mediated channel: messages staged as files in a shared directory, polled with back-off.

This is FMI's storage-mediated channel with a directory standing in for object storage (a
network file system, or a bucket mounted through fsspec, has the same shape): a sender writes
``{src}-{dst}/{seq}`` atomically (write, then rename), the receiver polls for its next sequence
number, reads and deletes it. Slow per message (a poll interval), but needs no connectivity
between ranks, only to the stage.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sealfn.collective.channel import DEFAULT_TIMEOUT_S, Buffer, check_peer
from sealfn.errors import PeerLost

FIRST_POLL_S = 50e-6  # seconds; doubles per empty poll up to MAX_POLL_S
MAX_POLL_S = 5e-3


class DirectoryChannel:
    name = "directory"

    def __init__(
        self, stage: Path, group: str, rank: int, size: int, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is outside a group of {size}")
        self.rank = rank
        self.size = size
        self._root = Path(stage) / group
        self._timeout = timeout
        self._sent = [0] * size  # next sequence number per destination
        self._received = [0] * size  # next sequence number per source
        for peer in range(size):
            if peer != rank:
                self._box(peer, rank).mkdir(parents=True, exist_ok=True)
                self._box(rank, peer).mkdir(parents=True, exist_ok=True)

    def send(self, dst: int, *parts: Buffer) -> None:
        check_peer(self, dst)
        seq = self._sent[dst]
        self._sent[dst] += 1
        final = self._box(self.rank, dst) / f"{seq:012d}"
        partial = final.with_suffix(".part")
        with open(partial, "wb") as out:
            for part in parts:
                out.write(part)
        os.replace(partial, final)  # the receiver never sees half a message

    def recv(self, src: int) -> Buffer:
        check_peer(self, src)
        path = self._box(src, self.rank) / f"{self._received[src]:012d}"
        deadline = time.monotonic() + self._timeout
        pause = FIRST_POLL_S
        while not path.exists():
            if time.monotonic() > deadline:
                raise PeerLost(f"rank {src} staged nothing for {self._timeout:g} s")
            time.sleep(pause)
            pause = min(pause * 2, MAX_POLL_S)
        data = path.read_bytes()
        path.unlink()
        self._received[src] += 1
        return data

    def close(self) -> None:
        """Nothing to release: staged files a peer never read stay for it (or the job's cleanup)."""

    def _box(self, src: int, dst: int) -> Path:
        return self._root / f"{src}-{dst}"
