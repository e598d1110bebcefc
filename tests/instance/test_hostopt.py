"""Host-optimized models: built once beside the model, same answers, page-aligned, keyed by host."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sealfn.errors import ModelError
from sealfn.instance import hostopt
from sealfn.instance.models import ModelHost
from sealfn.weights import GRAPH_FILE, PAGE, WEIGHTS_FILE, external_tensors, externalize

RNG = np.random.default_rng(11)


def _conv_net(path: Path) -> Path:
    """Conv 3->16, ReLU, Conv 16->32, global pool, Gemm to 10: what NCHWc and fusions rewrite."""

    def weights(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32) * 0.2, name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    init = [
        weights("w1", (16, 3, 3, 3)),
        weights("b1", (16,)),
        weights("w2", (32, 16, 3, 3)),
        weights("b2", (32,)),
        weights("w3", (10, 32)),
        weights("b3", (10,)),
    ]
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def deployed(tmp_path: Path) -> Path:
    """The conv net as the registry stores it: graph + page-aligned weights in its own folder."""
    return externalize(_conv_net(tmp_path / "convnet.onnx"), tmp_path / "fn")


def _answers(host: ModelHost, name: str, x: np.ndarray) -> np.ndarray:
    (result,) = host.run_batch(name, [{"x": x}])
    return result["y"]


@pytest.mark.parametrize("batch", [1, 3])
def test_same_answers_as_the_model_itself(deployed: Path, batch: int) -> None:
    x = RNG.standard_normal((batch, 3, 16, 16)).astype(np.float32)
    plain = ModelHost(1)
    plain.load("m", deployed)
    optimized = ModelHost(1, host_optimized=True)
    optimized.load("m", deployed)
    np.testing.assert_allclose(_answers(optimized, "m", x), _answers(plain, "m", x), atol=1e-5)


def test_built_once_beside_the_model_page_aligned(deployed: Path) -> None:
    host = ModelHost(1, host_optimized=True)
    host.load("a", deployed)
    folders = [p for p in deployed.parent.iterdir() if p.name.startswith(hostopt.PREFIX)]
    assert len(folders) == 1
    built = folders[0]
    assert sorted(p.name for p in built.iterdir()) == sorted([GRAPH_FILE, WEIGHTS_FILE])
    stamp = (built / WEIGHTS_FILE).stat().st_mtime_ns
    tensors = external_tensors(built / GRAPH_FILE)
    assert tensors, "the optimized weights live in the mapped file"
    assert all(offset % PAGE == 0 for offset, _ in tensors.values())
    host.load("b", deployed)  # a second load (any instance on this host) reuses the file
    assert (built / WEIGHTS_FILE).stat().st_mtime_ns == stamp
    assert not [p for p in deployed.parent.iterdir() if p.name.startswith(".")]  # no staging


def test_the_optimized_graph_is_what_the_session_runs(deployed: Path) -> None:
    """onnxruntime's rewrite is in the saved graph (the NCHWc ops on x86, or at least fusions)."""
    host = ModelHost(1, host_optimized=True)
    host.load("m", deployed)
    (folder,) = [p for p in deployed.parent.iterdir() if p.name.startswith(hostopt.PREFIX)]
    built = folder / GRAPH_FILE
    ops = {
        (n.domain, n.op_type) for n in onnx.load(str(built), load_external_data=False).graph.node
    }
    original = {(n.domain, n.op_type) for n in onnx.load(str(deployed)).graph.node}
    assert ops != original


def test_another_host_or_onnxruntime_builds_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    here = hostopt.fingerprint(ort)
    assert hostopt.fingerprint(SimpleNamespace(__version__="0.0.0")) != here
    monkeypatch.setattr(hostopt, "_cpu_flags", lambda: "some other cpu")
    assert hostopt.fingerprint(ort) != here


def test_two_models_in_one_folder_or_a_replaced_model_never_share_a_copy(tmp_path: Path) -> None:
    """Models that are not in a folder of their own (and a model file replaced in place) each get
    their own copy: serving another model's rewrite would answer with the wrong weights."""
    first = _conv_net(tmp_path / "first.onnx")
    second = _conv_net(tmp_path / "second.onnx")  # same graph, other random weights
    x = RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)
    plain, host = ModelHost(1), ModelHost(1, host_optimized=True)
    for name, path in (("first", first), ("second", second)):
        plain.load(name, path)
        host.load(name, path)
        np.testing.assert_allclose(_answers(host, name, x), _answers(plain, name, x), atol=1e-5)
    assert not np.allclose(_answers(host, "first", x), _answers(host, "second", x))
    copies = {p.name for p in tmp_path.iterdir() if p.name.startswith(hostopt.PREFIX)}
    assert len(copies) == 2
    second.write_bytes(first.read_bytes())  # replaced in place
    host.load("replaced", second)
    np.testing.assert_allclose(
        _answers(host, "replaced", x), _answers(plain, "first", x), atol=1e-5
    )


def test_a_model_that_cannot_be_optimized_loads_as_it_is(
    deployed: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: object) -> None:
        raise ModelError("onnxruntime cannot optimize the model: test")

    monkeypatch.setattr(hostopt, "_rewrite", refuse)
    host = ModelHost(1, host_optimized=True)
    x = RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="sealfn.instance"):
        host.load("m", deployed)
    assert "loads without host optimization" in caplog.text
    plain = ModelHost(1)
    plain.load("m", deployed)
    np.testing.assert_array_equal(_answers(host, "m", x), _answers(plain, "m", x))
    assert not [p for p in deployed.parent.iterdir() if p.name.startswith((".", hostopt.PREFIX))]


def test_sealed_bytes_are_never_written_out(deployed: Path) -> None:
    host = ModelHost(1, host_optimized=True)
    before = sorted(p.name for p in deployed.parent.iterdir())
    host.load("m", _conv_net(deployed.parent.parent / "again.onnx").read_bytes())
    assert sorted(p.name for p in deployed.parent.iterdir()) == before


def test_a_builder_killed_mid_way_leaves_nothing_for_long(deployed: Path) -> None:
    stale = deployed.parent / f".{hostopt.PREFIX}dead.x1"
    stale.mkdir()
    (stale / "partial").write_bytes(b"half a model")
    fresh = deployed.parent / f".{hostopt.PREFIX}busy.x2"  # another builder, still at work
    fresh.mkdir()
    old = time.time() - hostopt.STALE_S - 5
    os.utime(stale, (old, old))
    ModelHost(1, host_optimized=True).load("m", deployed)
    assert not stale.exists()
    assert fresh.exists()
