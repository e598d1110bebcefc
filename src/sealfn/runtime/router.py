"""Which instance serves the next batch of a model: ``pick(instances, model)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from sealfn.runtime.lifecycle import SERVING, InstanceState
from sealfn.types import InstanceId


@dataclass(frozen=True)
class InstanceView:
    """What the router needs to know about one instance, copied out of the pool."""

    id: InstanceId
    state: InstanceState
    models: frozenset[str]  # models loaded in this instance
    in_flight: int  # batches running now
    capacity: int  # batches it may run at once
    last_used: float  # monotonic seconds of the last dispatch


def pick(instances: Sequence[InstanceView], model: str) -> InstanceId | None:
    """Return the id of the least-loaded serving instance with ``model`` and a free slot.

    Load is ``in_flight / capacity`` (exact fractions, so equal loads tie). Ties go to the most
    recently used instance, which packs work onto few instances so the surplus goes idle and can
    be reaped; then to the smallest id, so the choice is deterministic. Returns None when nothing
    qualifies: the caller queues the request, it never fails here.
    """
    candidates = [i for i in instances if _can_take(i, model)]
    if not candidates:
        return None
    return min(candidates, key=lambda i: (Fraction(i.in_flight, i.capacity), -i.last_used, i.id)).id


def _can_take(instance: InstanceView, model: str) -> bool:
    return (
        instance.state in SERVING
        and model in instance.models
        and 0 <= instance.in_flight < instance.capacity
    )
