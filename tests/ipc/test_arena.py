"""The memfd arena: layout arithmetic, shared bytes across mappings, per-slot started flags."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from sealfn.ipc.arena import FLAGS_BYTES, Arena, ArenaLayout


@pytest.fixture
def arena() -> Iterator[Arena]:
    arena = Arena.create(ArenaLayout(slots=3, slot_bytes=1 << 12))
    yield arena
    arena.close()


def test_layout_regions_do_not_overlap() -> None:
    layout = ArenaLayout(slots=4, slot_bytes=1 << 20)
    regions = sorted(
        (offset, offset + layout.slot_bytes)
        for slot in range(layout.slots)
        for offset in (layout.in_offset(slot), layout.out_offset(slot))
    )
    assert regions[0][0] == FLAGS_BYTES  # after the flags page
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(regions))
    assert regions[-1][1] == layout.size
    assert all(start % 64 == 0 for start, _ in regions)


def test_started_flags_are_per_slot(arena: Arena) -> None:
    assert not any(arena.started(slot) for slot in range(3))
    arena.mark_started(1)
    assert [arena.started(slot) for slot in range(3)] == [False, True, False]
    arena.mark_started(1, False)
    assert not arena.started(1)


def test_a_second_mapping_shares_the_bytes(arena: Arena) -> None:
    """The instance maps the fd it inherited: both sides see each other's writes."""
    other = Arena(os.dup(arena.fd), arena.layout)
    try:
        other.mark_started(2)  # the instance begins a batch in slot 2
        assert arena.started(2)
        start = arena.layout.out_offset(0)
        other.view[start : start + 5] = b"hello"
        assert bytes(arena.view[start : start + 5]) == b"hello"
    finally:
        other.close()
    assert arena.started(2)  # the memfd outlives one side's mapping


def test_size_is_the_file_size(arena: Arena) -> None:
    assert os.fstat(arena.fd).st_size == arena.layout.size == FLAGS_BYTES + 2 * 3 * (1 << 12)
