"""Model signatures (named, typed tensor specs), the OIP/numpy/ONNX dtype tables and validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from sealfn.errors import InvalidInput, ModelError

if TYPE_CHECKING:
    from sealfn.oip import Tensor

# OIP datatype, numpy dtype (little-endian, as on the wire), ONNX TensorProto elem type.
# The ONNX numbers are onnx.TensorProto.DataType values, spelled out so that importing this
# module (the gateway does, per request) does not import onnx.
_TABLE: tuple[tuple[str, str, int], ...] = (
    ("BOOL", "|b1", 9),
    ("UINT8", "|u1", 2),
    ("UINT16", "<u2", 4),
    ("UINT32", "<u4", 12),
    ("UINT64", "<u8", 13),
    ("INT8", "|i1", 3),
    ("INT16", "<i2", 5),
    ("INT32", "<i4", 6),
    ("INT64", "<i8", 7),
    ("FP16", "<f2", 10),
    ("FP32", "<f4", 1),
    ("FP64", "<f8", 11),
    ("BYTES", "|O", 8),  # elements are Python bytes; ONNX STRING
)

NUMPY_DTYPES: Mapping[str, np.dtype[Any]] = {name: np.dtype(code) for name, code, _ in _TABLE}
"""OIP datatype -> numpy dtype; BYTES tensors are object arrays of ``bytes``."""

ONNX_ELEM_TYPES: Mapping[str, int] = {name: elem for name, _, elem in _TABLE}
"""OIP datatype -> ONNX ``TensorProto`` element type."""

_DATATYPE_BY_ONNX = {elem: name for name, _, elem in _TABLE}
# Keyed by (kind, itemsize) so that a big-endian or non-canonical dtype still maps.
_DATATYPE_BY_KIND = {(dt.kind, dt.itemsize): name for name, dt in NUMPY_DTYPES.items()}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of an OIP datatype; an unknown datatype is InvalidInput."""
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(f"unknown datatype {datatype!r}; expected one of {list(NUMPY_DTYPES)}")
    return dtype


def datatype_of(array_dtype: np.dtype[Any]) -> str:
    """The OIP datatype of a numpy dtype; str/bytes/object arrays are BYTES."""
    if array_dtype.kind in "OSU":
        return "BYTES"
    datatype = _DATATYPE_BY_KIND.get((array_dtype.kind, array_dtype.itemsize))
    if datatype is None:
        raise InvalidInput(f"numpy dtype {array_dtype} has no OIP datatype")
    return datatype


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a model; -1 in ``shape`` is a dynamic dim."""

    name: str
    datatype: str  # OIP datatype: "FP32", "INT64", ...
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        """The OIP model-metadata form: ``{"name", "datatype", "shape"}``."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TensorSpec:
        """Inverse of ``to_dict``; a malformed entry is ModelError."""
        name, datatype, shape = data.get("name"), data.get("datatype"), data.get("shape")
        if not isinstance(name, str) or datatype not in NUMPY_DTYPES or not _is_dims(shape):
            raise ModelError(f"invalid tensor spec in stored signature: {dict(data)!r}")
        return cls(name, str(datatype), tuple(shape))

    def matches(self, shape: tuple[int, ...]) -> bool:
        """Whether a concrete shape fits this spec (same rank, equal where not dynamic)."""
        if len(shape) != len(self.shape):
            return False
        return all(want in (-1, got) for want, got in zip(self.shape, shape, strict=True))


def _is_dims(shape: object) -> TypeGuard[list[int]]:
    return isinstance(shape, list) and all(type(d) is int and d >= -1 for d in shape)


@dataclass(frozen=True)
class ModelSignature:
    """A model's inputs and outputs, in the model's order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form, for persistence."""
        return {
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ModelSignature:
        """Inverse of ``to_dict``; a malformed signature is ModelError."""
        inputs, outputs = data.get("inputs"), data.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise ModelError("invalid stored signature: needs 'inputs' and 'outputs' lists")
        if not all(isinstance(item, Mapping) for item in [*inputs, *outputs]):
            raise ModelError("invalid stored signature: tensor specs must be objects")
        return cls(
            tuple(TensorSpec.from_dict(item) for item in inputs),
            tuple(TensorSpec.from_dict(item) for item in outputs),
        )

    @property
    def batchable(self) -> bool:
        """Whether every input and output has a dynamic (-1) first dim."""
        specs = (*self.inputs, *self.outputs)
        return bool(specs) and all(spec.shape[:1] == (-1,) for spec in specs)

    @cached_property
    def input_specs(self) -> Mapping[str, TensorSpec]:
        """Inputs by name."""
        return {spec.name: spec for spec in self.inputs}

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        """Output names, in the model's order."""
        return tuple(spec.name for spec in self.outputs)


def validate(
    inputs: Sequence[Tensor], signature: ModelSignature, outputs: Sequence[str] = ()
) -> None:
    """Raise InvalidInput unless ``inputs`` (and requested ``outputs``) fit ``signature``."""
    specs = signature.input_specs
    seen: set[str] = set()
    for tensor in inputs:
        spec = specs.get(tensor.name)
        if spec is None:
            raise InvalidInput(f"unknown input {tensor.name!r}; expected {list(specs)}")
        if tensor.name in seen:
            raise InvalidInput(f"duplicate input {tensor.name!r}")
        seen.add(tensor.name)
        _check_tensor(tensor, spec)
    missing = [name for name in specs if name not in seen]
    if missing:
        raise InvalidInput(f"missing input {', '.join(map(repr, missing))}")
    if signature.batchable:
        _check_batch(inputs)
    for name in outputs:
        if name not in signature.output_names:
            raise InvalidInput(f"unknown output {name!r}; expected {list(signature.output_names)}")


def _check_tensor(tensor: Tensor, spec: TensorSpec) -> None:
    if tensor.datatype != spec.datatype:
        raise InvalidInput(
            f"input {tensor.name!r}: datatype {tensor.datatype}, expected {spec.datatype}"
        )
    if not spec.matches(tensor.shape):
        raise InvalidInput(
            f"input {tensor.name!r}: shape {list(tensor.shape)}, expected {list(spec.shape)}"
        )


def _check_batch(inputs: Sequence[Tensor]) -> None:
    first = inputs[0]
    for tensor in inputs[1:]:
        if tensor.shape[0] != first.shape[0]:
            raise InvalidInput(
                f"inputs disagree on batch size: {first.name!r} has {first.shape[0]}, "
                f"{tensor.name!r} has {tensor.shape[0]}"
            )


def signature_from_onnx(path: Path) -> ModelSignature:
    """Read a model's signature from its ONNX graph (initializers are not inputs)."""
    graph = _load_onnx(path).graph
    initializers = {init.name for init in graph.initializer}
    return ModelSignature(
        inputs=tuple(
            _spec_of(value, "input") for value in graph.input if value.name not in initializers
        ),
        outputs=tuple(_spec_of(value, "output") for value in graph.output),
    )


_DATATYPE_BY_ORT = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def signature_from_session(session: Any) -> ModelSignature:
    """A signature from a loaded onnxruntime session (no second parse of the model's bytes)."""

    def spec(arg: Any, kind: str) -> TensorSpec:
        datatype = _DATATYPE_BY_ORT.get(arg.type)
        if datatype is None:
            raise ModelError(f"model {kind} {arg.name!r}: type {arg.type} is not supported")
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
        return TensorSpec(arg.name, datatype, shape)

    return ModelSignature(
        inputs=tuple(spec(arg, "input") for arg in session.get_inputs()),
        outputs=tuple(spec(arg, "output") for arg in session.get_outputs()),
    )


def _load_onnx(path: Path) -> Any:
    import onnx

    try:
        model = onnx.load(path, format="protobuf", load_external_data=False)
    except Exception as exc:  # OSError, protobuf's DecodeError, ...: any failure to read it
        raise ModelError(f"cannot read ONNX model {str(path)!r}: {exc}") from exc
    # Protobuf parses an empty file (and some junk) as an empty ModelProto.
    if model.ir_version <= 0 or not model.graph.output:
        raise ModelError(f"{str(path)!r} is not an ONNX model (no IR version or no outputs)")
    return model


def _spec_of(value: Any, kind: str) -> TensorSpec:
    if value.type.WhichOneof("value") != "tensor_type":
        raise ModelError(f"model {kind} {value.name!r}: only tensor types are supported")
    tensor_type = value.type.tensor_type
    datatype = _DATATYPE_BY_ONNX.get(tensor_type.elem_type)
    if datatype is None:
        elem = _onnx_type_name(tensor_type.elem_type)
        raise ModelError(f"model {kind} {value.name!r}: ONNX element type {elem} is not supported")
    if not tensor_type.HasField("shape"):
        raise ModelError(f"model {kind} {value.name!r}: rank is unknown")
    # dim_param (symbolic) and unset dims are dynamic.
    shape = tuple(
        dim.dim_value if dim.WhichOneof("value") == "dim_value" else -1
        for dim in tensor_type.shape.dim
    )
    return TensorSpec(value.name, datatype, shape)


def _onnx_type_name(elem_type: int) -> str:
    import onnx

    try:
        return str(onnx.TensorProto.DataType.Name(elem_type))
    except ValueError:
        return str(elem_type)
