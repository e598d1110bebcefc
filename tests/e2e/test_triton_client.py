"""Interop: NVIDIA's tritonclient[http] talks to the gateway as it would to Triton."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

if TYPE_CHECKING:
    from pathlib import Path

    from sealfn_testing import Models, Server

Reference = Callable[["Path", dict[str, np.ndarray]], dict[str, np.ndarray]]


@pytest.fixture
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def test_server_and_model_health(
    client: triton.InferenceServerClient, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(name)
    assert not client.is_model_ready("no-such-model")
    meta = client.get_model_metadata(name)
    assert meta["name"] == name
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}]


@pytest.mark.parametrize(
    "binary", [(True, True), (False, False), (True, False)], ids=["binary", "json", "mixed"]
)
def test_infer(
    client: triton.InferenceServerClient,
    deploy: Callable[..., str],
    models: Models,
    reference: Reference,
    binary: tuple[bool, bool],
) -> None:
    binary_in, binary_out = binary
    name = deploy(models.two_outputs)
    x = np.random.default_rng(7).standard_normal((3, 8), dtype=np.float32)
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_in)
    wanted = [triton.InferRequestedOutput("scaled", binary_data=binary_out)]
    result = client.infer(name, [tensor], outputs=wanted, request_id="abc")
    expected = reference(models.two_outputs, {"x": x})
    np.testing.assert_allclose(result.as_numpy("scaled"), expected["scaled"], rtol=1e-6)
    assert result.as_numpy("relu") is None  # not asked for
    response = result.get_response()
    assert response["model_name"] == name
    assert response["id"] == "abc"


def test_infer_all_outputs_by_default(
    client: triton.InferenceServerClient,
    deploy: Callable[..., str],
    models: Models,
    reference: Reference,
) -> None:
    name = deploy(models.two_outputs)
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    tensor = triton.InferInput("x", [2, 8], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(name, [tensor])
    expected = reference(models.two_outputs, {"x": x})
    for output in ("relu", "scaled"):
        np.testing.assert_allclose(result.as_numpy(output), expected[output], rtol=1e-6)


def test_errors_reach_the_client(
    client: triton.InferenceServerClient, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp)
    tensor = triton.InferInput("input", [1, 15], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 15), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="input 'input'") as caught:
        client.infer(name, [tensor])
    assert caught.value.status() == "400"
    with pytest.raises(InferenceServerException, match="not deployed"):
        client.infer("no-such-model", [tensor])
