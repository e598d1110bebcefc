"""KServe v2 Open Inference Protocol codec: JSON and binary-tensor requests and responses."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from sealfn.errors import InvalidInput
from sealfn.signature import NUMPY_DTYPES, ModelSignature, datatype_of, numpy_dtype

Array: TypeAlias = npt.NDArray[Any]
Headers: TypeAlias = dict[str, str]

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # built once: the C one-shot encoder, compact
_LENGTH = struct.Struct("<I")  # the length prefix of a BYTES element in binary data
# What np.array(json_list).dtype.kind may be for each datatype (ints are fine for floats).
_JSON_KINDS = {name: "iu" for name in NUMPY_DTYPES} | {"BOOL": "b"}
_JSON_KINDS |= {"FP16": "iuf", "FP32": "iuf", "FP64": "iuf"}
_KIND_NAMES = {"b": "boolean", "i": "integer", "u": "integer", "f": "float", "U": "string"}


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays is elementwise; compare by identity
class Tensor:
    """A named tensor; ``data`` is already shaped as ``shape`` with ``datatype``'s dtype."""

    name: str
    datatype: str  # OIP datatype
    shape: tuple[int, ...]
    data: Array  # BYTES: an object array of bytes (str and numpy S/U arrays are accepted too)

    def __post_init__(self) -> None:
        if not isinstance(self.data, np.ndarray):
            raise TypeError(f"tensor {self.name!r}: data must be a numpy array")
        if self.data.shape != self.shape:
            raise InvalidInput(
                f"tensor {self.name!r}: data has shape {list(self.data.shape)}, "
                f"declared {list(self.shape)}"
            )
        if datatype_of(self.data.dtype) != self.datatype:
            raise InvalidInput(
                f"tensor {self.name!r}: data has dtype {self.data.dtype}, declared {self.datatype}"
            )

    @classmethod
    def from_numpy(cls, name: str, data: npt.ArrayLike) -> Tensor:
        """A tensor whose datatype and shape are those of ``data``."""
        array = np.asarray(data)
        return cls(name, datatype_of(array.dtype), array.shape, array)


@dataclass(frozen=True)
class RequestedOutput:
    """An output named in a request; ``binary_data`` already folds in ``binary_data_output``."""

    name: str
    binary_data: bool


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request."""

    id: str | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[RequestedOutput, ...]  # empty: return every output
    binary_output: bool  # parameters.binary_data_output: the default for outputs


@dataclass(frozen=True)
class InferResponse:
    """An inference response: the model's outputs."""

    model_name: str
    model_version: str | None
    id: str | None
    outputs: tuple[Tensor, ...]


def decode_request(
    body: bytes | memoryview, header_length: int | None, *, aligned: bool = True
) -> InferRequest:
    """Parse a request body; ``header_length`` is Inference-Header-Content-Length, if sent.

    Binary tensors are views of ``body``; one the header length puts at an offset its element
    size does not divide is copied to aligned memory, unless ``aligned=False`` (a caller that
    copies the data anyway: ResNet-18's 602 KB input was copied twice on the gateway)."""
    doc, reader = _split(body, header_length, "request")
    reader.aligned = aligned
    items = _list_field(doc, "inputs", "request")
    inputs = tuple(_decode_tensor(item, index, "input", reader) for index, item in enumerate(items))
    reader.finish()
    binary_output = _flag(_params(doc, "request"), "binary_data_output", "request", False)
    requested = doc.get("outputs", [])
    if not isinstance(requested, list):
        raise InvalidInput("request: 'outputs' must be a list")
    outputs = tuple(
        _decode_requested(item, index, binary_output) for index, item in enumerate(requested)
    )
    return InferRequest(_optional_str(doc, "id", "request"), inputs, outputs, binary_output)


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, Headers]:
    """The response body and its extra headers.

    Outputs are those the request named (in its order), else all; each binary or JSON as the
    request asked. The id is the response's, else the request's.
    """
    doc: dict[str, object] = {"model_name": response.model_name}
    if response.model_version is not None:
        doc["model_version"] = response.model_version
    request_id = response.id if response.id is not None else request.id
    if request_id is not None:
        doc["id"] = request_id
    chunks: list[memoryview] = []
    selected = _select_outputs(response.outputs, request)
    doc["outputs"] = [_encode_tensor(tensor, binary, chunks) for tensor, binary in selected]
    return _finish(doc, chunks)


def encode_request(
    inputs: Sequence[Tensor],
    *,
    binary: bool = True,
    binary_output: bool = True,
    request_id: str | None = None,
    outputs: Sequence[str] = (),
) -> tuple[bytes, Headers]:
    """A request body and its extra headers (the client side of ``decode_request``)."""
    doc: dict[str, object] = {}
    if request_id is not None:
        doc["id"] = request_id
    chunks: list[memoryview] = []
    doc["inputs"] = [_encode_tensor(tensor, binary, chunks) for tensor in inputs]
    if outputs:
        params = {"binary_data": binary_output}
        doc["outputs"] = [{"name": name, "parameters": params} for name in outputs]
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    return _finish(doc, chunks)


def decode_response(body: bytes, header_length: int | None) -> InferResponse:
    """Parse a response body (the client side of ``encode_response``)."""
    doc, reader = _split(body, header_length, "response")
    items = _list_field(doc, "outputs", "response")
    outputs = tuple(
        _decode_tensor(item, index, "output", reader) for index, item in enumerate(items)
    )
    reader.finish()
    model_name = doc.get("model_name")
    if not isinstance(model_name, str):
        raise InvalidInput("response: missing 'model_name'")
    version = _optional_str(doc, "model_version", "response")
    return InferResponse(model_name, version, _optional_str(doc, "id", "response"), outputs)


def model_metadata(
    name: str,
    signature: ModelSignature,
    versions: Sequence[str] = ("1",),
    platform: str = "onnxruntime_onnx",
) -> dict[str, object]:
    """The body of ``GET /v2/models/{name}``."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [spec.to_dict() for spec in signature.inputs],
        "outputs": [spec.to_dict() for spec in signature.outputs],
    }


def error_body(message: str) -> bytes:
    """The OIP error body: ``{"error": message}``."""
    return _ENCODER.encode({"error": message}).encode()


# -- decoding ---------------------------------------------------------------------------------


class _BinaryReader:
    """Hands out consecutive slices of the binary section, in tensor order."""

    def __init__(self, binary: memoryview) -> None:
        self._binary = binary
        self._offset = 0
        self.aligned = True  # copy tensors that would be unaligned views

    def take(self, size: int, label: str) -> memoryview:
        end = self._offset + size
        if end > len(self._binary):
            left = len(self._binary) - self._offset
            raise InvalidInput(
                f"{label}: binary_data_size {size} runs past the end of the body "
                f"({left} binary bytes left)"
            )
        chunk = self._binary[self._offset : end]
        self._offset = end
        return chunk

    def finish(self) -> None:
        left = len(self._binary) - self._offset
        if left:
            raise InvalidInput(f"{left} trailing bytes after the binary tensor data")


def _split(
    body: bytes | memoryview, header_length: int | None, what: str
) -> tuple[dict[str, Any], _BinaryReader]:
    if header_length is None:
        header_length = len(body)
    elif not 0 <= header_length <= len(body):
        raise InvalidInput(
            f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes"
        )
    try:
        doc = json.loads(bytes(body[:header_length]))  # copies the JSON header only
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidInput(f"{what} header is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInput(f"{what} header must be a JSON object")
    return doc, _BinaryReader(memoryview(body)[header_length:])


def _decode_tensor(item: object, index: int, kind: str, reader: _BinaryReader) -> Tensor:
    if not isinstance(item, dict):
        raise InvalidInput(f"{kind} #{index}: must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"{kind} #{index}: missing 'name'")
    label = f"{kind} {name!r}"
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"{label}: missing 'datatype'")
    _check_datatype(datatype, label)
    shape = _shape(item.get("shape"), label)
    size = _binary_size(_params(item, label), label)
    if size is None:
        if "data" not in item:
            raise InvalidInput(f"{label}: missing 'data' (or parameters.binary_data_size)")
        data = _from_json(item["data"], datatype, shape, label)
    elif "data" in item:
        raise InvalidInput(f"{label}: has both 'data' and parameters.binary_data_size")
    else:
        data = _from_binary(reader, size, datatype, shape, label)
    return Tensor(name, datatype, shape, data)


def _check_datatype(datatype: str, label: str) -> None:
    try:
        numpy_dtype(datatype)
    except InvalidInput as exc:
        raise InvalidInput(f"{label}: {exc.message}") from None


def _shape(shape: object, label: str) -> tuple[int, ...]:
    if shape is None:
        raise InvalidInput(f"{label}: missing 'shape'")
    if not isinstance(shape, list) or not all(type(dim) is int for dim in shape):
        raise InvalidInput(f"{label}: 'shape' must be a list of integers, got {shape!r}")
    if any(dim < 0 for dim in shape):
        raise InvalidInput(f"{label}: shape {shape} has a negative dim")
    return tuple(shape)


def _params(item: dict[str, Any], label: str) -> dict[str, Any]:
    params = item.get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidInput(f"{label}: 'parameters' must be a JSON object")
    if "shared_memory_region" in params:
        raise InvalidInput(f"{label}: shared memory is not supported")
    return params


def _binary_size(params: dict[str, Any], label: str) -> int | None:
    size = params.get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise InvalidInput(f"{label}: binary_data_size must be a non-negative integer")
    return size


def _flag(params: dict[str, Any], key: str, label: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{label}: parameter {key!r} must be true or false")
    return value


def _optional_str(doc: dict[str, Any], key: str, what: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{what} {key!r} must be a string")
    return value


def _list_field(doc: dict[str, Any], key: str, what: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        raise InvalidInput(f"{what}: missing {key!r}")
    if not isinstance(value, list):
        raise InvalidInput(f"{what}: {key!r} must be a list")
    return value


def _decode_requested(item: object, index: int, binary_output: bool) -> RequestedOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidInput(f"requested output #{index}: missing 'name'")
    label = f"requested output {item['name']!r}"
    params = _params(item, label)
    if "classification" in params:
        raise InvalidInput(f"{label}: classification is not supported")
    return RequestedOutput(item["name"], _flag(params, "binary_data", label, binary_output))


def _from_json(data: object, datatype: str, shape: tuple[int, ...], label: str) -> Array:
    dtype = NUMPY_DTYPES[datatype]
    if not isinstance(data, list):
        raise InvalidInput(f"{label}: 'data' must be a list")
    count = math.prod(shape)
    if datatype == "BYTES":
        return _object_array(_json_bytes(data, label), count, shape, label)
    try:
        raw = np.array(data)  # nested lists must be regular; their nesting need not match shape
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{label}: 'data' is not a regular (non-ragged) array") from exc
    _check_count(raw.size, count, shape, label)
    if count == 0:
        return _empty(shape, dtype, label)
    if raw.dtype.kind == "f" and dtype.kind in "iu" and _all_ints(data):
        raw = _exact_ints(data, dtype, datatype, label)  # numpy made floats of int64 + uint64
    if raw.dtype.kind not in _JSON_KINDS[datatype]:
        found = _KIND_NAMES.get(raw.dtype.kind, "mixed or non-numeric")
        raise InvalidInput(f"{label}: 'data' holds {found} values, not valid for {datatype}")
    return _narrow(raw, dtype, datatype, label).reshape(shape)


def _narrow(raw: Array, dtype: np.dtype[Any], datatype: str, label: str) -> Array:
    """Cast JSON numbers to ``dtype``, rejecting values that do not fit."""
    if dtype.kind in "iu" and raw.dtype != dtype:
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInput(f"{label}: a value is out of range for {datatype}")
    elif dtype.kind == "f" and dtype.itemsize < 8:
        try:
            with np.errstate(over="raise"):
                return raw.astype(dtype)
        except FloatingPointError:
            raise InvalidInput(f"{label}: a value is out of range for {datatype}") from None
    return raw.astype(dtype, copy=False)


def _all_ints(data: list[Any]) -> bool:
    return all(type(item) is int for item in _flatten(data))


def _exact_ints(data: list[Any], dtype: np.dtype[Any], datatype: str, label: str) -> Array:
    try:
        return np.array(data, dtype=dtype)
    except OverflowError:
        raise InvalidInput(f"{label}: a value is out of range for {datatype}") from None


def _json_bytes(data: list[Any], label: str) -> list[bytes]:
    try:
        return [item.encode() for item in _flatten(data)]
    except (AttributeError, UnicodeEncodeError):  # not a str, or a lone surrogate
        raise InvalidInput(f"{label}: BYTES 'data' must hold UTF-8 strings") from None


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


def _from_binary(
    reader: _BinaryReader,
    size: int,
    datatype: str,
    shape: tuple[int, ...],
    label: str,
) -> Array:
    dtype = NUMPY_DTYPES[datatype]
    count = math.prod(shape)
    if datatype == "BYTES":
        return _object_array(_unpack_bytes(reader.take(size, label), label), count, shape, label)
    expected = count * dtype.itemsize
    if size != expected:
        raise InvalidInput(
            f"{label}: binary_data_size {size}, expected {expected} "
            f"({count} {datatype} elements of {dtype.itemsize} bytes)"
        )
    chunk = reader.take(size, label)
    if count == 0:
        return _empty(shape, dtype, label)
    array = np.frombuffer(chunk, dtype=dtype).reshape(shape)  # zero-copy, read-only
    if reader.aligned and not array.flags.aligned:  # the header puts tensors at any offset
        array = array.copy()
    if datatype == "BOOL" and array.view(np.uint8).max() > 1:
        raise InvalidInput(f"{label}: BOOL bytes must be 0 or 1")
    return array


def _unpack_bytes(chunk: memoryview, label: str) -> list[bytes]:
    items: list[bytes] = []
    offset, end = 0, len(chunk)
    while offset < end:
        if offset + _LENGTH.size > end:
            raise InvalidInput(f"{label}: BYTES element {len(items)} has a truncated length")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += _LENGTH.size
        if offset + length > end:
            raise InvalidInput(f"{label}: BYTES element {len(items)} runs past its data")
        items.append(bytes(chunk[offset : offset + length]))
        offset += length
    return items


def _object_array(items: list[bytes], count: int, shape: tuple[int, ...], label: str) -> Array:
    _check_count(len(items), count, shape, label)
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def _check_count(found: int, count: int, shape: tuple[int, ...], label: str) -> None:
    if found != count:
        raise InvalidInput(f"{label}: data has {found} elements, shape {list(shape)} needs {count}")


def _empty(shape: tuple[int, ...], dtype: np.dtype[Any], label: str) -> Array:
    try:
        return np.empty(shape, dtype=dtype)
    except ValueError as exc:  # e.g. [0, 2**62, 2**62]: numpy cannot size it even when empty
        raise InvalidInput(f"{label}: shape {list(shape)} is too large") from exc


# -- encoding ---------------------------------------------------------------------------------


def _select_outputs(
    outputs: tuple[Tensor, ...], request: InferRequest
) -> list[tuple[Tensor, bool]]:
    """The outputs to return, each with whether it goes binary."""
    if not request.outputs:
        return [(tensor, request.binary_output) for tensor in outputs]
    by_name = {tensor.name: tensor for tensor in outputs}
    selected = []
    for wanted in request.outputs:
        tensor = by_name.get(wanted.name)
        if tensor is None:
            raise InvalidInput(f"unknown output {wanted.name!r}; expected {list(by_name)}")
        selected.append((tensor, wanted.binary_data))
    return selected


def _encode_tensor(tensor: Tensor, binary: bool, chunks: list[memoryview]) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": list(tensor.shape),
    }
    if binary:
        raw = _to_binary(tensor)
        chunks.append(raw)
        entry["parameters"] = {"binary_data_size": raw.nbytes}
    else:
        entry["data"] = _to_json(tensor)
    return entry


def _to_binary(tensor: Tensor) -> memoryview:
    """The tensor's wire bytes (no copy when the data is already little-endian and C-ordered)."""
    if tensor.datatype == "BYTES":
        items = _bytes_items(tensor)
        packed = b"".join([part for item in items for part in (_LENGTH.pack(len(item)), item)])
        return memoryview(packed)
    wire = np.ascontiguousarray(tensor.data, dtype=NUMPY_DTYPES[tensor.datatype])
    return wire.reshape(-1).view(np.uint8).data


def _to_json(tensor: Tensor) -> list[Any]:
    if tensor.datatype != "BYTES":
        flat: list[Any] = tensor.data.ravel().tolist()  # Python scalars, row-major
        return flat
    try:
        return [item.decode() for item in _bytes_items(tensor)]
    except UnicodeDecodeError:
        raise InvalidInput(
            f"tensor {tensor.name!r}: a BYTES element is not UTF-8; ask for binary data"
        ) from None


def _bytes_items(tensor: Tensor) -> list[bytes]:
    items: list[Any] = tensor.data.ravel().tolist()
    try:
        return [item if isinstance(item, bytes) else item.encode() for item in items]
    except (AttributeError, UnicodeEncodeError):
        raise InvalidInput(
            f"tensor {tensor.name!r}: BYTES elements must be bytes or UTF-8 str"
        ) from None


def _finish(doc: dict[str, object], chunks: list[memoryview]) -> tuple[bytes, Headers]:
    header = _ENCODER.encode(doc).encode()
    if not chunks:
        return header, {"Content-Type": JSON_CONTENT_TYPE}
    headers = {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(header))}
    return b"".join([header, *chunks]), headers
