"""Hostile bytes at the collective and batch wire formats: parsed, or refused with a sealfn error.

Rendezvous registrations arrive over loopback TCP from any local process; payloads, bundles and
partition results cross process boundaries. None may crash a parser with a foreign exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sealfn.batch.messages import Event, Order
from sealfn.batch.results import PartitionResult
from sealfn.collective.payload import Bundle, decode, encode
from sealfn.collective.rendezvous import PeerTable, Register
from sealfn.errors import SealfnError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARSERS: list[Callable[[bytes], Any]] = [
    decode,
    Bundle.from_bytes,
    PartitionResult.from_bytes,
    Register.from_bytes,
    PeerTable.from_bytes,
    Order.from_bytes,
    Event.from_bytes,
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=15,
)
json_docs = st.dictionaries(
    st.sampled_from(["v", "group", "rank", "size", "endpoint", "endpoints", "round",
                     "rendezvous", "partitions", "final", "kind", "instance", "partition"]),
    json_values,
).map(lambda d: {"v": 1, **d} if d.get("v") is None else d)  # fmt: skip


def _parse_or_refuse(parse: Callable[[bytes], Any], data: bytes) -> None:
    try:
        parse(data)
    except SealfnError as exc:
        assert exc.message


@FUZZ
@given(parser=st.sampled_from(PARSERS), data=st.binary(max_size=300))
def test_arbitrary_bytes(parser: Callable[[bytes], Any], data: bytes) -> None:
    _parse_or_refuse(parser, data)


@FUZZ
@given(parser=st.sampled_from(PARSERS[3:]), doc=json_docs)
def test_hostile_json_messages(parser: Callable[[bytes], Any], doc: dict[str, Any]) -> None:
    _parse_or_refuse(parser, json.dumps(doc).encode() + b"\n")


arrays = st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))
)


@FUZZ
@given(array=arrays, cut=st.integers(min_value=0), flip=st.integers(min_value=0))
def test_payloads_round_trip_and_survive_mutation(array: np.ndarray, cut: int, flip: int) -> None:
    raw = encode(array)
    np.testing.assert_array_equal(decode(raw), array)
    mutated = bytearray(raw[: cut % (len(raw) + 1)])
    if mutated:
        mutated[flip % len(mutated)] ^= 0xFF
    _parse_or_refuse(decode, bytes(mutated))
    result = PartitionResult(3, (("y", array),)).to_bytes()
    _parse_or_refuse(PartitionResult.from_bytes, result[: cut % (len(result) + 1)])
