"""Who talks to whom in each collective algorithm: pure functions of (rank, size, root).

Binomial trees run on virtual ranks ``v = (rank - root) % size`` so any rank can be the root.
A rank's subtree in the binomial tree is the range ``[v, v + span(v))``.
"""

from __future__ import annotations


def virtual(rank: int, root: int, size: int) -> int:
    return (rank - root) % size


def real(vrank: int, root: int, size: int) -> int:
    return (vrank + root) % size


def binomial_parent(vrank: int) -> int | None:
    """The virtual rank this one hands its subtree to (None for the root)."""
    if vrank == 0:
        return None
    return vrank & (vrank - 1)  # clear the lowest set bit


def binomial_children(vrank: int, size: int) -> list[int]:
    """Virtual ranks this one feeds, smallest subtree first."""
    limit = _lowest_bit(vrank) if vrank else _ceil_pow2(size)
    children = []
    mask = 1
    while mask < limit and vrank + mask < size:
        children.append(vrank + mask)
        mask <<= 1
    return children


def span(vrank: int, size: int) -> int:
    """How many virtual ranks the subtree rooted at ``vrank`` covers (itself included)."""
    limit = _lowest_bit(vrank) if vrank else _ceil_pow2(size)
    return min(limit, size - vrank)


FLAT_MAX_RANKS = 64  # gather/scatter go straight to/from the root in groups up to this size


def fanout_children(vrank: int, size: int) -> list[int]:
    """Children in the tree that gather and scatter use: flat (everyone talks to the root) up to
    ``FLAT_MAX_RANKS``, where the root's ingress is the bound either way and a binomial tree
    would only forward the same bytes through intermediate ranks; binomial beyond, where the
    root's per-message cost dominates."""
    if size > FLAT_MAX_RANKS:
        return binomial_children(vrank, size)
    return list(range(1, size)) if vrank == 0 else []


def fanout_parent(vrank: int, size: int) -> int | None:
    if size > FLAT_MAX_RANKS:
        return binomial_parent(vrank)
    return None if vrank == 0 else 0


def fanout_span(vrank: int, size: int) -> int:
    if size > FLAT_MAX_RANKS:
        return span(vrank, size)
    return size if vrank == 0 else 1


def doubling_fold(rank: int, size: int) -> tuple[int | None, int | None]:
    """Recursive doubling on a non-power-of-two group: fold the extra ranks in first.

    Returns ``(partner, new_rank)``: the rank this one pairs with while folding (None when it
    takes no part in the fold) and its rank within the power-of-two core (None when it sits the
    core out and waits for the result from ``partner``)."""
    core = 1 << (size.bit_length() - 1)  # the largest power of two <= size
    extra = size - core
    if rank < 2 * extra:
        return (rank + 1, None) if rank % 2 == 0 else (rank - 1, rank // 2)
    return None, rank - extra


def core_to_rank(new_rank: int, size: int) -> int:
    """The real rank of a rank within the recursive-doubling core."""
    extra = size - (1 << (size.bit_length() - 1))
    return 2 * new_rank + 1 if new_rank < extra else new_rank + extra


def ring_chunks(total: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` bounds of ``parts`` near-equal chunks of ``total`` elements."""
    base, rest = divmod(total, parts)
    bounds = []
    start = 0
    for index in range(parts):
        stop = start + base + (1 if index < rest else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _lowest_bit(value: int) -> int:
    return value & -value


def _ceil_pow2(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())
