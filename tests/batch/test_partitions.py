from __future__ import annotations

import pytest

from sealfn.batch.partitions import Partition, pending, split
from sealfn.errors import ConfigError


@pytest.mark.parametrize(
    ("records", "size", "bounds"),
    [
        (0, 10, []),
        (5, 10, [(0, 5)]),
        (10, 5, [(0, 5), (5, 10)]),
        (11, 5, [(0, 5), (5, 10), (10, 11)]),
        (3, 1, [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_split(records: int, size: int, bounds: list[tuple[int, int]]) -> None:
    parts = split(records, size)
    assert [(p.start, p.stop) for p in parts] == bounds
    assert [p.index for p in parts] == list(range(len(bounds)))
    assert sum(p.records for p in parts) == records


@pytest.mark.parametrize(("records", "size"), [(10, 0), (-1, 5)])
def test_split_refuses_nonsense(records: int, size: int) -> None:
    with pytest.raises(ConfigError):
        split(records, size)


@pytest.mark.parametrize(
    ("delivered", "todo"),
    [([], list(range(7))), ([0, 1, 2, 3, 4], [5, 6]), ([1, 3], [0, 2, 4, 5, 6])],
)
def test_pending_is_what_the_root_lacks(delivered: list[int], todo: list[int]) -> None:
    assert [p.index for p in pending(split(70, 10), delivered)] == todo


def test_partition_json_round_trip() -> None:
    assert Partition.from_json(Partition(3, 30, 40).to_json()) == Partition(3, 30, 40)
