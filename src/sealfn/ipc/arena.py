"""Shared-memory arena: an anonymous memfd mapped by the gateway and one instance.

The arena is split into ``slots`` pairs of (in, out) regions; a batch running in slot ``i`` reads
its large inputs from ``in[i]`` and writes its large outputs to ``out[i]``. The gateway hands a slot
to one batch at a time, so the two processes never write the same bytes concurrently. The first
bytes of the arena are a per-slot "started" flag the instance sets when it begins running a batch:
after a crash the gateway reads it to tell a request that never started (safe to retry) from one
that did.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

FLAGS_BYTES = 4096  # one page of per-slot flags


@dataclass(frozen=True)
class ArenaLayout:
    slots: int
    slot_bytes: int  # per direction

    @property
    def size(self) -> int:
        return FLAGS_BYTES + 2 * self.slots * self.slot_bytes

    def in_offset(self, slot: int) -> int:
        return FLAGS_BYTES + 2 * slot * self.slot_bytes

    def out_offset(self, slot: int) -> int:
        return self.in_offset(slot) + self.slot_bytes


class Arena:
    """A mapped arena: the gateway calls ``create``; the instance maps the fd it inherited."""

    def __init__(self, fd: int, layout: ArenaLayout) -> None:
        self.fd = fd
        self.layout = layout
        self.buffer = mmap.mmap(fd, layout.size)
        self.view = memoryview(self.buffer)

    @classmethod
    def create(cls, layout: ArenaLayout) -> Arena:
        fd = os.memfd_create("sealfn-arena", 0)  # anonymous: freed when both sides close it
        os.ftruncate(fd, layout.size)  # sparse: pages are allocated only when touched
        return cls(fd, layout)

    def started(self, slot: int) -> bool:
        return self.buffer[slot] == 1

    def mark_started(self, slot: int, value: bool = True) -> None:
        self.buffer[slot] = 1 if value else 0

    def close(self) -> None:
        self.view.release()
        self.buffer.close()
        os.close(self.fd)
