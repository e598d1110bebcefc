"""The communicator: FMI's message-passing API over any channel.

Point to point: ``send``/``recv``. Collectives: ``barrier`` (dissemination), ``bcast``,
``gather``, ``scatter``, ``reduce`` (binomial trees), ``allreduce`` (recursive doubling for small
arrays, ring reduce-scatter + allgather for large ones). Every rank calls the same collectives in
the same order; the channel keeps each pair's messages in order, which is what matches them up.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import numpy as np

from sealfn.collective import schedule
from sealfn.collective.channel import Buffer, Channel
from sealfn.collective.payload import Bundle, Value, decode, encode_parts
from sealfn.errors import InvalidInput, ProtocolError

Array = np.ndarray[Any, Any]

RING_MIN_BYTES = 64 << 10  # allreduce of arrays this large or larger goes round a ring


class Op(enum.Enum):
    """Reductions; all commutative, so every algorithm gives every rank identical bits."""

    SUM = "sum"
    PROD = "prod"
    MIN = "min"
    MAX = "max"


_UFUNCS = {Op.SUM: np.add, Op.PROD: np.multiply, Op.MIN: np.minimum, Op.MAX: np.maximum}


class Communicator:
    """Rank ``channel.rank`` of a group of ``channel.size``."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.rank = channel.rank
        self.size = channel.size

    # ---- point to point ------------------------------------------------------------------

    def send(self, value: Value, dst: int) -> None:
        self.channel.send(dst, *encode_parts(value))

    def recv(self, src: int) -> Value:
        return decode(self.channel.recv(src))

    # ---- collectives ---------------------------------------------------------------------

    def barrier(self) -> None:
        """Return once every rank has entered (dissemination: log2(p) rounds)."""
        distance = 1
        while distance < self.size:
            self.channel.send((self.rank + distance) % self.size, b"")
            self.channel.recv((self.rank - distance) % self.size)
            distance <<= 1

    def bcast(self, value: Value | None, root: int = 0) -> Value:
        """``value`` from ``root`` to every rank (others pass None)."""
        vrank = self._virtual(root)
        if vrank == 0:
            if value is None:
                raise TypeError("the root of a bcast must pass a value")
            data: tuple[Buffer, ...] = encode_parts(value)
        else:
            data = (self.channel.recv(self._parent(vrank, root)),)
        for child in reversed(schedule.binomial_children(vrank, self.size)):  # deepest first
            self.channel.send(schedule.real(child, root, self.size), *data)
        return value if vrank == 0 and value is not None else decode(data[0])

    def gather(self, value: Value, root: int = 0) -> list[Value] | None:
        """Every rank's ``value``, in rank order, at ``root``; None elsewhere."""
        vrank = self._virtual(root)
        parts: list[tuple[int, tuple[Buffer, ...]]] = []
        if vrank != 0:
            parts.append((self.rank, encode_parts(value)))
        for child in schedule.fanout_children(vrank, self.size):
            src = schedule.real(child, root, self.size)
            parts.extend(Bundle.from_bytes(self.channel.recv(src)).parts)
        parent = schedule.fanout_parent(vrank, self.size)
        if parent is not None:
            dst = schedule.real(parent, root, self.size)
            self.channel.send(dst, *Bundle(tuple(parts)).to_parts())
            return None
        by_rank = {rank: decode(_joined(pieces)) for rank, pieces in parts}
        by_rank[self.rank] = value  # the root's own value never left it
        if sorted(by_rank) != list(range(self.size)):
            raise ProtocolError(f"gather at rank {self.rank} got ranks {sorted(by_rank)}")
        return [by_rank[r] for r in range(self.size)]

    def scatter(self, values: Sequence[Value] | None, root: int = 0) -> Value:
        """``values[r]`` from ``root`` to rank ``r`` (others pass None)."""
        vrank = self._virtual(root)
        parent = schedule.fanout_parent(vrank, self.size)
        if parent is None:
            if values is None or len(values) != self.size:
                raise TypeError(f"the root of a scatter must pass {self.size} values")
            parts: dict[int, tuple[Buffer, ...]] = {
                r: encode_parts(v) for r, v in enumerate(values)
            }
        else:
            received = self.channel.recv(schedule.real(parent, root, self.size))
            parts = dict(Bundle.from_bytes(received).parts)
        for child in reversed(schedule.fanout_children(vrank, self.size)):
            members = [
                schedule.real(v, root, self.size)
                for v in range(child, child + schedule.fanout_span(child, self.size))
            ]
            bundle = Bundle(tuple((r, parts[r]) for r in members))
            self.channel.send(schedule.real(child, root, self.size), *bundle.to_parts())
        if self.rank not in parts:
            raise ProtocolError(f"scatter reached rank {self.rank} without its part")
        if vrank == 0 and values is not None:
            return values[self.rank]
        return decode(_joined(parts[self.rank]))

    def reduce(self, array: Array, op: Op = Op.SUM, root: int = 0) -> Array | None:
        """``op`` over every rank's ``array`` (same shape and dtype everywhere), at ``root``."""
        vrank = self._virtual(root)
        total = _own_copy(array)
        for child in schedule.binomial_children(vrank, self.size):
            other = decode(self.channel.recv(schedule.real(child, root, self.size)))
            _combine(total, other, op, schedule.real(child, root, self.size))
        if vrank != 0:
            self.channel.send(self._parent(vrank, root), *encode_parts(total))
            return None
        return total

    def allreduce(self, array: Array, op: Op = Op.SUM) -> Array:
        """``op`` over every rank's ``array``, on every rank."""
        total = _own_copy(array)
        if self.size == 1:
            return total
        if total.nbytes >= RING_MIN_BYTES and total.size >= self.size:
            self._ring_allreduce(total.reshape(-1), op)
        else:
            total = self._doubling_allreduce(total, op)
        return total

    def close(self) -> None:
        self.channel.close()

    # ---- algorithms ----------------------------------------------------------------------

    def _doubling_allreduce(self, total: Array, op: Op) -> Array:
        partner, core = schedule.doubling_fold(self.rank, self.size)
        if partner is not None and core is None:  # an extra rank: hand over, wait for the end
            self.channel.send(partner, *encode_parts(total))
            result = decode(self.channel.recv(partner))
            if not isinstance(result, np.ndarray):
                raise ProtocolError(f"rank {partner} sent bytes where an array was due")
            return result
        if partner is not None:
            _combine(total, decode(self.channel.recv(partner)), op, partner)
        core_size = 1 << (self.size.bit_length() - 1)
        mask = 1
        while mask < core_size:
            peer = schedule.core_to_rank((core or 0) ^ mask, self.size)
            self.channel.send(peer, *encode_parts(total))
            _combine(total, decode(self.channel.recv(peer)), op, peer)
            mask <<= 1
        if partner is not None:
            self.channel.send(partner, *encode_parts(total))
        return total

    def _ring_allreduce(self, flat: Array, op: Op) -> None:
        """In place: reduce-scatter round the ring, then allgather the reduced chunks."""
        size, rank = self.size, self.rank
        bounds = schedule.ring_chunks(flat.size, size)
        right, left = (rank + 1) % size, (rank - 1) % size
        ufunc = _UFUNCS[op]
        for step in range(size - 1):
            start, stop = bounds[(rank - step) % size]
            self.channel.send(right, flat[start:stop].data.cast("B"))
            start, stop = bounds[(rank - step - 1) % size]
            incoming = self._chunk(left, flat.dtype, stop - start)
            ufunc(flat[start:stop], incoming, out=flat[start:stop])
        for step in range(size - 1):
            start, stop = bounds[(rank + 1 - step) % size]
            self.channel.send(right, flat[start:stop].data.cast("B"))
            start, stop = bounds[(rank - step) % size]
            flat[start:stop] = self._chunk(left, flat.dtype, stop - start)

    def _chunk(self, src: int, dtype: np.dtype[Any], count: int) -> Array:
        data = self.channel.recv(src)
        if len(data) != count * dtype.itemsize:
            raise ProtocolError(f"rank {src} sent {len(data)} bytes of a ring chunk")
        return np.frombuffer(data, dtype=dtype)

    def _virtual(self, root: int) -> int:
        if not 0 <= root < self.size:
            raise ValueError(f"root {root} is outside a group of {self.size}")
        return schedule.virtual(self.rank, root, self.size)

    def _parent(self, vrank: int, root: int) -> int:
        parent = schedule.binomial_parent(vrank)
        if parent is None:
            raise ProtocolError("the root has no parent")
        return schedule.real(parent, root, self.size)


def _joined(pieces: tuple[Buffer, ...]) -> Buffer:
    """One buffer of a payload's pieces (a received payload is one piece: no copy)."""
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _own_copy(array: Array) -> Array:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"reductions take numpy arrays, not {type(array).__name__}")
    return np.array(array, copy=True, order="C")


def _combine(total: Array, other: Value, op: Op, src: int) -> None:
    if (
        not isinstance(other, np.ndarray)
        or other.shape != total.shape
        or other.dtype != total.dtype
    ):
        raise InvalidInput(
            f"rank {src} contributed a different array to the reduction "
            f"(every rank must pass the same shape and dtype, here {total.shape} {total.dtype})"
        )
    _UFUNCS[op](total, other, out=total)
