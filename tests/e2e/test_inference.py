"""The KServe v2 endpoints of a real `sealfn serve`: health, metadata, JSON and binary inference."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from sealfn import oip

if TYPE_CHECKING:
    from pathlib import Path

    from sealfn_testing import Models, Server

Reference = Callable[["Path", dict[str, np.ndarray]], dict[str, np.ndarray]]
RNG = np.random.default_rng(42)


def _json_input(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": list(array.shape), "data": array.tolist()}


def test_health_and_server_metadata(server: Server) -> None:
    with server.http() as http:
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2/health/ready").json() == {"ready": True}
        meta = http.get("/v2").json()
    assert meta["name"] == "sealfn"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_ready(server: Server, deploy: Callable[..., str], models: Models):
    name = deploy(models.two_outputs)
    with server.http() as http:
        meta = http.get(f"/v2/models/{name}").json()
        versioned = http.get(f"/v2/models/{name}/versions/1").json()
        ready = http.get(f"/v2/models/{name}/ready")
        ready_versioned = http.get(f"/v2/models/{name}/versions/1/ready")
        unknown = http.get("/v2/models/no-such-model/ready")
    assert meta == versioned
    assert meta["name"] == name
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}]
    assert [o["name"] for o in meta["outputs"]] == ["relu", "scaled"]
    # Deployed with no instance yet (scale from zero) still counts as ready.
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready_versioned.status_code == 200
    assert unknown.status_code == 404


def test_infer_json_matches_onnxruntime(
    server: Server, deploy: Callable[..., str], models: Models, reference: Reference
) -> None:
    name = deploy(models.mlp)
    x = RNG.standard_normal((5, 16), dtype=np.float32)
    body = {"id": "req-1", "inputs": [_json_input("input", x)]}
    with server.http() as http:
        reply = http.post(f"/v2/models/{name}/infer", json=body)
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["model_name"] == name
    assert doc["id"] == "req-1"
    (output,) = doc["outputs"]
    assert output["name"] == "output"
    assert output["datatype"] == "FP32"
    assert output["shape"] == [5, 4]
    got = np.array(output["data"], dtype=np.float32).reshape(5, 4)
    np.testing.assert_allclose(got, reference(models.mlp, {"input": x})["output"], rtol=1e-6)


def test_infer_binary_matches_onnxruntime(
    server: Server, deploy: Callable[..., str], models: Models, reference: Reference
) -> None:
    name = deploy(models.mlp)
    x = RNG.standard_normal((3, 16), dtype=np.float32)
    out = server.client.infer(name, {"input": x})
    np.testing.assert_array_equal(out["output"], reference(models.mlp, {"input": x})["output"])


def test_outputs_subset_mixed_binary_and_versioned_path(
    server: Server, deploy: Callable[..., str], models: Models, reference: Reference
) -> None:
    name = deploy(models.two_outputs)
    x = RNG.standard_normal((2, 8), dtype=np.float32)
    expected = reference(models.two_outputs, {"x": x})
    body, headers = oip.encode_request(
        [oip.Tensor.from_numpy("x", x)], binary=True, binary_output=False, outputs=["scaled"]
    )
    with server.http() as http:
        reply = http.post(f"/v2/models/{name}/versions/1/infer", content=body, headers=headers)
        json_only = http.post(
            f"/v2/models/{name}/infer",
            json={"inputs": [_json_input("x", x)], "outputs": [{"name": "relu"}]},
        )
    assert reply.status_code == 200, reply.text
    length = reply.headers.get(oip.HEADER_LENGTH)
    response = oip.decode_response(reply.content, int(length) if length else None)
    assert [t.name for t in response.outputs] == ["scaled"]
    np.testing.assert_array_equal(response.outputs[0].data, expected["scaled"])
    assert json_only.status_code == 200, json_only.text
    (relu,) = json_only.json()["outputs"]
    assert relu["name"] == "relu"
    np.testing.assert_array_equal(
        np.array(relu["data"], np.float32).reshape(2, 8), expected["relu"]
    )


def test_non_batchable_model(
    server: Server, deploy: Callable[..., str], models: Models, reference: Reference
) -> None:
    name = deploy(models.fixed)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with ThreadPoolExecutor(4) as workers:  # concurrent requests must not be concatenated
        results = list(workers.map(lambda _: server.client.infer(name, {"x": x}), range(8)))
    for result in results:
        np.testing.assert_array_equal(result["y"], x + 1)


def test_requests_that_cannot_share_a_batch_are_run_apart(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    # Widths differ, so stacking them along dim 0 fails; they queue together during the cold
    # start, so they are offered to the instance as one batch.
    name = deploy(models.ragged, max_batch=8, max_instances=1)
    inputs = [np.full((1, width), width, dtype=np.float32) for width in (3, 5, 3, 7, 5, 2)]
    start = threading.Barrier(len(inputs))

    def call(x: np.ndarray) -> np.ndarray:
        start.wait()
        return server.client.infer(name, {"x": x})["y"]

    with ThreadPoolExecutor(len(inputs)) as workers:
        results = list(workers.map(call, inputs))
    for x, y in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(y, x * 3)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_large_tensors_round_trip_through_the_arena(
    server: Server, deploy: Callable[..., str], models: Models, concurrency: int
) -> None:
    # 8 rows x 16 KiB = 128 KiB each way: over the 64 KiB inline limit, so the arena carries them.
    name = deploy(models.large, concurrency=concurrency, max_batch=2, max_instances=1)
    inputs = [RNG.standard_normal((8, 4096), dtype=np.float32) for _ in range(12)]
    assert inputs[0].nbytes > 64 << 10

    def call(x: np.ndarray) -> np.ndarray:
        return server.client.infer(name, {"x": x})["y"]

    with ThreadPoolExecutor(6) as workers:
        results = list(workers.map(call, inputs))
    for x, y in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(y, x * np.float32(2) + np.float32(1))
    assert len(server.function(name)["instance_list"]) == 1


def test_json_outputs_of_a_binary_request_are_plain_lists(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp)
    x = np.zeros((1, 16), dtype=np.float32)
    body, headers = oip.encode_request([oip.Tensor.from_numpy("input", x)], binary_output=False)
    with server.http() as http:
        reply = http.post(f"/v2/models/{name}/infer", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    doc = json.loads(reply.content)
    assert isinstance(doc["outputs"][0]["data"], list)
    assert len(doc["outputs"][0]["data"]) == 4
