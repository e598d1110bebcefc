"""Property-based fuzzing of the Open Inference Protocol decoder (JSON and binary extension).

Whatever the bytes, ``decode_request`` either returns a request or raises ``InvalidInput``
with a message; any other exception is a crash. Valid requests round-trip exactly.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sealfn import oip
from sealfn.errors import InvalidInput

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8]
DTYPES += [np.uint16, np.uint32, np.uint64, np.bool_]
DATATYPES = ["FP32", "FP64", "FP16", "INT8", "INT64", "UINT8", "BOOL", "BYTES", "FP99", "", "fp32"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
shapes = st.lists(st.integers(min_value=-3, max_value=6) | st.just(1 << 40), max_size=4)


def _decode(body: bytes, header_length: int | None) -> oip.InferRequest | None:
    """Decode, allowing only the documented refusal."""
    try:
        return oip.decode_request(body, header_length)
    except InvalidInput as exc:
        assert exc.message, "a refusal must say what is wrong"
        return None


@FUZZ
@given(st.binary(max_size=512), st.none() | st.integers(min_value=-(1 << 33), max_value=1 << 33))
def test_arbitrary_bytes_are_decoded_or_refused(body: bytes, header_length: int | None) -> None:
    _decode(body, header_length)


@FUZZ
@given(
    name=json_values,
    datatype=st.sampled_from(DATATYPES) | json_values,
    shape=shapes | json_values,
    data=json_values,
    parameters=st.none() | st.dictionaries(st.sampled_from(["binary_data_size", "x"]), json_values),
    outputs=st.none() | json_values,
)
def test_hostile_json_tensors_are_decoded_or_refused(
    *, name: Any, datatype: Any, shape: Any, data: Any, parameters: Any, outputs: Any
) -> None:
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    if parameters is not None:
        tensor["parameters"] = parameters
    doc: dict[str, Any] = {"inputs": [tensor]}
    if outputs is not None:
        doc["outputs"] = outputs
    decoded = _decode(json.dumps(doc).encode(), None)
    if decoded is not None:  # accepted: what came out is what the shape promised
        (got,) = decoded.inputs
        assert got.data.shape == got.shape
        assert all(dim >= 0 for dim in got.shape)


arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(
        dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
    )  # NaN, ±Inf, zero-length dims and 0-d included
)


@FUZZ
@given(array=arrays, binary=st.booleans())
def test_valid_tensors_round_trip_exactly(array: np.ndarray, binary: bool) -> None:
    if not binary and array.dtype == np.float16:
        array = array.astype(np.float32)  # JSON floats are doubles; FP16 goes binary in practice
    body, headers = oip.encode_request([oip.Tensor.from_numpy("x", array)], binary=binary)
    length = headers.get(oip.HEADER_LENGTH)
    decoded = oip.decode_request(body, None if length is None else int(length))
    (got,) = decoded.inputs
    assert got.shape == array.shape and got.data.dtype == array.dtype
    np.testing.assert_array_equal(got.data, array)  # NaNs compare equal here


@FUZZ
@given(
    array=arrays,
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(min_value=0),
    length_delta=st.integers(min_value=-8, max_value=8),
)
def test_mutated_binary_bodies_are_decoded_or_refused(
    array: np.ndarray, flips: list[tuple[int, int]], cut: int | None, length_delta: int
) -> None:
    body, headers = oip.encode_request([oip.Tensor.from_numpy("x", array)], binary=True)
    mutated = bytearray(body)
    for at, value in flips:
        if mutated:
            mutated[at % len(mutated)] = value
    if cut is not None and mutated:
        del mutated[cut % len(mutated) :]
    length = headers.get(oip.HEADER_LENGTH)
    header_length = None if length is None else int(length) + length_delta
    decoded = _decode(bytes(mutated), header_length)
    if decoded is not None:
        for tensor in decoded.inputs:
            assert tensor.data.shape == tensor.shape


def test_deeply_nested_json_is_refused_not_a_recursion_crash() -> None:
    for body in (b"[" * 100_000, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        assert _decode(body, None) is None


def test_huge_declared_shapes_allocate_nothing() -> None:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1 << 40, 1 << 40], "data": []}]}
    assert _decode(json.dumps(doc).encode(), None) is None
    doc["inputs"][0]["parameters"] = {"binary_data_size": 1 << 60}
    body = json.dumps(doc).encode()
    assert _decode(body, len(body)) is None


def test_non_finite_floats_are_data_not_errors() -> None:
    """NaN and ±Inf are IEEE values a model may be asked about; they pass through unchanged."""
    array = np.array([math.nan, math.inf, -math.inf], dtype=np.float32)
    for binary in (True, False):
        body, headers = oip.encode_request([oip.Tensor.from_numpy("x", array)], binary=binary)
        length = headers.get(oip.HEADER_LENGTH)
        (got,) = oip.decode_request(body, None if length is None else int(length)).inputs
        np.testing.assert_array_equal(got.data, array)
