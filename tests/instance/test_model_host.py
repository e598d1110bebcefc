"""ModelHost: onnxruntime sessions by name, batched runs split back per request, typed errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from sealfn.errors import InvalidInput, ModelError, NotFound
from sealfn.instance.models import ModelHost

if TYPE_CHECKING:
    from sealfn_testing import Models

Reference = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]
RNG = np.random.default_rng(5)


@pytest.fixture
def host(models: Models) -> ModelHost:
    host = ModelHost(intra_op_threads=1)
    host.load("mlp", models.mlp)
    host.load("pair", models.two_outputs)
    return host


def test_load_reports_names_and_time(host: ModelHost) -> None:
    model = host.models["pair"]
    assert model.input_names == ("x",)
    assert model.output_names == ("relu", "scaled")
    assert model.load_s > 0


def test_one_request_runs_as_is(host: ModelHost, models: Models, reference: Reference) -> None:
    x = RNG.standard_normal((3, 16), dtype=np.float32)
    (result,) = host.run_batch("mlp", [{"input": x}])
    np.testing.assert_array_equal(result["output"], reference(models.mlp, {"input": x})["output"])


def test_batch_is_split_back_per_request(
    host: ModelHost, models: Models, reference: Reference
) -> None:
    inputs = [RNG.standard_normal((rows, 8), dtype=np.float32) for rows in (1, 3, 2)]
    results = host.run_batch("pair", [{"x": x} for x in inputs])
    assert len(results) == 3
    for x, result in zip(inputs, results, strict=True):
        expected = reference(models.two_outputs, {"x": x})
        assert set(result) == {"relu", "scaled"}
        np.testing.assert_allclose(result["relu"], expected["relu"])
        np.testing.assert_allclose(result["scaled"], expected["scaled"], rtol=1e-6)


def test_requests_that_cannot_be_stacked_are_invalid_input(models: Models) -> None:
    host = ModelHost(1)
    host.load("ragged", models.ragged)
    requests = [{"x": np.ones((1, 3), np.float32)}, {"x": np.ones((1, 4), np.float32)}]
    with pytest.raises(InvalidInput, match="'ragged'"):  # the pool then runs them one by one
        host.run_batch("ragged", requests)
    (alone,) = host.run_batch("ragged", requests[1:])
    np.testing.assert_array_equal(alone["y"], np.full((1, 4), 3, np.float32))


def test_unknown_model_is_not_found(host: ModelHost) -> None:
    with pytest.raises(NotFound, match="'nope' is not loaded"):
        host.run_batch("nope", [{"x": np.zeros((1, 8), np.float32)}])
    host.unload("pair")
    with pytest.raises(NotFound):
        host.run_batch("pair", [{"x": np.zeros((1, 8), np.float32)}])


def test_bad_input_is_invalid_input(host: ModelHost) -> None:
    with pytest.raises(InvalidInput, match="'mlp' rejected the input"):
        host.run_batch("mlp", [{"input": np.zeros((1, 15), np.float32)}])


@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff" * 10])
def test_unloadable_model_is_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="'broken' cannot be loaded"):
        ModelHost().load("broken", path)
    with pytest.raises(ModelError):
        ModelHost().load("missing", tmp_path / "missing.onnx")


_SPIN_PROBE = """
import sys, time
import numpy as np
from sealfn.instance.models import ModelHost
host = ModelHost(2, shared_pool=True)
host.fix_thread_pool(own=sys.argv[2] == "own")
host.load("large", sys.argv[1])
x = np.ones((64, int(sys.argv[3])), np.float32)
for _ in range(20):
    (result,) = host.run_batch("large", [{"x": x}])
assert np.array_equal(result["y"], 2 * x + 1)
idle = []
for _ in range(5):
    host.run_batch("large", [{"x": x}])
    cpu = time.process_time()
    time.sleep(0.05)
    idle.append(time.process_time() - cpu)
print(min(idle))
"""


def test_an_own_thread_pool_stops_spinning_when_a_run_returns(models: Models) -> None:
    """An instance serving one model must not burn a core between runs (a 2-core host needs it
    for the gateway and the client); onnxruntime's shared pool cannot be told so."""
    import subprocess
    import sys

    from sealfn_testing import LARGE_WIDTH

    probe = [sys.executable, "-c", _SPIN_PROBE, str(models.large), "own", str(LARGE_WIDTH)]
    done = subprocess.run(probe, capture_output=True, text=True, check=True, timeout=120)
    assert float(done.stdout) < 0.01  # CPU seconds over 50 ms of sleep after a run
