"""Weights as a page-aligned external data file: round trip, layout, atomic write, and sharing."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper

from sealfn.errors import ModelError
from sealfn.instance.models import ModelHost
from sealfn.weights import (
    GRAPH_FILE,
    PAGE,
    WEIGHTS_FILE,
    external_tensors,
    externalize,
    residency,
)
from sealfn_testing import IR_VERSION, OPSET

if TYPE_CHECKING:
    from sealfn_testing import Models

MiB = 1 << 20
CONV_CHANNELS = 256  # 3x3 convolutions of 256 -> 256 channels: 2.25 MiB of FP32 weights each
CONV_LAYERS = 6
SHARED_INSTANCES = 2


def _outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)  # type: ignore[no-any-return]


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def build_convnet(path: Path) -> Path:
    """``x`` (B, 256, 8, 8) -> ``y``: CONV_LAYERS 3x3 convs (+ReLU): the NCHWc rewrite's target."""
    rng = np.random.default_rng(3)
    nodes, weights, previous = [], [], "x"
    for layer in range(CONV_LAYERS):
        out = "y" if layer == CONV_LAYERS - 1 else f"r{layer}"
        kernel = (CONV_CHANNELS, CONV_CHANNELS, 3, 3)  # (out, in, kH, kW)
        w = rng.standard_normal(kernel).astype(np.float32) / np.float32(np.sqrt(CONV_CHANNELS * 9))
        weights.append(numpy_helper.from_array(w, f"w{layer}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{layer}"], [f"c{layer}"], pads=[1] * 4))
        nodes.append(helper.make_node("Relu", [f"c{layer}"], [out]))
        previous = out
    shape: list[str | int] = ["batch", CONV_CHANNELS, 8, 8]  # (B, C, H, W)
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def convnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_convnet(tmp_path_factory.mktemp("convnet") / "convnet.onnx")


# ---- round trip and layout -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "slow", "two_outputs"])
def test_outputs_are_identical(models: Models, tmp_path: Path, name: str) -> None:
    original: Path = getattr(models, name)
    graph = externalize(original, tmp_path / "ext")
    assert graph == tmp_path / "ext" / GRAPH_FILE
    session = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    (spec,) = session.get_inputs()
    x = np.random.default_rng(1).standard_normal((3, spec.shape[1]), dtype=np.float32)
    want, got = _outputs(original, {spec.name: x}), _outputs(graph, {spec.name: x})
    assert len(got) == len(want)
    for expected, actual in zip(want, got, strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_conv_outputs_are_identical_when_shared(convnet: Path, tmp_path: Path) -> None:
    graph = externalize(convnet, tmp_path / "ext")
    x = np.random.default_rng(2).standard_normal((2, CONV_CHANNELS, 8, 8), dtype=np.float32)
    (want,) = _outputs(convnet, {"x": x})
    host = ModelHost(intra_op_threads=1, share_weights=True)
    host.load("conv", graph)
    (result,) = host.run_batch("conv", [{"x": x}])
    np.testing.assert_allclose(result["y"], want, rtol=1e-4, atol=1e-5)  # another conv kernel


def test_large_tensors_are_external_and_page_aligned(models: Models, tmp_path: Path) -> None:
    graph = externalize(models.slow, tmp_path / "ext")
    layout = external_tensors(graph)
    original = onnx.load(str(models.slow))
    assert sorted(layout) == sorted(t.name for t in original.graph.initializer)  # 256 KiB each
    assert all(offset % PAGE == 0 for offset, _ in layout.values())
    spans = sorted(layout.values())
    assert all(a + n <= b for (a, n), (b, _) in itertools.pairwise(spans))  # no overlaps
    assert (tmp_path / "ext" / WEIGHTS_FILE).stat().st_size == spans[-1][0] + spans[-1][1]
    arrays = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer}
    with (tmp_path / "ext" / WEIGHTS_FILE).open("rb") as weights:
        for name, (offset, length) in layout.items():
            weights.seek(offset)
            assert weights.read(length) == arrays[name].tobytes()


def test_small_tensors_stay_inline(models: Models, tmp_path: Path) -> None:
    graph = externalize(models.mlp, tmp_path / "ext")
    assert list(external_tensors(graph)) == ["w1"]  # (16, 32) FP32: 2 KiB
    inline = onnx.load(str(graph), load_external_data=False).graph.initializer
    assert {t.name for t in inline if t.HasField("raw_data")} == {"b1", "w2", "b2"}  # < 1 KiB


def test_same_model_gives_same_bytes(models: Models, tmp_path: Path) -> None:
    first = externalize(models.slow, tmp_path / "one")
    second = externalize(models.slow, tmp_path / "two")
    assert _files(first.parent) == _files(second.parent)
    again = externalize(first, tmp_path / "three")  # from external data to the same layout
    assert _files(again.parent) == _files(first.parent)


# ---- atomic write --------------------------------------------------------------------------


def test_fills_an_empty_folder_and_refuses_a_full_one(models: Models, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    externalize(models.mlp, tmp_path / "empty")
    assert sorted(_files(tmp_path / "empty")) == [GRAPH_FILE, WEIGHTS_FILE]
    with pytest.raises(FileExistsError):
        externalize(models.slow, tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


@pytest.mark.parametrize("content", [b"", b"\x08\x07not an onnx model\xff" * 8])
def test_failure_leaves_nothing(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "bad.onnx"
    src.write_bytes(content)
    with pytest.raises(ModelError):
        externalize(src, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]  # no output, no staging folder


@pytest.mark.parametrize("location", ["missing.bin", "../outside.bin", "/etc/hostname"])
def test_external_data_must_be_readable_beside_the_model(tmp_path: Path, location: str) -> None:
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    folder = tmp_path / "upload"
    folder.mkdir()
    w = numpy_helper.from_array(np.zeros((32, 32), dtype=np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": "4096"}.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 32])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="cannot read the weights"):
        externalize(folder / "model.onnx", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- sharing across processes --------------------------------------------------------------

_INSTANCE = """
import sys
from pathlib import Path
import numpy as np
from sealfn.instance.models import ModelHost
host = ModelHost(intra_op_threads=1, share_weights=sys.argv[2] == "shared")
host.load("m", Path(sys.argv[1]))
host.run_batch("m", [{"x": np.ones((1, int(sys.argv[3]), 8, 8), dtype=np.float32)}])
print("ready", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def _instances(graph: Path, mode: str) -> Iterator[list[int]]:
    """SHARED_INSTANCES processes that each load ``graph`` and run it once; yields their pids."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _INSTANCE, str(graph), mode, str(CONV_CHANNELS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(SHARED_INSTANCES)
    ]
    try:
        ready = [proc.stdout.readline() if proc.stdout else "" for proc in procs]
        assert ready == ["ready\n"] * SHARED_INSTANCES
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.communicate(timeout=30)


def _pss(pid: int) -> int:
    return int(psutil.Process(pid).memory_full_info().pss)


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc smaps")
def test_instances_share_the_weights_pages(convnet: Path, tmp_path: Path) -> None:
    graph = externalize(convnet, tmp_path / "ext")
    weights_file = graph.parent / WEIGHTS_FILE
    size = sum(length for _, length in external_tensors(graph).values())
    assert size > 12 * MiB
    with _instances(graph, "shared") as pids:
        for pid in pids:
            mapped = residency(pid, weights_file)
            assert mapped.rss >= 0.95 * size  # every weight read in place from the mapping
            assert mapped.pss <= 0.55 * size  # ... and split with the other instance
        shared_pss = [_pss(pid) for pid in pids]
    with _instances(graph, "private") as pids:
        for pid in pids:  # the NCHWc rewrite copied every conv weight: nothing left mapped
            assert residency(pid, weights_file).rss < 0.05 * size
        private_pss = [_pss(pid) for pid in pids]
    # Each process's own share of memory drops by about half the weights (two instances).
    assert min(private_pss) - max(shared_pss) >= 0.4 * size
