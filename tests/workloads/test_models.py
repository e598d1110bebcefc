"""Example models: ONNX matches PyTorch, batch is dynamic, files are cached and self-contained."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sealfn.errors import ModelError
from sealfn.workloads import models
from sealfn.workloads.models import ExampleModel, build_examples, build_mlp

torch = pytest.importorskip("torch")

OUTPUT_WIDTH = {"mlp": 4, "resnet18": 1000}
REFERENCE: dict[str, Callable[[], Any]] = {
    "mlp": models.mlp_module,
    "resnet18": models.resnet18_module,
}


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("examples")
    build_examples(path)
    return path


@pytest.fixture(scope="module")
def examples(directory: Path) -> dict[str, ExampleModel]:
    return build_examples(directory)  # served from the cache the first build left


def _session(example: ExampleModel) -> Any:
    return ort.InferenceSession(str(example.path), providers=["CPUExecutionProvider"])


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", ["mlp", "resnet18"])
def test_onnx_matches_torch(examples: dict[str, ExampleModel], name: str, batch: int) -> None:
    example = examples[name]
    x = example.sample(batch=batch, seed=7)
    (got,) = _session(example).run(["output"], {example.input_name: x})
    with torch.no_grad():
        want = REFERENCE[name]().forward(torch.from_numpy(x)).numpy()
    assert got.shape == (batch, OUTPUT_WIDTH[name])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert want.std() > 0.01  # a real signal, not an all-zero net that matches trivially


@pytest.mark.parametrize("name", ["mlp", "resnet18"])
def test_batch_dim_is_dynamic(examples: dict[str, ExampleModel], name: str) -> None:
    example = examples[name]
    graph = onnx.load(example.path).graph
    (graph_input,) = graph.input
    (graph_output,) = graph.output
    assert (graph_input.name, graph_output.name) == ("input", "output")
    in_dims = graph_input.type.tensor_type.shape.dim
    out_dims = graph_output.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and out_dims[0].dim_param
    assert tuple(d.dim_value for d in in_dims[1:]) == example.input_shape[1:]
    (out,) = _session(example).run(None, {"input": example.sample(batch=3)})
    assert out.shape == (3, OUTPUT_WIDTH[name])


def test_files_are_self_contained(directory: Path, examples: dict[str, ExampleModel]) -> None:
    assert sorted(p.name for p in directory.iterdir()) == [
        "mlp.onnx",
        "mlp.onnx.build.json",
        "resnet18.onnx",
        "resnet18.onnx.build.json",
    ]
    for example in examples.values():
        model = onnx.load(example.path, load_external_data=False)
        assert model.graph.initializer
        assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)


def test_examples_describe_their_input(examples: dict[str, ExampleModel]) -> None:
    assert examples["mlp"].input_shape == (1, 16)
    assert examples["resnet18"].input_shape == (1, 3, 224, 224)
    assert {e.input_name for e in examples.values()} == {"input"}


def test_cached_build_is_reused(directory: Path, examples: dict[str, ExampleModel]) -> None:
    before = _mtimes(directory)
    assert build_examples(directory) == examples
    assert _mtimes(directory) == before


def test_stale_sidecar_rebuilds_that_model_only(directory: Path) -> None:
    sidecar = directory / "mlp.onnx.build.json"
    record = json.loads(sidecar.read_text())
    record["params"]["seed"] = 1
    sidecar.write_text(json.dumps(record))
    before = _mtimes(directory)
    build_examples(directory)
    after = _mtimes(directory)
    assert after["mlp.onnx"] != before["mlp.onnx"]
    assert after["resnet18.onnx"] == before["resnet18.onnx"]
    assert json.loads(sidecar.read_text())["params"]["seed"] == 0


def test_replaced_model_file_rebuilds(directory: Path) -> None:
    path = directory / "mlp.onnx"
    good = path.read_bytes()
    path.write_bytes(good[:-1])
    build_examples(directory)
    assert path.read_bytes() == good


def test_force_rebuilds_identical_bytes(directory: Path) -> None:
    before_bytes = {p.name: p.read_bytes() for p in directory.glob("*.onnx")}
    before_mtimes = _mtimes(directory)
    build_examples(directory, force=True)
    assert {p.name: p.read_bytes() for p in directory.glob("*.onnx")} == before_bytes
    assert _mtimes(directory)["resnet18.onnx"] != before_mtimes["resnet18.onnx"]


def test_seed_changes_weights(tmp_path: Path) -> None:
    a = build_mlp(tmp_path / "a.onnx", seed=0)
    b = build_mlp(tmp_path / "b.onnx", seed=1)
    x = a.sample(batch=2)
    (ya,) = _session(a).run(None, {"input": x})
    (yb,) = _session(b).run(None, {"input": x})
    assert not np.allclose(ya, yb)


def test_build_leaves_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_mlp(tmp_path / "m.onnx", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_build_is_quiet(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    build_mlp(tmp_path / "m.onnx", in_features=8, hidden=8, out_features=2)
    assert capfd.readouterr() == ("", "")


def test_sample_is_seeded_float32() -> None:
    example = ExampleModel("x", Path("x.onnx"), "input", (1, 3, 5))
    x = example.sample(batch=4, seed=3)
    assert x.shape == (4, 3, 5)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, example.sample(batch=4, seed=3))
    assert not np.array_equal(x, example.sample(batch=4, seed=4))
    with pytest.raises(ValueError, match="batch"):
        example.sample(batch=0)


def test_missing_torch_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ModelError, match=r"pip install 'sealfn\[models\]'"):
        build_mlp(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_importing_does_not_import_torch() -> None:
    code = "import sys, sealfn.workloads.models; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_cli_lists_models(directory: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sealfn.workloads", str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["mlp", "resnet18"]
    assert lines[1].split("\t")[1] == str(directory / "resnet18.onnx")
    assert lines[1].endswith(" MB")
    assert done.stderr == ""
