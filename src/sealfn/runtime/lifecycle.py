"""The lifecycle of one worker instance as a pure state machine: ``next_state(state, event)``."""

from __future__ import annotations

import enum

from sealfn.errors import ProtocolError


class InstanceState(enum.Enum):
    """Where an instance is in its life; only WARM and IDLE instances take work."""

    STARTING = "starting"  # cold: spawning the process and loading the model
    WARM = "warm"  # at least one batch in flight
    IDLE = "idle"  # loaded, nothing in flight; a candidate for reaping after keep-alive
    DRAINING = "draining"  # takes no new work; stopped by the pool once in-flight work is done
    GONE = "gone"  # exited; kept only for bookkeeping


class Event(enum.Enum):
    """What happened to an instance."""

    READY = "ready"  # the model is loaded
    DISPATCH = "dispatch"  # a batch was sent to it
    DRAINED_WORK = "drained_work"  # an in-flight batch finished
    DRAIN = "drain"  # the pool decided to retire it
    EXITED = "exited"  # its process is gone (clean exit or crash)


SERVING = frozenset({InstanceState.WARM, InstanceState.IDLE})
"""States that accept new work."""

ALIVE = frozenset(set(InstanceState) - {InstanceState.GONE})
"""States that still hold a process (and so cost memory)."""

# Transitions that do not depend on the in-flight count; WARM + DRAINED_WORK does, so it is
# handled in `next_state`.
_FIXED: dict[tuple[InstanceState, Event], InstanceState] = {
    (InstanceState.STARTING, Event.READY): InstanceState.IDLE,
    (InstanceState.IDLE, Event.DISPATCH): InstanceState.WARM,
    (InstanceState.WARM, Event.DISPATCH): InstanceState.WARM,
    (InstanceState.DRAINING, Event.DRAINED_WORK): InstanceState.DRAINING,
}


def next_state(state: InstanceState, event: Event, in_flight_after: int) -> InstanceState:
    """Return the state after ``event``; ``in_flight_after`` is the batch count once it applied.

    Raises `ProtocolError` for a transition that cannot happen (e.g. DISPATCH to a draining
    instance), which means the caller's bookkeeping and the instance disagree.
    """
    if in_flight_after < 0:
        raise ProtocolError(
            f"instance in state {state.value!r} got event {event.value!r} "
            f"with in_flight_after={in_flight_after} < 0"
        )
    if event is Event.EXITED:
        return InstanceState.GONE  # a process can die in any state, even twice reported
    if state is InstanceState.GONE:
        raise _illegal(state, event)
    if event is Event.DRAIN:
        return InstanceState.DRAINING  # the pool stops it once in_flight reaches 0
    if state is InstanceState.WARM and event is Event.DRAINED_WORK:
        return InstanceState.IDLE if in_flight_after == 0 else InstanceState.WARM
    try:
        return _FIXED[state, event]
    except KeyError:
        raise _illegal(state, event) from None


def _illegal(state: InstanceState, event: Event) -> ProtocolError:
    return ProtocolError(f"illegal event {event.value!r} for an instance in state {state.value!r}")
