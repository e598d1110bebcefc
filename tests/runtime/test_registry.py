"""The on-disk registry: save, load_all, remove, atomic replace, and no partial state left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from onnx import TensorProto, helper

from sealfn.config import FunctionSpec
from sealfn.errors import ConfigError, ModelError, NotFound
from sealfn.runtime.registry import MODEL_FILE, SPEC_FILE, Registry

if TYPE_CHECKING:
    from sealfn_testing import Models


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "state")


def _entries(registry: Registry) -> list[str]:
    return sorted(p.name for p in registry.root.iterdir())


def test_save_writes_model_and_record(registry: Registry, models: Models) -> None:
    spec = FunctionSpec("mlp", max_batch=4, keep_alive_s=2.5)
    deployment = registry.save(spec, models.mlp.read_bytes())
    assert deployment.spec == spec
    assert deployment.model_path == registry.root / "mlp" / MODEL_FILE
    assert deployment.model_path.read_bytes() == models.mlp.read_bytes()
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


def test_replace_swaps_the_whole_folder(registry: Registry, models: Models) -> None:
    registry.save(FunctionSpec("f", max_batch=2), models.mlp.read_bytes())
    replaced = registry.save(FunctionSpec("f", max_batch=3), models.two_outputs.read_bytes())
    assert replaced.model_path.read_bytes() == models.two_outputs.read_bytes()
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


def test_failed_replace_keeps_the_old_version(registry: Registry, models: Models) -> None:
    registry.save(FunctionSpec("f", max_batch=2), models.mlp.read_bytes())
    with pytest.raises(ModelError):
        registry.save(FunctionSpec("f", max_batch=5), models.corrupt.read_bytes())
    (loaded,) = registry.load_all()
    assert loaded.spec.max_batch == 2
    assert loaded.model_path.read_bytes() == models.mlp.read_bytes()
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
