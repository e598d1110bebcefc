"""Tests for model signatures: dtype tables, ONNX reading, persistence and validate()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sealfn.errors import InvalidInput, ModelError
from sealfn.oip import Tensor
from sealfn.signature import (
    NUMPY_DTYPES,
    ONNX_ELEM_TYPES,
    ModelSignature,
    TensorSpec,
    datatype_of,
    numpy_dtype,
    signature_from_onnx,
    validate,
)

ONNX_NAMES = {
    "BOOL": "BOOL",
    "UINT8": "UINT8",
    "UINT16": "UINT16",
    "UINT32": "UINT32",
    "UINT64": "UINT64",
    "INT8": "INT8",
    "INT16": "INT16",
    "INT32": "INT32",
    "INT64": "INT64",
    "FP16": "FLOAT16",
    "FP32": "FLOAT",
    "FP64": "DOUBLE",
    "BYTES": "STRING",
}


# -- dtype tables -----------------------------------------------------------------------------


def test_tables_cover_every_oip_datatype() -> None:
    assert set(NUMPY_DTYPES) == set(ONNX_NAMES) == set(ONNX_ELEM_TYPES)


@pytest.mark.parametrize("datatype", list(ONNX_NAMES))
def test_onnx_elem_types_match_onnx(datatype: str) -> None:
    assert ONNX_ELEM_TYPES[datatype] == getattr(TensorProto, ONNX_NAMES[datatype])


@pytest.mark.parametrize("datatype", list(ONNX_NAMES))
def test_numpy_dtype_round_trips(datatype: str) -> None:
    assert datatype_of(numpy_dtype(datatype)) == datatype


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (np.dtype(np.float32), "FP32"),
        (np.dtype(">f4"), "FP32"),  # byte order does not change the datatype
        (np.dtype(np.bool_), "BOOL"),
        (np.dtype(np.float16), "FP16"),
        (np.dtype(np.uint64), "UINT64"),
        (np.dtype("S3"), "BYTES"),
        (np.dtype("U3"), "BYTES"),
        (np.dtype(object), "BYTES"),
    ],
)
def test_datatype_of(dtype: np.dtype[np.generic], datatype: str) -> None:
    assert datatype_of(dtype) == datatype


def test_numpy_dtype_is_little_endian() -> None:
    assert numpy_dtype("FP32") == np.dtype("<f4")
    assert numpy_dtype("INT64") == np.dtype("<i8")


def test_unknown_datatype() -> None:
    with pytest.raises(InvalidInput, match=r"unknown datatype 'BF16'; expected one of \['BOOL'"):
        numpy_dtype("BF16")


def test_numpy_dtype_without_datatype() -> None:
    with pytest.raises(InvalidInput, match="numpy dtype complex128 has no OIP datatype"):
        datatype_of(np.dtype(np.complex128))


# -- specs and signatures ---------------------------------------------------------------------

SIG = ModelSignature(
    inputs=(TensorSpec("x", "FP32", (-1, 16)), TensorSpec("ids", "INT64", (-1,))),
    outputs=(TensorSpec("y", "FP32", (-1, 4)),),
)


def test_tensor_spec_to_dict() -> None:
    assert TensorSpec("x", "FP32", (-1, 16)).to_dict() == {
        "name": "x",
        "datatype": "FP32",
        "shape": [-1, 16],
    }


def test_signature_round_trips_through_dict() -> None:
    assert ModelSignature.from_dict(SIG.to_dict()) == SIG


@pytest.mark.parametrize(
    "data",
    [
        {"inputs": []},
        {"inputs": [], "outputs": "y"},
        {"inputs": [1], "outputs": []},
        {"inputs": [{"name": "x", "datatype": "FP8", "shape": [1]}], "outputs": []},
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}], "outputs": []},
        {"inputs": [{"name": 1, "datatype": "FP32", "shape": [1]}], "outputs": []},
    ],
)
def test_signature_from_bad_dict(data: dict[str, object]) -> None:
    with pytest.raises(ModelError, match="stored signature"):
        ModelSignature.from_dict(data)


@pytest.mark.parametrize(
    ("inputs", "outputs", "batchable"),
    [
        ([(-1, 16)], [(-1, 4)], True),
        ([(-1, 16), (-1,)], [(-1,)], True),
        ([(1, 16)], [(-1, 4)], False),
        ([(-1, 16)], [(4,)], False),
        ([()], [(-1,)], False),  # a scalar has no batch dim
    ],
)
def test_batchable(
    inputs: list[tuple[int, ...]], outputs: list[tuple[int, ...]], batchable: bool
) -> None:
    signature = ModelSignature(
        tuple(TensorSpec(f"i{n}", "FP32", shape) for n, shape in enumerate(inputs)),
        tuple(TensorSpec(f"o{n}", "FP32", shape) for n, shape in enumerate(outputs)),
    )
    assert signature.batchable is batchable


# -- signature_from_onnx ----------------------------------------------------------------------


def _save(tmp_path: Path, graph: onnx.GraphProto) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), path)
    return path


def _linear_graph() -> onnx.GraphProto:
    weights = helper.make_tensor("w", TensorProto.FLOAT, [16, 4], [0.0] * 64)
    return helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "linear",
        # "w" is listed as an input too (old exporters do this): it must not count as one.
        inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [16, 4]),
        ],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[weights],
    )


def test_signature_from_onnx(tmp_path: Path) -> None:
    signature = signature_from_onnx(_save(tmp_path, _linear_graph()))
    assert signature == ModelSignature(
        inputs=(TensorSpec("x", "FP32", (-1, 16)),),
        outputs=(TensorSpec("y", "FP32", (-1, 4)),),
    )
    assert signature.batchable


def test_signature_from_onnx_types_and_unknown_dims(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["out"], to=TensorProto.DOUBLE)],
        "cast",
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, [None, 3])],
        outputs=[helper.make_tensor_value_info("out", TensorProto.DOUBLE, [2, 3])],
    )
    signature = signature_from_onnx(_save(tmp_path, graph))
    assert signature.inputs == (TensorSpec("ids", "INT64", (-1, 3)),)
    assert signature.outputs == (TensorSpec("out", "FP64", (2, 3)),)
    assert not signature.batchable


def test_signature_from_onnx_unsupported_elem_type(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "bf16",
        inputs=[helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [1])],
    )
    with pytest.raises(ModelError, match="model input 'x': ONNX element type BFLOAT16"):
        signature_from_onnx(_save(tmp_path, graph))


def test_signature_from_onnx_non_tensor_input(tmp_path: Path) -> None:
    seq = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("SequenceLength", ["xs"], ["n"])],
        "seq",
        inputs=[seq],
        outputs=[helper.make_tensor_value_info("n", TensorProto.INT64, [])],
    )
    with pytest.raises(ModelError, match="model input 'xs': only tensor types are supported"):
        signature_from_onnx(_save(tmp_path, graph))


def test_signature_from_onnx_unknown_rank(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "rankless",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(ModelError, match="model output 'y': rank is unknown"):
        signature_from_onnx(_save(tmp_path, graph))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a model", "cannot read ONNX model"),
        (bytes(range(256)) * 4, "cannot read ONNX model"),
        (b"", "is not an ONNX model"),
    ],
)
def test_signature_from_corrupt_onnx(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        signature_from_onnx(path)


def test_signature_from_missing_onnx(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"cannot read ONNX model .*missing\.onnx"):
        signature_from_onnx(tmp_path / "missing.onnx")


# -- validate ---------------------------------------------------------------------------------


def _tensor(name: str, shape: tuple[int, ...], dtype: type[np.generic] = np.float32) -> Tensor:
    return Tensor.from_numpy(name, np.zeros(shape, dtype=dtype))


def test_validate_accepts_matching_inputs() -> None:
    validate([_tensor("ids", (3,), np.int64), _tensor("x", (3, 16))], SIG, outputs=["y"])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            [_tensor("z", (1, 16))],
            r"unknown input 'z'; expected \['x', 'ids'\]",
        ),
        ([_tensor("x", (1, 16))], "missing input 'ids'"),
        ([], "missing input 'x', 'ids'"),
        (
            [_tensor("x", (1, 16)), _tensor("x", (1, 16))],
            "duplicate input 'x'",
        ),
        (
            [_tensor("x", (1, 16), np.float64), _tensor("ids", (1,), np.int64)],
            "input 'x': datatype FP64, expected FP32",
        ),
        (
            [_tensor("x", (1, 3)), _tensor("ids", (1,), np.int64)],
            r"input 'x': shape \[1, 3\], expected \[-1, 16\]",
        ),
        (
            [_tensor("x", (16,)), _tensor("ids", (1,), np.int64)],
            r"input 'x': shape \[16\], expected \[-1, 16\]",
        ),
        (
            [_tensor("x", (2, 16)), _tensor("ids", (3,), np.int64)],
            "inputs disagree on batch size: 'x' has 2, 'ids' has 3",
        ),
    ],
)
def test_validate_rejects(inputs: list[Tensor], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate(inputs, SIG)


def test_validate_rejects_unknown_output() -> None:
    inputs = [_tensor("x", (1, 16)), _tensor("ids", (1,), np.int64)]
    with pytest.raises(InvalidInput, match=r"unknown output 'z'; expected \['y'\]"):
        validate(inputs, SIG, outputs=["z"])


def test_validate_fixed_batch_model_allows_any_first_dims() -> None:
    fixed = ModelSignature(
        (TensorSpec("a", "FP32", (2,)), TensorSpec("b", "FP32", (3,))),
        (TensorSpec("y", "FP32", (1,)),),
    )
    validate([_tensor("a", (2,)), _tensor("b", (3,))], fixed)
