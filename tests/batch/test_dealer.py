from __future__ import annotations

from sealfn.batch.dealer import Dealer, Grant
from sealfn.batch.partitions import split

PARTS = split(60, 10)  # 6 partitions


def indices(grant: Grant | None) -> tuple[list[int], bool] | None:
    return None if grant is None else ([p.index for p in grant.partitions], grant.final)


def test_first_grants_prefetch_round_robin() -> None:
    grants = Dealer(PARTS, ["a", "b"], prefetch=2).start()
    assert {k: indices(g) for k, g in grants.items()} == {
        "a": ([0, 2], False),
        "b": ([1, 3], False),
    }


def test_the_faster_instance_takes_more() -> None:
    dealer = Dealer(PARTS, ["a", "b"], prefetch=2)
    dealer.start()  # a: 0 2, b: 1 3; undealt 4 5
    assert indices(dealer.done("a")) == ([4], False)
    assert indices(dealer.done("a")) == ([5], True)  # the last one: a gathers after it
    assert indices(dealer.done("a")) is None  # a has its final grant
    assert indices(dealer.done("b")) is None  # b still holds 3
    assert indices(dealer.done("b")) == ([], True)  # b is done: off to the gather
    assert dealer.undealt == []


def test_more_instances_than_partitions() -> None:
    grants = Dealer(PARTS[:1], ["a", "b", "c"], prefetch=2).start()
    assert {k: indices(g) for k, g in grants.items()} == {
        "a": ([0], True),
        "b": ([], True),
        "c": ([], True),
    }


def test_a_lost_round_finishes_everyone_and_keeps_the_rest() -> None:
    dealer = Dealer(PARTS, ["a", "b"], prefetch=1)
    dealer.start()  # a: 0, b: 1
    dealer.done("a")  # a: 2
    assert {k: indices(g) for k, g in dealer.stop().items()} == {"a": ([], True), "b": ([], True)}
    assert [p.index for p in dealer.undealt] == [3, 4, 5]
    assert dealer.stop() == {}
    assert dealer.done("b") is None


def test_every_partition_is_dealt_exactly_once() -> None:
    dealer = Dealer(split(1000, 7), ["a", "b", "c"])
    dealt = [p.index for g in dealer.start().values() for p in g.partitions]
    turn = 0
    while dealer.undealt:
        grant = dealer.done("abc"[turn % 3])
        dealt += [p.index for p in grant.partitions] if grant else []
        turn += 1
    assert sorted(dealt) == list(range(143))
