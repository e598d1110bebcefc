"""The on-disk registry: save, load_all, remove, atomic replace, and no partial state left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from onnx import TensorProto, helper

from sealfn.config import FunctionSpec
from sealfn.errors import ConfigError, ModelError, NotFound
from sealfn.instance.models import ModelHost
from sealfn.runtime.modelcheck import check_loads
from sealfn.runtime.registry import MODEL_FILE, SEALED_FILE, SPEC_FILE, Registry
from sealfn.sealed_model import generate_model_key, seal_model
from sealfn.weights import PAGE, WEIGHTS_FILE, external_tensors, externalize

if TYPE_CHECKING:
    from sealfn_testing import Models


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "state")


def _entries(registry: Registry) -> list[str]:
    return sorted(p.name for p in registry.root.iterdir())


def _stored(folder: Path) -> dict[str, bytes]:
    """The model files of a deployment folder (the record aside)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != SPEC_FILE}


def _converted(model: Path, tmp_path: Path) -> dict[str, bytes]:
    """What deploying ``model`` must store: its graph + weights pair (the conversion is stable)."""
    return _stored(externalize(model, tmp_path / f"expected-{model.stem}").parent)


def test_save_writes_model_and_record(registry: Registry, models: Models, tmp_path: Path) -> None:
    spec = FunctionSpec("mlp", max_batch=4, keep_alive_s=2.5)
    deployment = registry.save(spec, models.mlp.read_bytes())
    assert deployment.spec == spec
    assert deployment.model_path == registry.root / "mlp" / MODEL_FILE
    assert _stored(deployment.model_path.parent) == _converted(models.mlp, tmp_path)
    assert [t.name for t in deployment.signature.inputs] == ["input"]
    assert deployment.signature.inputs[0].shape == (-1, 16)
    record = json.loads((registry.root / "mlp" / SPEC_FILE).read_text())
    assert record["spec"]["max_batch"] == 4
    assert _entries(registry) == ["mlp"]


def test_load_all_returns_what_was_saved(registry: Registry, models: Models) -> None:
    saved = [
        registry.save(FunctionSpec("b-pair", min_instances=1), models.two_outputs.read_bytes()),
        registry.save(FunctionSpec("a-mlp"), models.mlp.read_bytes()),
    ]
    again = Registry(registry.root.parent)  # as after a restart
    loaded = list(again.load_all())
    assert [d.spec.name for d in loaded] == ["a-mlp", "b-pair"]
    assert sorted(loaded, key=lambda d: d.spec.name) == sorted(saved, key=lambda d: d.spec.name)


def test_replace_swaps_the_whole_folder(registry: Registry, models: Models, tmp_path: Path) -> None:
    registry.save(FunctionSpec("f", max_batch=2), models.mlp.read_bytes())
    replaced = registry.save(FunctionSpec("f", max_batch=3), models.two_outputs.read_bytes())
    assert _stored(replaced.model_path.parent) == _converted(models.two_outputs, tmp_path)
    assert [t.name for t in replaced.signature.inputs] == ["x"]
    (loaded,) = registry.load_all()
    assert loaded.spec.max_batch == 3
    assert _entries(registry) == ["f"]  # no staging or retired folders left behind


def test_corrupt_model_leaves_no_folder(registry: Registry, models: Models) -> None:
    with pytest.raises(ModelError):
        registry.save(FunctionSpec("bad"), models.corrupt.read_bytes())
    with pytest.raises(ModelError):
        registry.save(FunctionSpec("bad"), b"")
    assert _entries(registry) == []


def test_failed_replace_keeps_the_old_version(
    registry: Registry, models: Models, tmp_path: Path
) -> None:
    registry.save(FunctionSpec("f", max_batch=2), models.mlp.read_bytes())
    with pytest.raises(ModelError):
        registry.save(FunctionSpec("f", max_batch=5), models.corrupt.read_bytes())
    (loaded,) = registry.load_all()
    assert loaded.spec.max_batch == 2
    assert _stored(loaded.model_path.parent) == _converted(models.mlp, tmp_path)
    assert _entries(registry) == ["f"]


def test_remove(registry: Registry, models: Models) -> None:
    registry.save(FunctionSpec("f"), models.mlp.read_bytes())
    registry.remove("f")
    assert _entries(registry) == []
    assert list(registry.load_all()) == []
    with pytest.raises(NotFound, match="'f' is not deployed"):
        registry.remove("f")
    with pytest.raises(ConfigError):
        registry.remove("../outside")


def test_cleanup_removes_staging_folders_only(registry: Registry, models: Models) -> None:
    registry.save(FunctionSpec("keep"), models.mlp.read_bytes())
    for leftover in (".keep.abc123", ".keep.old.xyz"):  # a crash mid-save / mid-replace
        (registry.root / leftover / "old").mkdir(parents=True)
        (registry.root / leftover / "old" / MODEL_FILE).write_bytes(b"partial")
    assert len(list(registry.load_all())) == 1  # hidden folders are never loaded
    registry.cleanup()
    assert _entries(registry) == ["keep"]


def test_load_all_skips_folders_without_a_record(registry: Registry, models: Models) -> None:
    registry.save(FunctionSpec("f"), models.mlp.read_bytes())
    (registry.root / "stray").mkdir()
    assert [d.spec.name for d in registry.load_all()] == ["f"]


@pytest.mark.parametrize(
    "record",
    [
        "{not json",
        "[]",
        json.dumps({"spec": {"name": "f"}}),  # no signature
        json.dumps({"spec": {"name": "f", "max_batch": 0}, "signature": {}}),
    ],
)
def test_unreadable_record_is_skipped_not_fatal(
    registry: Registry, models: Models, record: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry.save(FunctionSpec("good"), models.mlp.read_bytes())
    folder = registry.root / "f"
    folder.mkdir()
    (folder / SPEC_FILE).write_text(record)
    with caplog.at_level("ERROR", logger="sealfn.registry"):
        loaded = list(registry.load_all())
    assert [d.spec.name for d in loaded] == ["good"]
    assert "skipping deployment f" in caplog.text


def test_model_onnxruntime_cannot_load_is_refused(registry: Registry, tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["input"], ["output"], domain="example.invalid")],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.invalid", 1)],
    )
    with pytest.raises(ModelError, match="cannot be loaded"):
        registry.save(FunctionSpec("unloadable"), model.SerializeToString())
    assert [p.name for p in registry.root.iterdir()] == []


# ---- weights stored apart, so instances can share them -------------------------------------


@pytest.mark.parametrize("share_weights", [False, True])
def test_deploy_stores_graph_and_weights_that_load(
    registry: Registry, models: Models, share_weights: bool
) -> None:
    deployment = registry.save(FunctionSpec("slow"), models.slow.read_bytes())
    folder = deployment.model_path.parent
    assert sorted(p.name for p in folder.iterdir()) == sorted([MODEL_FILE, SPEC_FILE, WEIGHTS_FILE])
    layout = external_tensors(deployment.model_path)
    assert len(layout) == 50 and all(offset % PAGE == 0 for offset, _ in layout.values())
    assert deployment.model_path.stat().st_size < 64 << 10  # the graph alone: 12.5 MiB moved out
    x = np.random.default_rng(4).standard_normal((2, 256), dtype=np.float32)
    results = []
    for path in (models.slow, deployment.model_path):
        host = ModelHost(intra_op_threads=1, share_weights=share_weights)
        host.load("slow", path)
        results.append(host.run_batch("slow", [{"input": x}])[0]["output"])
    np.testing.assert_array_equal(results[1], results[0])


def test_checks_run_on_the_converted_files(tmp_path: Path, models: Models) -> None:
    checked: list[tuple[str, list[str], int]] = []

    def check(path: Path) -> None:  # the real check, noting what it was given
        beside = sorted(p.name for p in path.parent.iterdir())
        checked.append((path.name, beside, len(external_tensors(path))))
        check_loads(path)

    registry = Registry(tmp_path / "state", check=check)
    deployment = registry.save(FunctionSpec("slow"), models.slow.read_bytes())
    assert checked == [(MODEL_FILE, [MODEL_FILE, WEIGHTS_FILE], 50)]
    assert [t.name for t in deployment.signature.inputs] == ["input"]


def test_sealed_model_is_stored_as_it_came(registry: Registry, models: Models) -> None:
    sealed = seal_model(models.mlp.read_bytes(), generate_model_key(), "secret")
    spec = FunctionSpec("secret", sealed=True, keyservice="http://127.0.0.1:1")
    deployment = registry.save(spec, sealed)
    assert deployment.model_path == registry.root / "secret" / SEALED_FILE
    assert _stored(deployment.model_path.parent) == {SEALED_FILE: sealed}  # no weights apart


def test_model_referring_to_outside_data_is_refused(registry: Registry, tmp_path: Path) -> None:
    weights = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], vals=[0.0] * 16)
    weights.ClearField("float_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "../../secret.bin", "offset": "0", "length": "64"}.items():
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "secret.bin").write_bytes(b"\1" * 64)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match="cannot read the weights"):
        registry.save(FunctionSpec("outside"), model.SerializeToString())
    assert _entries(registry) == []
