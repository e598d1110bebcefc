"""Bad requests get a clear 4xx naming what is wrong, and the server keeps serving afterwards."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from sealfn import oip
from sealfn.errors import ModelError, PayloadTooLarge

if TYPE_CHECKING:
    from sealfn_testing import Models, Server

X = np.ones((2, 16), dtype=np.float32)


def _tensor(**changes: Any) -> dict[str, Any]:
    tensor = {"name": "input", "datatype": "FP32", "shape": [2, 16], "data": X.ravel().tolist()}
    return {**tensor, **changes}


@pytest.fixture(scope="module")
def mlp(server: Server, models: Models) -> Iterator[str]:
    server.client.deploy("bad-requests-mlp", models.mlp)
    yield "bad-requests-mlp"
    server.client.undeploy("bad-requests-mlp")


@pytest.fixture
def still_serves(server: Server, mlp: str) -> Iterator[None]:
    """After the test's bad request, a good one on the same server still works."""
    yield
    assert server.client.infer(mlp, {"input": X})["output"].shape == (2, 4)


def _post(server: Server, path: str, content: bytes, **headers: str) -> tuple[int, str]:
    with server.http() as http:
        reply = http.post(path, content=content, headers=headers)
    return reply.status_code, reply.json()["error"]


@pytest.mark.usefixtures("still_serves")
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [_tensor(shape=[2, 15], data=[0.0] * 30)]}, r"input 'input': shape \[2, 15\]"),
        ({"inputs": [_tensor(shape=[32])]}, "input 'input': shape"),
        ({"inputs": [_tensor(datatype="INT32", data=[1] * 32)]}, "input 'input': datatype INT32"),
        ({"inputs": [_tensor(name="images")]}, "unknown input 'images'"),
        ({"inputs": []}, "missing input 'input'"),
        ({"inputs": [_tensor(data=[1.0] * 31)]}, "input 'input': data has 31 elements"),
        ({"inputs": [_tensor(datatype="FP99")]}, "input 'input': unknown datatype 'FP99'"),
        ({"inputs": [_tensor(data=["a"] * 32)]}, "input 'input': 'data' holds string"),
        ({"inputs": [_tensor()], "outputs": [{"name": "logits"}]}, "unknown output"),
        ({}, "missing 'inputs'"),
    ],
)
def test_invalid_input_is_400_naming_the_problem(
    server: Server, mlp: str, body: dict[str, Any], message: str
) -> None:
    status, error = _post(server, f"/v2/models/{mlp}/infer", json.dumps(body).encode())
    assert status == 400
    assert re.search(message, error), error


@pytest.mark.usefixtures("still_serves")
@pytest.mark.parametrize(
    "content", [b"{not json", b"", b"[1, 2]", b"\xff\xfe", b'{"inputs": [{"name": 1}]}']
)
def test_malformed_json_is_400(server: Server, mlp: str, content: bytes) -> None:
    status, error = _post(server, f"/v2/models/{mlp}/infer", content)
    assert status == 400
    assert error


@pytest.mark.usefixtures("still_serves")
def test_binary_body_that_does_not_add_up_is_400(server: Server, mlp: str) -> None:
    body, headers = oip.encode_request([oip.Tensor.from_numpy("input", X)])
    path = f"/v2/models/{mlp}/infer"
    status, error = _post(server, path, body[:-4], **headers)
    assert status == 400
    assert "input 'input'" in error
    status, error = _post(server, path, body, **{oip.HEADER_LENGTH: "12x"})
    assert status == 400
    assert "not a number" in error
    status, error = _post(server, path, body + b"junk", **headers)
    assert status == 400
    assert "trailing bytes" in error


@pytest.mark.usefixtures("still_serves")
def test_unknown_routes_and_methods_answer_in_json(server: Server) -> None:
    with server.http() as http:
        missing = http.get("/v2/nothing/here")
        slash = http.post("/v2/models/a%2Fb/infer", content=b"{}")
        method = http.get("/v2/models/nope/infer")
    assert missing.status_code == slash.status_code == 404
    assert missing.json() == {
        "error": "no such endpoint: GET /v2/nothing/here",
        "type": "RouteError",
    }
    assert method.status_code == 405 and "POST" in method.headers["allow"]
    assert method.json()["error"] == "method not allowed: GET /v2/models/nope/infer"


@pytest.mark.usefixtures("still_serves")
def test_admin_calls_need_the_bearer_token(server: Server, mlp: str) -> None:
    with httpx.Client(base_url=server.url) as http:  # no token
        status = http.get("/admin/status")
        deploy = http.put("/admin/functions/sneaky", content=b"onnx")
        undeploy = http.delete(f"/admin/functions/{mlp}")
        wrong = http.get("/admin/status", headers={"authorization": "Bearer guess"})
        infer = http.post(f"/v2/models/{mlp}/infer", json={"inputs": [_tensor()]})
    for reply in (status, deploy, undeploy, wrong):
        assert reply.status_code == 401, reply.text
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert reply.json()["type"] == "Unauthenticated"
    assert "Authorization: Bearer <token>" in status.json()["error"]
    assert wrong.json()["error"] == "wrong admin token"
    assert infer.status_code == 200  # the data plane needs no admin token
    assert "sneaky" not in [f["name"] for f in server.client.status()["functions"]]


@pytest.mark.usefixtures("still_serves")
def test_unknown_model_is_404(server: Server) -> None:
    with server.http() as http:
        infer = http.post("/v2/models/nope/infer", json={"inputs": [_tensor()]})
        meta = http.get("/v2/models/nope")
        admin = http.get("/admin/functions/nope")
        undeploy = http.delete("/admin/functions/nope")
    for reply in (infer, meta, admin, undeploy):
        assert reply.status_code == 404
        assert "'nope' is not deployed" in reply.json()["error"]


@pytest.mark.usefixtures("still_serves")
def test_invalid_onnx_is_422_and_writes_nothing(server: Server, models: Models) -> None:
    functions = server.state_dir / "functions"
    before = sorted(p.name for p in functions.iterdir())
    for content in (models.corrupt.read_bytes(), b"\x00" * 64, models.mlp.read_bytes()[:200]):
        with server.http() as http:
            reply = http.put("/admin/functions/broken", content=content)
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"]
    assert sorted(p.name for p in functions.iterdir()) == before
    with server.http() as http:
        assert http.get("/v2/models/broken").status_code == 404
    with pytest.raises(ModelError):
        server.client.deploy("broken", models.corrupt)


@pytest.mark.usefixtures("still_serves")
@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("_hidden", "{}", "function name '_hidden' is invalid"),
        ("x" * 64, "{}", "is invalid"),
        (".sneaky", "{}", "is invalid"),
        ("trailing-newline%0A", "{}", "is invalid"),
        ("ok", '{"max_batch": 0}', "max_batch=0"),
        ("ok", '{"min_instances": 5, "max_instances": 2}', "min_instances=5 exceeds"),
        ("ok", '{"max_batch": "8"}', "max_batch='8'"),
        ("ok", '{"concurrency": true}', "concurrency=True"),
        ("ok", '{"keep_alive_s": -1}', "keep_alive_s=-1"),
        ("ok", '{"turbo": 1}', "unknown deployment setting(s): turbo"),
        ("ok", "{oops", "not valid JSON"),
        ("ok", "[1]", "must be a JSON object"),
    ],
)
def test_invalid_name_or_spec_is_400(
    server: Server, models: Models, name: str, spec: str, message: str
) -> None:
    functions = server.state_dir / "functions"
    before = sorted(p.name for p in functions.iterdir())
    with server.http() as http:
        reply = http.put(
            f"/admin/functions/{name}",
            content=models.mlp.read_bytes(),
            headers={"x-sealfn-spec": spec},
        )
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]
    assert sorted(p.name for p in functions.iterdir()) == before


@pytest.mark.usefixtures("still_serves")
def test_deploy_without_a_model_is_400(server: Server) -> None:
    with server.http() as http:
        reply = http.put("/admin/functions/empty", content=b"")
    assert reply.status_code == 400
    assert "ONNX model" in reply.json()["error"]


def test_body_over_the_limit_is_413(start_server: Callable[..., Server], models: Models) -> None:
    small = start_server(SEALFN_MAX_BODY_BYTES="4096")
    small.client.deploy("mlp", models.mlp)
    fits = np.ones((4, 16), dtype=np.float32)
    too_big = np.ones((128, 16), dtype=np.float32)  # 8 KiB of tensor data
    with pytest.raises(PayloadTooLarge, match="4096-byte limit"):
        small.client.infer("mlp", {"input": too_big})
    body, headers = oip.encode_request([oip.Tensor.from_numpy("input", too_big)])
    with small.http() as http:
        streamed = http.post(
            "/v2/models/mlp/infer", content=iter([body[:4000], body[4000:]]), headers=headers
        )
    assert streamed.status_code == 413
    assert small.client.infer("mlp", {"input": fits})["output"].shape == (4, 4)


def test_bodies_past_uvicorns_own_buffer_are_read_whole_or_refused(
    start_server: Callable[..., Server], models: Models
) -> None:
    """`serve` lets uvicorn read ahead up to the body limit (1 MiB here, not its own 64 KiB):
    a chunked body under it is read whole, one over it is still refused, the server serves on."""
    server = start_server(SEALFN_MAX_BODY_BYTES=str(1 << 20))
    server.client.deploy("mlp", models.mlp)

    def chunked(rows: int) -> tuple[Iterator[bytes], dict[str, str]]:
        x = np.full((rows, 16), 0.5, dtype=np.float32)
        body, headers = oip.encode_request([oip.Tensor.from_numpy("input", x)])
        return iter([body[i : i + 65536] for i in range(0, len(body), 65536)]), dict(headers)

    with server.http() as http:
        content, headers = chunked(12_000)  # 768 KB of tensor data, no content-length
        fits = http.post("/v2/models/mlp/infer", content=content, headers=headers)
        assert fits.status_code == 200, fits.text
        content, headers = chunked(48_000)  # 3 MB
        refused = http.post("/v2/models/mlp/infer", content=content, headers=headers)
    assert refused.status_code == 413
    assert refused.json()["error"] == "body exceeds the 1048576-byte limit"
    small = np.ones((4, 16), np.float32)
    assert server.client.infer("mlp", {"input": small})["output"].shape == (4, 4)
