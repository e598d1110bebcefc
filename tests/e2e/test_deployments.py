"""Deployments persist across restarts, undeploy stops everything, /metrics names its series."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sealfn.errors import NotFound

if TYPE_CHECKING:
    from pathlib import Path

    from sealfn_testing import Models, Server

Reference = Callable[["Path", dict[str, np.ndarray]], dict[str, np.ndarray]]
X = np.linspace(-2, 2, 32, dtype=np.float32).reshape(2, 16)
SERIES = (
    "sealfn_requests",
    "sealfn_request_latency_seconds",
    "sealfn_queue_depth",
    "sealfn_batch_size",
    "sealfn_cold_starts",
    "sealfn_instances",
    "sealfn_gb_seconds",
    "sealfn_cost_usd",
)


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _pids(server: Server, name: str) -> list[int]:
    return [i["pid"] for i in server.function(name)["instance_list"]]


def test_deployments_survive_a_restart(
    start_server: Callable[..., Server], models: Models, reference: Reference, tmp_path: Path
) -> None:
    state = tmp_path / "kept"
    first = start_server(state)
    first.client.deploy("mlp", models.mlp, max_batch=4, keep_alive_s=5)
    first.client.deploy("pair", models.two_outputs, min_instances=1)
    first.client.infer("mlp", {"input": X})
    first.wait_until(lambda: first.function("pair")["instances"]["idle"] == 1, 10, "the floor")
    pids = _pids(first, "mlp") + _pids(first, "pair")
    assert first.stop() == 0
    assert all(_gone(pid) for pid in pids), "serve left instance processes behind"

    second = start_server(state)
    names = sorted(f["name"] for f in second.client.status()["functions"])
    assert names == ["mlp", "pair"]
    assert second.function("mlp")["spec"]["max_batch"] == 4
    # The min_instances floor is restored without any traffic.
    second.wait_until(lambda: second.function("pair")["instances"]["idle"] == 1, 10, "floor")
    out = second.client.infer("mlp", {"input": X})
    np.testing.assert_array_equal(out["output"], reference(models.mlp, {"input": X})["output"])


def test_restart_cleans_staging_folders(
    start_server: Callable[..., Server], models: Models, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    (state / "functions" / ".mlp.crashed-mid-deploy").mkdir(parents=True)
    (state / "functions" / ".mlp.crashed-mid-deploy" / "model.onnx").write_bytes(b"partial")
    server = start_server(state)
    assert [p.name for p in (state / "functions").iterdir()] == []
    assert server.client.status()["functions"] == []


def test_undeploy_is_404_and_stops_instances(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp, min_instances=2)
    server.wait_until(lambda: server.function(name)["instances"]["idle"] == 2, 10, "2 idle")
    server.client.infer(name, {"input": X})
    pids = _pids(server, name)
    assert len(pids) == 2
    server.client.undeploy(name)
    with pytest.raises(NotFound):
        server.client.infer(name, {"input": X})
    with pytest.raises(NotFound):
        server.client.metadata(name)
    with pytest.raises(NotFound):
        server.client.undeploy(name)
    assert name not in [f["name"] for f in server.client.status()["functions"]]
    assert not (server.state_dir / "functions" / name).exists()
    server.wait_until(lambda: all(_gone(pid) for pid in pids), 10, "instance processes to exit")
    assert f'function="{name}"' not in server.metrics()


def test_redeploy_replaces_the_model(
    server: Server, deploy: Callable[..., str], models: Models, reference: Reference
) -> None:
    name = deploy(models.mlp)
    server.client.infer(name, {"input": X})
    (old,) = _pids(server, name)
    reply = server.client.deploy(name, models.two_outputs)  # same name, another model
    assert reply["signature"]["inputs"][0]["name"] == "x"
    x = np.ones((1, 8), dtype=np.float32)
    out = server.client.infer(name, {"x": x})
    np.testing.assert_array_equal(out["scaled"], reference(models.two_outputs, {"x": x})["scaled"])
    server.wait_until(lambda: _gone(old), 10, "the old version's instance to exit")
    assert old not in _pids(server, name)


def test_metrics_has_the_named_series(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp)
    server.client.infer(name, {"input": X})
    with server.http() as http:
        http.post(f"/v2/models/{name}/infer", json={"inputs": []})  # a 400
        reply = http.get("/metrics")
    assert reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    for series in SERIES:
        assert series in families, series
        assert any(s.labels.get("function") == name for s in families[series].samples), series
    codes = {
        s.labels["code"]: s.value
        for s in families["sealfn_requests"].samples
        if s.name == "sealfn_requests_total" and s.labels["function"] == name
    }
    assert codes == {"200": 1.0, "400": 1.0}
    cold = [s for s in families["sealfn_cold_starts"].samples if s.labels["function"] == name]
    assert any(s.name == "sealfn_cold_starts_total" and s.value == 1 for s in cold)
    states = {
        s.labels["state"]: s.value
        for s in families["sealfn_instances"].samples
        if s.labels["function"] == name
    }
    assert states["idle"] + states["warm"] == 1


def test_share_weights_setting_reaches_instances(
    start_server: Callable[..., Server], models: Models
) -> None:
    """SEALFN_SHARE_WEIGHTS=true: instances map weights (shared pages) and still answer right."""
    import psutil

    server = start_server(SEALFN_SHARE_WEIGHTS="true")
    server.client.deploy("shared", models.mlp, min_instances=1)
    x = np.ones((2, 16), np.float32)
    out = server.client.infer("shared", {"input": x})["output"]
    assert out.shape == (2, 4)
    pid = server.function("shared")["instance_list"][0]["pid"]
    assert "--share-weights" in psutil.Process(pid).cmdline()


def test_deploy_builds_the_host_optimized_copy(
    server: Server, models: Models, reference: Reference
) -> None:
    """The deploy-time load check leaves the model's host-optimized copy beside it, so the first
    cold start loads it instead of building it on a request's path."""
    server.client.deploy("hostopt", models.mlp)
    folder = server.state_dir / "functions" / "hostopt"
    copies = [p for p in folder.iterdir() if p.name.startswith("host-")]
    assert len(copies) == 1 and (copies[0] / "model.weights").exists()
    out = server.client.infer("hostopt", {"input": X})["output"]
    np.testing.assert_allclose(out, reference(models.mlp, {"input": X})["output"], rtol=1e-5)
    assert [p for p in folder.iterdir() if p.name.startswith("host-")] == copies
    server.client.undeploy("hostopt")
