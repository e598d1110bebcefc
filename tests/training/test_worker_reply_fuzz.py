"""The coordinator reads untrusted workers' replies: any frame a worker can send is decoded or
refused with a sealfn error, never a foreign exception that would take the coordinator down."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealfn.errors import SealfnError
from sealfn.ipc.frames import Frame, Kind
from sealfn.training.wire import WorkReply

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=15,
)
refs = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values,
        "dtype": st.sampled_from(["float32", "float64", "O", "U4", "V8", "int8", "x"])
        | json_values,
        "shape": st.lists(st.integers(-2, 1 << 40), max_size=3) | json_values,
        "where": st.sampled_from(["inline", "arena", "elsewhere"]) | json_values,
        "offset": st.integers(-5, 1 << 40) | json_values,
        "nbytes": st.integers(-5, 1 << 40) | json_values,
    },
)


def _decode(frame: Frame) -> WorkReply | None:
    try:
        return WorkReply.from_frame(frame)
    except SealfnError as exc:
        assert exc.message
        return None


@FUZZ
@given(
    kind=st.sampled_from(list(Kind)),
    results=st.lists(refs, max_size=3) | json_values,
    seconds=json_values,
    payload=st.binary(max_size=64),
)
def test_any_reply_a_worker_can_send(
    kind: Kind, results: Any, seconds: Any, payload: bytes
) -> None:
    reply = _decode(Frame(kind, 1, {"results": results, "seconds": seconds}, payload))
    if reply is not None:
        assert all(isinstance(r, np.ndarray) for r in reply.results)


def test_an_honest_reply_round_trips() -> None:
    honest = WorkReply((np.arange(6.0).reshape(2, 3),), 0.5)
    decoded = WorkReply.from_frame(honest.to_frame(7))
    np.testing.assert_array_equal(decoded.results[0], honest.results[0])
