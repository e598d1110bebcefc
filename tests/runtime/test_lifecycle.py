"""Instance lifecycle: every legal transition, and the illegal ones raise ProtocolError."""

from __future__ import annotations

import pytest

from sealfn.errors import ProtocolError
from sealfn.runtime.lifecycle import ALIVE, SERVING, Event, InstanceState, next_state

S = InstanceState
E = Event


@pytest.mark.parametrize(
    ("state", "event", "in_flight_after", "expected"),
    [
        pytest.param(S.STARTING, E.READY, 0, S.IDLE, id="starting-ready-idle"),
        pytest.param(S.IDLE, E.DISPATCH, 1, S.WARM, id="idle-dispatch-warm"),
        pytest.param(S.WARM, E.DISPATCH, 2, S.WARM, id="warm-dispatch-warm"),
        pytest.param(S.WARM, E.DRAINED_WORK, 0, S.IDLE, id="warm-last-batch-done-idle"),
        pytest.param(S.WARM, E.DRAINED_WORK, 1, S.WARM, id="warm-batch-done-more-left-warm"),
        pytest.param(S.STARTING, E.DRAIN, 0, S.DRAINING, id="starting-drain"),
        pytest.param(S.IDLE, E.DRAIN, 0, S.DRAINING, id="idle-drain"),
        pytest.param(S.WARM, E.DRAIN, 3, S.DRAINING, id="warm-drain"),
        pytest.param(S.DRAINING, E.DRAIN, 1, S.DRAINING, id="draining-drain-again"),
        pytest.param(S.DRAINING, E.DRAINED_WORK, 1, S.DRAINING, id="draining-batch-done"),
        pytest.param(S.DRAINING, E.DRAINED_WORK, 0, S.DRAINING, id="draining-last-batch-done"),
        pytest.param(S.STARTING, E.EXITED, 0, S.GONE, id="starting-crash"),
        pytest.param(S.IDLE, E.EXITED, 0, S.GONE, id="idle-exit"),
        pytest.param(S.WARM, E.EXITED, 0, S.GONE, id="warm-crash"),
        pytest.param(S.DRAINING, E.EXITED, 0, S.GONE, id="draining-exit"),
        pytest.param(S.GONE, E.EXITED, 0, S.GONE, id="gone-exit-reported-twice"),
    ],
)
def test_legal_transitions(
    state: InstanceState, event: Event, in_flight_after: int, expected: InstanceState
) -> None:
    assert next_state(state, event, in_flight_after) is expected


@pytest.mark.parametrize(
    ("state", "event", "in_flight_after"),
    [
        pytest.param(S.STARTING, E.DISPATCH, 1, id="dispatch-to-starting"),
        pytest.param(S.DRAINING, E.DISPATCH, 1, id="dispatch-to-draining"),
        pytest.param(S.GONE, E.DISPATCH, 1, id="dispatch-to-gone"),
        pytest.param(S.IDLE, E.READY, 0, id="ready-when-idle"),
        pytest.param(S.WARM, E.READY, 1, id="ready-when-warm"),
        pytest.param(S.DRAINING, E.READY, 0, id="ready-when-draining"),
        pytest.param(S.GONE, E.READY, 0, id="ready-when-gone"),
        pytest.param(S.STARTING, E.DRAINED_WORK, 0, id="work-done-when-starting"),
        pytest.param(S.IDLE, E.DRAINED_WORK, 0, id="work-done-when-idle"),
        pytest.param(S.GONE, E.DRAINED_WORK, 0, id="work-done-when-gone"),
        pytest.param(S.GONE, E.DRAIN, 0, id="drain-when-gone"),
    ],
)
def test_illegal_transitions_name_state_and_event(
    state: InstanceState, event: Event, in_flight_after: int
) -> None:
    with pytest.raises(ProtocolError) as caught:
        next_state(state, event, in_flight_after)
    assert state.value in caught.value.message
    assert event.value in caught.value.message


def test_negative_in_flight_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="in_flight_after=-1"):
        next_state(S.WARM, E.DRAINED_WORK, -1)


@pytest.mark.parametrize(
    ("state", "serving", "alive"),
    [
        pytest.param(S.STARTING, False, True, id="starting"),
        pytest.param(S.WARM, True, True, id="warm"),
        pytest.param(S.IDLE, True, True, id="idle"),
        pytest.param(S.DRAINING, False, True, id="draining"),
        pytest.param(S.GONE, False, False, id="gone"),
    ],
)
def test_state_sets(state: InstanceState, serving: bool, alive: bool) -> None:
    assert (state in SERVING) is serving
    assert (state in ALIVE) is alive
