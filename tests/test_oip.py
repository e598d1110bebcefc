"""Tests for the Open Inference Protocol codec, including interop with Triton's HTTP client."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from sealfn.errors import InvalidInput
from sealfn.oip import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    JSON_CONTENT_TYPE,
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    error_body,
    model_metadata,
)
from sealfn.signature import ModelSignature, TensorSpec, numpy_dtype


def _extremes(datatype: str) -> np.ndarray[Any, Any]:
    dtype = numpy_dtype(datatype)
    info = np.iinfo(dtype)
    return np.array([[info.min, info.max, 0], [1, 2, 3]], dtype=dtype)


# One (2, 3) sample per datatype, with each integer type's extremes.
SAMPLES: dict[str, np.ndarray[Any, Any]] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    **{
        name: _extremes(name)
        for name in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
    },
    "FP16": np.array([[0.5, -1.25, 65504.0], [0.0, 3.0, -2.0]], dtype=np.float16),
    "FP32": np.array([[0.1, -1.5, 3.4e38], [1e-30, 0.0, 7.0]], dtype=np.float32),
    "FP64": np.array([[0.1, -1.5, 1.7e308], [5e-324, 0.0, 7.0]], dtype=np.float64),
    "BYTES": np.array([[b"", b"a", "é".encode()], [b"bc", b"\x00", b"x" * 300]], dtype=object),
}
DATATYPES = list(SAMPLES)


def _header_length(headers: dict[str, str]) -> int | None:
    value = headers.get(HEADER_LENGTH)
    return int(value) if value is not None else None


def _same(tensor: Tensor, name: str, expected: np.ndarray[Any, Any]) -> None:
    assert tensor.name == name
    assert tensor.shape == expected.shape
    assert tensor.data.dtype == expected.dtype
    np.testing.assert_array_equal(tensor.data, expected)


def _raw(doc: dict[str, Any], binary: bytes = b"") -> tuple[bytes, int | None]:
    """A hand-written body: JSON header plus binary section."""
    header = json.dumps(doc).encode()
    return header + binary, (len(header) if binary else None)


def _request(item: dict[str, Any], binary: bytes = b"") -> tuple[bytes, int | None]:
    return _raw({"inputs": [item]}, binary)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_request_round_trip(datatype: str, binary: bool) -> None:
    tensor = Tensor.from_numpy("x", SAMPLES[datatype])
    body, headers = encode_request([tensor], binary=binary, binary_output=False, request_id="7")
    request = decode_request(body, _header_length(headers))
    assert request.id == "7"
    assert request.binary_output is False
    assert request.outputs == ()
    _same(request.inputs[0], "x", SAMPLES[datatype])


@pytest.mark.parametrize("datatype", DATATYPES)
def test_request_with_nested_json_data(datatype: str) -> None:
    sample = SAMPLES[datatype]
    nested = [[_json_value(v) for v in row] for row in sample.tolist()]
    body, length = _request({"name": "x", "datatype": datatype, "shape": [2, 3], "data": nested})
    _same(decode_request(body, length).inputs[0], "x", sample)


def _json_value(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def test_nested_data_need_not_follow_shape() -> None:
    # Triton flattens any regular nesting and only checks the element count.
    body, length = _request(
        {"name": "x", "datatype": "INT32", "shape": [3, 2], "data": [[1, 2, 3], [4, 5, 6]]}
    )
    data = decode_request(body, length).inputs[0].data
    np.testing.assert_array_equal(data, np.arange(1, 7, dtype=np.int32).reshape(3, 2))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_response_round_trip(datatype: str, binary: bool) -> None:
    request = InferRequest("r1", (), (), binary_output=binary)
    response = InferResponse("m", "1", None, (Tensor.from_numpy("y", SAMPLES[datatype]),))
    body, headers = encode_response(response, request)
    decoded = decode_response(body, _header_length(headers))
    assert (decoded.model_name, decoded.model_version, decoded.id) == ("m", "1", "r1")
    _same(decoded.outputs[0], "y", SAMPLES[datatype])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("shape", [(0,), (2, 0, 3), ()])
def test_empty_and_scalar_tensors(binary: bool, shape: tuple[int, ...]) -> None:
    for datatype in ("FP32", "BYTES"):
        sample = np.full(shape, b"s" if datatype == "BYTES" else 1.5, dtype=SAMPLES[datatype].dtype)
        body, headers = encode_request([Tensor.from_numpy("x", sample)], binary=binary)
        _same(decode_request(body, _header_length(headers)).inputs[0], "x", sample)


def test_several_binary_inputs_in_order() -> None:
    tensors = [Tensor.from_numpy(f"t{i}", SAMPLES[dt]) for i, dt in enumerate(DATATYPES)]
    body, headers = encode_request(tensors)
    decoded = decode_request(body, _header_length(headers)).inputs
    for i, datatype in enumerate(DATATYPES):
        _same(decoded[i], f"t{i}", SAMPLES[datatype])


def test_binary_data_is_little_endian_row_major() -> None:
    data = np.arange(6, dtype=">i4").reshape(2, 3).T  # big-endian, Fortran-ordered view
    body, headers = encode_request([Tensor.from_numpy("x", data)])
    assert body.endswith(np.ascontiguousarray(data, dtype="<i4").tobytes())
    decoded = decode_request(body, _header_length(headers)).inputs[0].data
    np.testing.assert_array_equal(decoded, data)


def test_unaligned_binary_data_is_copied_aligned() -> None:
    for pad in range(8):
        body, headers = encode_request([Tensor.from_numpy("x" * (pad + 1), SAMPLES["FP64"])])
        data = decode_request(body, _header_length(headers)).inputs[0].data
        assert data.flags.aligned
        np.testing.assert_array_equal(data, SAMPLES["FP64"])


def test_encode_request_json_headers_and_body() -> None:
    body, headers = encode_request(
        [Tensor.from_numpy("x", np.array([1.0], dtype=np.float32))],
        binary=False,
        binary_output=False,
        outputs=["y"],
    )
    assert headers == {"Content-Type": JSON_CONTENT_TYPE}
    assert json.loads(body) == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
    }


def test_encode_request_binary_headers() -> None:
    body, headers = encode_request([Tensor.from_numpy("x", np.array([1.0], dtype=np.float32))])
    assert headers["Content-Type"] == BINARY_CONTENT_TYPE
    length = int(headers[HEADER_LENGTH])
    assert json.loads(body[:length])["parameters"] == {"binary_data_output": True}
    assert body[length:] == np.float32(1.0).tobytes()


# -- output selection -------------------------------------------------------------------------

OUTPUTS = (
    Tensor.from_numpy("a", np.array([1, 2], dtype=np.int64)),
    Tensor.from_numpy("b", np.array([0.5], dtype=np.float32)),
)


def test_response_returns_requested_outputs_in_request_order() -> None:
    request = InferRequest(
        None, (), (RequestedOutput("b", True), RequestedOutput("a", False)), binary_output=False
    )
    body, headers = encode_response(InferResponse("m", None, "id9", OUTPUTS), request)
    length = _header_length(headers)
    assert length is not None
    header = json.loads(body[:length])
    assert header == {
        "model_name": "m",
        "id": "id9",
        "outputs": [
            {"name": "b", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}},
            {"name": "a", "datatype": "INT64", "shape": [2], "data": [1, 2]},
        ],
    }
    assert body[length:] == np.float32(0.5).tobytes()


def test_json_response_has_no_header_length() -> None:
    body, headers = encode_response(
        InferResponse("m", "1", None, OUTPUTS), InferRequest(None, (), (), binary_output=False)
    )
    assert headers == {"Content-Type": JSON_CONTENT_TYPE}
    assert json.loads(body)["outputs"][0]["data"] == [1, 2]


def test_response_for_unknown_requested_output() -> None:
    request = InferRequest(None, (), (RequestedOutput("c", True),), binary_output=False)
    with pytest.raises(InvalidInput, match=r"unknown output 'c'; expected \['a', 'b'\]"):
        encode_response(InferResponse("m", None, None, OUTPUTS), request)


def test_json_response_with_non_utf8_bytes() -> None:
    output = Tensor.from_numpy("s", np.array([b"\xff"], dtype=object))
    with pytest.raises(InvalidInput, match="tensor 's': a BYTES element is not UTF-8"):
        encode_response(
            InferResponse("m", None, None, (output,)), InferRequest(None, (), (), False)
        )


@pytest.mark.parametrize(
    ("body", "binary_output", "outputs"),
    [
        ({}, False, ()),
        ({"parameters": {"binary_data_output": True}}, True, ()),
        (
            {
                "parameters": {"binary_data_output": True},
                "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
            },
            True,
            (RequestedOutput("a", True), RequestedOutput("b", False)),
        ),
        (
            {"outputs": [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}]},
            False,
            (RequestedOutput("a", True), RequestedOutput("b", False)),
        ),
    ],
)
def test_decode_requested_outputs(
    body: dict[str, Any], binary_output: bool, outputs: tuple[RequestedOutput, ...]
) -> None:
    request = decode_request(json.dumps({"inputs": [], **body}).encode(), None)
    assert request.binary_output is binary_output
    assert request.outputs == outputs


# -- tritonclient interop ---------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_tritonclient_request_decodes(datatype: str, binary: bool) -> None:
    sample = SAMPLES[datatype]
    if datatype == "BYTES" and not binary:
        sample = np.array([[b"", b"a", "é".encode()], [b"bc", b"z", b"x"]], dtype=object)
    infer_input = triton.InferInput("x", list(sample.shape), datatype)
    infer_input.set_data_from_numpy(sample, binary_data=binary)
    body, length = triton.InferenceServerClient.generate_request_body(
        [infer_input], request_id="abc"
    )
    request = decode_request(body, length)
    assert request.id == "abc"
    assert request.binary_output is True  # tritonclient asks for binary when no outputs given
    _same(request.inputs[0], "x", sample)


def test_tritonclient_requested_outputs_decode() -> None:
    infer_input = triton.InferInput("x", [1], "FP32")
    infer_input.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    outputs = [
        triton.InferRequestedOutput("a", binary_data=True),
        triton.InferRequestedOutput("b", binary_data=False),
    ]
    body, length = triton.InferenceServerClient.generate_request_body([infer_input], outputs)
    request = decode_request(body, length)
    assert request.outputs == (RequestedOutput("a", True), RequestedOutput("b", False))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_tritonclient_parses_response(datatype: str, binary: bool) -> None:
    sample = SAMPLES[datatype]
    if datatype == "BYTES" and not binary:
        sample = np.array([["", "a", "é"], ["bc", "z", "x"]], dtype=object)
    response = InferResponse("m", "1", None, (Tensor.from_numpy("y", sample),))
    body, headers = encode_response(response, InferRequest("q", (), (), binary_output=binary))
    result = triton.InferResult.from_response_body(body, header_length=_header_length(headers))
    got = result.as_numpy("y")
    if datatype == "BYTES" and not binary:  # Triton's JSON BYTES come back as str
        sample = np.array([["", "a", "é"], ["bc", "z", "x"]], dtype=object)
    else:
        assert got.dtype == sample.dtype
    np.testing.assert_array_equal(got, sample)
    assert result.get_response()["id"] == "q"
    assert result.get_response()["model_version"] == "1"


def test_tritonclient_parses_mixed_response() -> None:
    request = InferRequest(
        None, (), (RequestedOutput("a", False), RequestedOutput("b", True)), binary_output=False
    )
    body, headers = encode_response(InferResponse("m", "1", None, OUTPUTS), request)
    result = triton.InferResult.from_response_body(body, header_length=_header_length(headers))
    np.testing.assert_array_equal(result.as_numpy("a"), OUTPUTS[0].data)
    np.testing.assert_array_equal(result.as_numpy("b"), OUTPUTS[1].data)


# -- rejections -------------------------------------------------------------------------------

X = {"name": "x", "datatype": "FP32", "shape": [2]}
F32 = np.array([1.0, 2.0], dtype=np.float32).tobytes()


def _with(**fields: Any) -> dict[str, Any]:
    return {**X, **fields}


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"not json", None, "request header is not valid JSON"),
        (b"\xff\xfe{}", None, "request header is not valid JSON"),
        (b"[" * 100_000, None, "request header is not valid JSON"),
        (b"[1]", None, "request header must be a JSON object"),
        (b"{}", None, "request: missing 'inputs'"),
        (b'{"inputs": {}}', None, "request: 'inputs' must be a list"),
        (b"{}", 3, "Inference-Header-Content-Length is 3, but the body has 2 bytes"),
        (b"{}", -1, "Inference-Header-Content-Length is -1"),
        (b'{"inputs": []}xxxx', 14, "4 trailing bytes after the binary tensor data"),
        (b'{"inputs": [], "id": 5}', None, "request 'id' must be a string"),
        (b'{"inputs": [], "parameters": []}', None, "request: 'parameters' must be a JSON object"),
        (
            b'{"inputs": [], "parameters": {"binary_data_output": 1}}',
            None,
            "request: parameter 'binary_data_output' must be true or false",
        ),
        (b'{"inputs": [], "outputs": {}}', None, "request: 'outputs' must be a list"),
        (b'{"inputs": [], "outputs": [{}]}', None, "requested output #0: missing 'name'"),
        (
            b'{"inputs": [], "outputs": [{"name": "y", "parameters": {"classification": 3}}]}',
            None,
            "requested output 'y': classification is not supported",
        ),
        (
            b'{"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]}',
            None,
            "requested output 'y': parameter 'binary_data' must be true or false",
        ),
    ],
)
def test_decode_request_rejects_bad_requests(body: bytes, length: int | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_request(body, length)


@pytest.mark.parametrize(
    ("item", "binary", "message"),
    [
        (5, b"", "input #0: must be a JSON object"),
        ({"datatype": "FP32", "shape": [1], "data": [1]}, b"", "input #0: missing 'name'"),
        ({"name": 3, "shape": [1], "data": [1]}, b"", "input #0: missing 'name'"),
        ({"name": "x", "shape": [1], "data": [1]}, b"", "input 'x': missing 'datatype'"),
        (
            {"name": "x", "datatype": "FP32", "data": [1]},
            b"",
            "input 'x': missing 'shape'",
        ),
        (_with(), b"", r"input 'x': missing 'data' \(or parameters.binary_data_size\)"),
        (
            _with(datatype="FP8", data=[1, 2]),
            b"",
            r"input 'x': unknown datatype 'FP8'; expected one of \['BOOL'",
        ),
        (_with(shape=[2, -1], data=[]), b"", r"input 'x': shape \[2, -1\] has a negative dim"),
        (_with(shape="2", data=[1, 2]), b"", "input 'x': 'shape' must be a list of integers"),
        (_with(shape=[1.0], data=[1]), b"", "input 'x': 'shape' must be a list of integers"),
        (_with(shape=[True], data=[1]), b"", "input 'x': 'shape' must be a list of integers"),
        (
            _with(shape=[0, 2**62, 2**62], data=[]),
            b"",
            r"input 'x': shape \[0, 4611686018427387904, 4611686018427387904\] is too large",
        ),
        (_with(data=[1, 2, 3]), b"", r"input 'x': data has 3 elements, shape \[2\] needs 2"),
        (
            _with(shape=[2, 2], data=[[1, 2], [3]]),
            b"",
            r"input 'x': 'data' is not a regular \(non-ragged\) array",
        ),
        (_with(data=5), b"", "input 'x': 'data' must be a list"),
        (_with(data="12"), b"", "input 'x': 'data' must be a list"),
        (
            _with(data=["1.0", "2.0"]),
            b"",
            "input 'x': 'data' holds string values, not valid for FP32",
        ),
        (
            _with(data=[True, False]),
            b"",
            "input 'x': 'data' holds boolean values, not valid for FP32",
        ),
        (
            _with(data=[None, 1]),
            b"",
            "input 'x': 'data' holds mixed or non-numeric values, not valid for FP32",
        ),
        (
            _with(data=[{"a": 1}, 1]),
            b"",
            "input 'x': 'data' holds mixed or non-numeric values, not valid for FP32",
        ),
        (
            _with(datatype="INT32", data=[1.5, 2]),
            b"",
            "input 'x': 'data' holds float values, not valid for INT32",
        ),
        (
            _with(datatype="BOOL", data=[1, 0]),
            b"",
            "input 'x': 'data' holds integer values, not valid for BOOL",
        ),
        (_with(datatype="INT8", data=[1, 300]), b"", "input 'x': a value is out of range for INT8"),
        (
            _with(datatype="UINT8", data=[-1, 1]),
            b"",
            "input 'x': a value is out of range for UINT8",
        ),
        (
            _with(datatype="INT64", data=[1, 2**63]),
            b"",
            "input 'x': a value is out of range for INT64",
        ),
        (_with(datatype="FP16", data=[1, 1e6]), b"", "input 'x': a value is out of range for FP16"),
        (_with(data=[1, 1e300]), b"", "input 'x': a value is out of range for FP32"),
        (
            _with(datatype="BYTES", data=["a", 1]),
            b"",
            "input 'x': BYTES 'data' must hold UTF-8 strings",
        ),
        (
            _with(datatype="BYTES", data=["a", "\ud800"]),
            b"",
            "input 'x': BYTES 'data' must hold UTF-8 strings",
        ),
        (
            _with(datatype="BYTES", data=["a"]),
            b"",
            r"input 'x': data has 1 elements, shape \[2\] needs 2",
        ),
        (_with(parameters=[]), b"", "input 'x': 'parameters' must be a JSON object"),
        (
            _with(parameters={"shared_memory_region": "r"}),
            b"",
            "input 'x': shared memory is not supported",
        ),
        (
            _with(data=[1, 2], parameters={"binary_data_size": 8}),
            F32,
            "input 'x': has both 'data' and parameters.binary_data_size",
        ),
        (
            _with(parameters={"binary_data_size": -8}),
            F32,
            "input 'x': binary_data_size must be a non-negative integer",
        ),
        (
            _with(parameters={"binary_data_size": 8.0}),
            F32,
            "input 'x': binary_data_size must be a non-negative integer",
        ),
        (
            _with(parameters={"binary_data_size": 4}),
            F32[:4],
            r"input 'x': binary_data_size 4, expected 8 \(2 FP32 elements of 4 bytes\)",
        ),
        (
            _with(parameters={"binary_data_size": 8}),
            F32[:4],
            r"input 'x': binary_data_size 8 runs past the end of the body \(4 binary bytes left\)",
        ),
        (_with(parameters={"binary_data_size": 8}), F32 + b"!", "1 trailing bytes"),
        (
            _with(datatype="BOOL", parameters={"binary_data_size": 2}),
            b"\x01\x02",
            "input 'x': BOOL bytes must be 0 or 1",
        ),
        (
            _with(datatype="BYTES", parameters={"binary_data_size": 7}),
            b"\x01\x00\x00\x00a\x00\x00",
            "input 'x': BYTES element 1 has a truncated length",
        ),
        (
            _with(datatype="BYTES", parameters={"binary_data_size": 9}),
            b"\x01\x00\x00\x00a\x09\x00\x00\x00",
            "input 'x': BYTES element 1 runs past its data",
        ),
        (
            _with(datatype="BYTES", parameters={"binary_data_size": 5}),
            b"\x01\x00\x00\x00a",
            r"input 'x': data has 1 elements, shape \[2\] needs 2",
        ),
        (
            _with(datatype="BYTES", parameters={"binary_data_size": 20}),
            b"\x01\x00\x00\x00a" * 4,
            r"input 'x': data has 4 elements, shape \[2\] needs 2",
        ),
        (
            _with(datatype="BYTES", parameters={"binary_data_size": 25}),
            b"\x01\x00\x00\x00a" * 4,
            r"input 'x': binary_data_size 25 runs past the end",
        ),
        (
            _with(datatype="UINT64", data=[-1, 2**64 - 1]),
            b"",
            "input 'x': a value is out of range for UINT64",
        ),
        (
            _with(datatype="INT64", data=[-1, 2**64 - 1]),
            b"",
            "input 'x': a value is out of range for INT64",
        ),
        (
            _with(datatype="UINT64", data=[0.5, 2**64 - 1]),
            b"",
            "input 'x': 'data' holds float values, not valid for UINT64",
        ),
    ],
)
def test_decode_request_rejects_bad_inputs(item: object, binary: bytes, message: str) -> None:
    body, length = _request(item, binary)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=message):
        decode_request(body, length)


def test_binary_size_without_binary_section() -> None:
    body = json.dumps({"inputs": [_with(parameters={"binary_data_size": 8})]}).encode()
    with pytest.raises(InvalidInput, match="binary_data_size 8 runs past the end of the body"):
        decode_request(body, None)


def test_json_accepts_integers_for_floats() -> None:
    body, length = _request(_with(data=[1, 2]))
    np.testing.assert_array_equal(decode_request(body, length).inputs[0].data, [1.0, 2.0])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"model_name": "m"}, "response: missing 'outputs'"),
        ({"outputs": []}, "response: missing 'model_name'"),
        ({"model_name": "m", "outputs": [], "model_version": 1}, "'model_version' must be a"),
        ({"model_name": "m", "outputs": [{"name": "y"}]}, "output 'y': missing 'datatype'"),
    ],
)
def test_decode_response_rejects(doc: dict[str, Any], message: str) -> None:
    body, length = _raw(doc)
    with pytest.raises(InvalidInput, match=message):
        decode_response(body, length)


# -- tensors, metadata, errors ----------------------------------------------------------------


def test_tensor_checks_its_data() -> None:
    with pytest.raises(InvalidInput, match=r"tensor 'x': data has shape \[2\], declared \[3\]"):
        Tensor("x", "FP32", (3,), np.zeros(2, dtype=np.float32))
    with pytest.raises(InvalidInput, match="tensor 'x': data has dtype float64, declared FP32"):
        Tensor("x", "FP32", (2,), np.zeros(2))
    with pytest.raises(TypeError, match="tensor 'x': data must be a numpy array"):
        Tensor("x", "FP32", (2,), [0.0, 0.0])  # type: ignore[arg-type]


def test_bytes_tensors_accept_str_elements() -> None:
    tensor = Tensor.from_numpy("s", np.array(["hé", "x"]))
    assert tensor.datatype == "BYTES"
    for binary in (True, False):
        body, headers = encode_request([tensor], binary=binary)
        data = decode_request(body, _header_length(headers)).inputs[0].data
        assert data.tolist() == ["hé".encode(), b"x"]


def test_bytes_tensor_with_other_objects() -> None:
    tensor = Tensor.from_numpy("s", np.array([1, b"x"], dtype=object))
    with pytest.raises(InvalidInput, match="tensor 's': BYTES elements must be bytes or UTF-8 str"):
        encode_request([tensor])


def test_model_metadata() -> None:
    signature = ModelSignature(
        (TensorSpec("x", "FP32", (-1, 16)),), (TensorSpec("y", "INT64", (-1,)),)
    )
    assert model_metadata("fn", signature) == {
        "name": "fn",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}],
    }


def test_error_body() -> None:
    assert json.loads(error_body("input 'x': bad")) == {"error": "input 'x': bad"}


def test_bytes_length_prefix_is_little_endian_u32() -> None:
    body, headers = encode_request([Tensor.from_numpy("s", np.array([b"abc"], dtype=object))])
    length = _header_length(headers)
    assert body[length:] == struct.pack("<I", 3) + b"abc"


def test_non_finite_floats_in_json() -> None:
    sample = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    body, headers = encode_request([Tensor.from_numpy("x", sample)], binary=False)
    _same(decode_request(body, _header_length(headers)).inputs[0], "x", sample)
    response = InferResponse("m", None, None, (Tensor.from_numpy("y", sample),))
    body, headers = encode_response(response, InferRequest(None, (), (), binary_output=False))
    result = triton.InferResult.from_response_body(body, header_length=_header_length(headers))
    np.testing.assert_array_equal(result.as_numpy("y"), sample)


def test_unaligned_binary_data_stays_a_view_for_a_caller_that_copies_it() -> None:
    unaligned = 0
    for pad in range(8):
        body, headers = encode_request([Tensor.from_numpy("x" * (pad + 1), SAMPLES["FP64"])])
        data = decode_request(body, _header_length(headers), aligned=False).inputs[0].data
        assert np.shares_memory(data, np.frombuffer(body, np.uint8))  # no copy
        unaligned += not data.flags.aligned
        np.testing.assert_array_equal(data, SAMPLES["FP64"])
    assert unaligned  # some header lengths put the data at an odd offset
