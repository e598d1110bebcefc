from __future__ import annotations

import pytest

from sealfn.collective import schedule


@pytest.mark.parametrize(
    ("vrank", "size", "children", "span"),
    [
        (0, 1, [], 1),
        (0, 2, [1], 2),
        (0, 5, [1, 2, 4], 5),
        (0, 8, [1, 2, 4], 8),
        (2, 5, [3], 2),
        (4, 5, [], 1),
        (4, 8, [5, 6], 4),
        (6, 7, [], 1),
        (3, 8, [], 1),
    ],
)
def test_binomial_tree(vrank: int, size: int, children: list[int], span: int) -> None:
    assert schedule.binomial_children(vrank, size) == children
    assert schedule.span(vrank, size) == span
    for child in children:
        assert schedule.binomial_parent(child) == vrank


@pytest.mark.parametrize("size", range(1, 17))
def test_every_rank_is_in_exactly_one_subtree_of_the_root(size: int) -> None:
    covered = [0]
    for child in schedule.binomial_children(0, size):
        covered += range(child, child + schedule.span(child, size))
    assert sorted(covered) == list(range(size))


@pytest.mark.parametrize(
    ("rank", "size", "fold"),
    [
        (0, 1, (None, 0)),
        (0, 2, (None, 0)),
        (0, 3, (1, None)),
        (1, 3, (0, 0)),
        (2, 3, (None, 1)),
        (4, 6, (None, 2)),
        (3, 6, (2, 1)),
        (6, 7, (None, 3)),
        (5, 7, (4, 2)),
    ],
)
def test_recursive_doubling_folds_extra_ranks(
    rank: int, size: int, fold: tuple[int | None, int | None]
) -> None:
    assert schedule.doubling_fold(rank, size) == fold
    core = fold[1]
    if core is not None:
        assert schedule.core_to_rank(core, size) == rank


@pytest.mark.parametrize(
    ("total", "parts", "bounds"),
    [
        (10, 3, [(0, 4), (4, 7), (7, 10)]),
        (2, 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),
        (8, 2, [(0, 4), (4, 8)]),
    ],
)
def test_ring_chunks(total: int, parts: int, bounds: list[tuple[int, int]]) -> None:
    assert schedule.ring_chunks(total, parts) == bounds


@pytest.mark.parametrize(("rank", "root", "size"), [(0, 0, 1), (2, 3, 5), (4, 1, 5)])
def test_virtual_ranks_round_trip(rank: int, root: int, size: int) -> None:
    assert schedule.real(schedule.virtual(rank, root, size), root, size) == rank


@pytest.mark.parametrize("size", [1, 2, 5, 64, 65, 100])
def test_fanout_tree_covers_every_rank_once(size: int) -> None:
    """Flat up to FLAT_MAX_RANKS, binomial beyond; either way a tree over all ranks."""
    covered = [0]
    for child in schedule.fanout_children(0, size):
        covered += range(child, child + schedule.fanout_span(child, size))
        assert schedule.fanout_parent(child, size) == 0
    assert sorted(covered) == list(range(size))
    flat = size <= schedule.FLAT_MAX_RANKS
    assert (len(schedule.fanout_children(0, size)) == size - 1) == (flat or size <= 2)
