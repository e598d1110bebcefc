from __future__ import annotations

import pytest

from sealfn.batch.partitions import Partition, deal, pending, split
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


PARTS = split(70, 10)  # 7 partitions


@pytest.mark.parametrize(
    ("delivered", "instances", "dealt"),
    [
        ([], ["a", "b"], {"a": [0, 2, 4, 6], "b": [1, 3, 5]}),
        ([0, 1, 2, 3, 4], ["a", "b", "c"], {"a": [5], "b": [6], "c": []}),
        ([1, 3], ["c"], {"c": [0, 2, 4, 5, 6]}),
        (list(range(7)), ["a"], {"a": []}),
    ],
)
def test_retry_rounds_deal_only_what_the_root_lacks(
    delivered: list[int], instances: list[str], dealt: dict[str, list[int]]
) -> None:
    plan = deal(pending(PARTS, delivered), instances)
    assert {name: [p.index for p in parts] for name, parts in plan.items()} == dealt
    every = [p.index for parts in plan.values() for p in parts]
    assert sorted(every + delivered) == list(range(7))  # nothing lost, nothing twice


def test_dealing_needs_an_instance() -> None:
    with pytest.raises(ConfigError):
        deal(PARTS, [])


def test_partition_json_round_trip() -> None:
    assert Partition.from_json(Partition(3, 30, 40).to_json()) == Partition(3, 30, 40)
