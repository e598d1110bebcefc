"""Dealing one round's partitions on demand, so a slow instance takes fewer (no I/O: tested alone).

Each instance starts with up to ``prefetch`` partitions; every time it reports one done it gets
the next undealt one, and once none are left and it holds none, a final (empty) grant that sends
it to the round's gather. If a member dies the round is lost: everyone still working gets its
final grant at once, and the undealt partitions wait for the next round.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from sealfn.batch.partitions import Partition
from sealfn.errors import ConfigError

PREFETCH = 2  # partitions an instance holds: one running, one queued behind it


@dataclass(frozen=True)
class Grant:
    partitions: tuple[Partition, ...]
    final: bool  # no more will come this round: gather after these


class Dealer:
    def __init__(
        self, todo: Sequence[Partition], members: Sequence[str], prefetch: int = PREFETCH
    ) -> None:
        if prefetch < 1:
            raise ConfigError(f"prefetch must be >= 1, got {prefetch}")
        self._undealt = deque(sorted(todo))
        self._held = dict.fromkeys(members, 0)  # partitions dealt but not reported done
        self._finished: set[str] = set()  # members that got their final grant
        self._prefetch = prefetch

    def start(self) -> dict[str, Grant]:
        """The first grant of every member (round-robin, so each starts with a fair share)."""
        firsts: dict[str, list[Partition]] = {name: [] for name in self._held}
        for _ in range(self._prefetch):
            for held in firsts.values():
                if self._undealt:
                    held.append(self._undealt.popleft())
        grants = {}
        for name, partitions in firsts.items():
            self._held[name] = len(partitions)
            grants[name] = self._grant(name, tuple(partitions))
        return grants

    def done(self, member: str) -> Grant | None:
        """``member`` reported a partition done: what to send it now (None: nothing)."""
        if member not in self._held or member in self._finished:
            return None
        self._held[member] = max(0, self._held[member] - 1)
        if self._undealt:
            self._held[member] += 1
            return self._grant(member, (self._undealt.popleft(),))
        if self._held[member] == 0:
            return self._grant(member, ())
        return None

    def stop(self) -> dict[str, Grant]:
        """The round is lost: a final grant for every member still expecting one."""
        grants = {name: Grant((), True) for name in self._held if name not in self._finished}
        self._finished.update(grants)
        return grants

    @property
    def undealt(self) -> list[Partition]:
        return list(self._undealt)

    def _grant(self, member: str, partitions: tuple[Partition, ...]) -> Grant:
        final = not self._undealt  # nothing left to deal: whatever it holds is its last
        if final:
            self._finished.add(member)
        return Grant(partitions, final)
