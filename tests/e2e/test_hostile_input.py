"""Hostile input against a running gateway: every answer is a 2xx or a 4xx naming the problem.

Property-based (hypothesis) over HTTP to a real `sealfn serve` with a deployed model: hostile
JSON tensors (wrong shapes and dtypes, NaN/Inf, zero-length and negative dims, deep nesting),
mutated binary-extension bodies with lying header lengths, and junk sent as sealed envelopes.
No 5xx, and a good request still gets the right answer afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealfn import oip
from sealfn.sealed_request import CONTENT_TYPE as SEALED
from sealfn_testing import assert_clean_refusal

if TYPE_CHECKING:
    from sealfn_testing import Server

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAME = "hostile-mlp"
X = np.ones((2, 16), dtype=np.float32)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=40)
dims = st.integers(min_value=-2, max_value=40) | st.just(1 << 40)


@pytest.fixture(scope="module")
def http(server: Server, models: Any) -> Iterator[httpx.Client]:
    server.client.deploy(NAME, models.mlp, max_instances=1)
    with server.http() as client:
        yield client
    assert server.client.infer(NAME, {"input": X})["output"].shape == (2, 4)  # still serving
    server.client.undeploy(NAME)


@FUZZ
@given(
    name=st.just("input") | st.text(max_size=6),
    datatype=st.sampled_from(["FP32", "FP64", "FP16", "INT64", "BOOL", "BYTES", "FP99"]),
    shape=st.lists(dims, max_size=3),
    data=json_values | st.lists(st.floats(width=32), max_size=64),
)
def test_hostile_json_tensors(
    http: httpx.Client, name: str, datatype: str, shape: list[int], data: Any
) -> None:
    body = {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}
    assert_clean_refusal(http.post(f"/v2/models/{NAME}/infer", content=json.dumps(body).encode()))


@FUZZ
@given(
    rows=st.integers(min_value=0, max_value=3),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=3),
    length_delta=st.integers(min_value=-40, max_value=40),
)
def test_mutated_binary_bodies(
    http: httpx.Client, rows: int, flips: list[tuple[int, int]], length_delta: int
) -> None:
    array = np.full((rows, 16), np.nan if rows == 3 else 1.0, dtype=np.float32)
    body, headers = oip.encode_request([oip.Tensor.from_numpy("input", array)], binary=True)
    mutated = bytearray(body)
    for at, value in flips:
        mutated[at % len(mutated)] = value
    headers[oip.HEADER_LENGTH] = str(int(headers[oip.HEADER_LENGTH]) + length_delta)
    assert_clean_refusal(
        http.post(f"/v2/models/{NAME}/infer", content=bytes(mutated), headers=headers)
    )


@FUZZ
@given(raw=st.binary(max_size=2048))
def test_junk_sent_as_a_sealed_envelope(http: httpx.Client, raw: bytes) -> None:
    headers = {"content-type": SEALED}
    assert_clean_refusal(http.post(f"/v2/models/{NAME}/infer", content=raw, headers=headers))


def test_nan_and_inf_inputs_are_answered(http: httpx.Client) -> None:
    """Non-finite floats are data: the model runs and the reply carries what it computed."""
    x = X.copy()
    x[0, 0], x[1, 1] = np.nan, np.inf
    body, headers = oip.encode_request([oip.Tensor.from_numpy("input", x)], binary=False)
    reply = http.post(f"/v2/models/{NAME}/infer", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
