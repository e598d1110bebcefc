"""Every collective on every channel, for 1..8 ranks, odd sizes and non-zero roots."""

from __future__ import annotations

import numpy as np
import pytest
from collective_groups import ChannelFactory, run_group

from sealfn.collective import Communicator, Op
from sealfn.collective.comm import RING_MIN_BYTES
from sealfn.errors import InvalidInput

SIZES = range(1, 9)


def contribution(rank: int, shape: tuple[int, ...] = (3, 5)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.int64).reshape(shape) * (rank + 1) + rank


@pytest.mark.parametrize("size", SIZES)
def test_point_to_point_and_barrier(channel_factory: ChannelFactory, size: int) -> None:
    def body(comm: Communicator) -> object:
        comm.barrier()
        if comm.size == 1:
            return None
        right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
        comm.send(np.full(7, comm.rank, dtype=np.float32), right)
        comm.send(f"from {comm.rank}".encode(), right)
        array, data = comm.recv(left), comm.recv(left)
        comm.barrier()
        return array, data

    for rank, result in enumerate(run_group(channel_factory, size, body)):
        if size == 1:
            continue
        array, data = result  # type: ignore[misc]
        left = (rank - 1) % size
        np.testing.assert_array_equal(array, np.full(7, left, dtype=np.float32))
        assert data == f"from {left}".encode()


@pytest.mark.parametrize("size", SIZES)
def test_bcast_scatter_gather(channel_factory: ChannelFactory, size: int) -> None:
    root = size - 1  # a non-zero root where there is one

    def body(comm: Communicator) -> object:
        mine = comm.rank == root
        array = comm.bcast(np.linspace(0, 1, 11) if mine else None, root)
        data = comm.bcast(b"x" * 1001 if comm.rank == 0 else None, 0)
        parts = [np.full((r + 1,), r, dtype=np.int32) for r in range(comm.size)]
        part = comm.scatter(parts if mine else None, root)
        gathered = comm.gather(contribution(comm.rank), root)
        gathered_bytes = comm.gather(bytes([comm.rank]) * comm.rank, 0)
        return array, data, part, gathered, gathered_bytes

    for rank, (array, data, part, gathered, gathered_bytes) in enumerate(
        run_group(channel_factory, size, body)
    ):
        np.testing.assert_array_equal(array, np.linspace(0, 1, 11))
        assert data == b"x" * 1001
        np.testing.assert_array_equal(part, np.full((rank + 1,), rank, dtype=np.int32))
        if rank == root:
            assert len(gathered) == size
            for r, value in enumerate(gathered):
                np.testing.assert_array_equal(value, contribution(r))
        else:
            assert gathered is None
        if rank == 0:
            assert gathered_bytes == [bytes([r]) * r for r in range(size)]
        else:
            assert gathered_bytes is None


@pytest.mark.parametrize("size", SIZES)
def test_reduce_and_allreduce(channel_factory: ChannelFactory, size: int) -> None:
    root = size // 2
    large = RING_MIN_BYTES // 8 + 1001  # int64 elements: over the ring threshold, odd length

    def body(comm: Communicator) -> object:
        reduced = comm.reduce(contribution(comm.rank), Op.SUM, root)
        small = comm.allreduce(contribution(comm.rank), Op.MAX)
        big = comm.allreduce(contribution(comm.rank, (large,)), Op.SUM)
        product = comm.allreduce(np.array([comm.rank + 1.5]), Op.PROD)
        return reduced, small, big, product

    everyone = [contribution(r) for r in range(size)]
    everyone_big = [contribution(r, (large,)) for r in range(size)]
    for rank, (reduced, small, big, product) in enumerate(run_group(channel_factory, size, body)):
        if rank == root:
            np.testing.assert_array_equal(reduced, np.sum(everyone, axis=0))
        else:
            assert reduced is None
        np.testing.assert_array_equal(small, np.max(everyone, axis=0))
        np.testing.assert_array_equal(big, np.sum(everyone_big, axis=0))
        np.testing.assert_allclose(product, [np.prod([r + 1.5 for r in range(size)])])


@pytest.mark.parametrize("size", [3, 5])
def test_float_allreduce_gives_every_rank_the_same_bits(
    channel_factory: ChannelFactory, size: int
) -> None:
    rng = np.random.default_rng(size)
    values = [rng.standard_normal(RING_MIN_BYTES // 4 + 7).astype(np.float32) for _ in range(size)]
    results = run_group(channel_factory, size, lambda comm: comm.allreduce(values[comm.rank]))
    for result in results[1:]:
        assert result.tobytes() == results[0].tobytes()
    np.testing.assert_allclose(results[0], np.sum(values, axis=0), rtol=1e-4, atol=1e-4)


def test_mismatched_contributions_are_refused(channel_factory: ChannelFactory) -> None:
    def body(comm: Communicator) -> object:
        try:
            return comm.reduce(np.zeros(3 + comm.rank), Op.SUM, 0)
        except InvalidInput as exc:
            return exc

    results = run_group(channel_factory, 2, body)
    assert isinstance(results[0], InvalidInput)
    assert "different array" in results[0].message


@pytest.mark.parametrize("size", [3, 6, 8])
def test_gather_and_scatter_through_binomial_trees(
    channel_factory: ChannelFactory, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups past FLAT_MAX_RANKS gather and scatter through binomial trees: shrink the limit."""
    from sealfn.collective import schedule

    monkeypatch.setattr(schedule, "FLAT_MAX_RANKS", 1)
    root = 1

    def body(comm: Communicator) -> object:
        values = [contribution(r) for r in range(comm.size)] if comm.rank == root else None
        return comm.scatter(values, root), comm.gather(contribution(comm.rank), root)

    for rank, (part, gathered) in enumerate(run_group(channel_factory, size, body)):
        np.testing.assert_array_equal(part, contribution(rank))
        if rank == root:
            for r, value in enumerate(gathered):
                np.testing.assert_array_equal(value, contribution(r))
        else:
            assert gathered is None
