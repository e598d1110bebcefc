"""How a dataset is cut into partitions, and which ones a round still has to do (pure).

A partition is a contiguous range of records. Each round of a job deals (``batch.dealer``) the
partitions whose results the root does not hold yet to the live instances.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sealfn.errors import ConfigError


@dataclass(frozen=True, order=True)
class Partition:
    index: int
    start: int  # first record
    stop: int  # one past the last record

    @property
    def records(self) -> int:
        return self.stop - self.start

    def to_json(self) -> list[int]:
        return [self.index, self.start, self.stop]

    @classmethod
    def from_json(cls, raw: Any) -> Partition:
        index, start, stop = raw
        return cls(int(index), int(start), int(stop))


def split(records: int, per_partition: int) -> list[Partition]:
    """Cut ``records`` records into partitions of ``per_partition`` (the last may be shorter)."""
    if per_partition < 1:
        raise ConfigError(f"partition size must be >= 1 record, got {per_partition}")
    if records < 0:
        raise ConfigError(f"a dataset cannot hold {records} records")
    return [
        Partition(i, start, min(start + per_partition, records))
        for i, start in enumerate(range(0, records, per_partition))
    ]


def pending(partitions: Iterable[Partition], delivered: Iterable[int]) -> list[Partition]:
    """The partitions whose results have not reached the root, in index order."""
    have = set(delivered)
    return sorted(p for p in partitions if p.index not in have)
