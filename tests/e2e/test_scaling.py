"""Scale from zero, keep-alive, the min_instances floor, scale out and in, adaptive batching."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from sealfn_testing import Models, Server

MLP_X = np.ones((1, 16), dtype=np.float32)
SLOW_X = np.ones((1, 256), dtype=np.float32)


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _batch_sizes(server: Server, name: str) -> dict[str, float]:
    """The sealfn_batch_size histogram of ``name``: bucket bound (and "count") -> observations."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(server.metrics()):
        if family.name != "sealfn_batch_size":
            continue
        for sample in family.samples:
            if sample.labels.get("function") != name:
                continue
            if sample.name.endswith("_bucket"):
                found[sample.labels["le"]] = sample.value
            elif sample.name.endswith("_count"):
                found["count"] = sample.value
    return found


def test_scale_from_zero_queues_requests_during_the_cold_start(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp, max_instances=1)
    before = server.function(name)
    assert before["instance_list"] == []
    assert before["cold_starts"] == 0
    start = threading.Barrier(10)

    def call(_: int) -> np.ndarray:
        start.wait()
        return server.client.infer(name, {"input": MLP_X})["output"]

    with ThreadPoolExecutor(10) as workers:
        results = list(workers.map(call, range(10)))  # any failure raises here
    assert len(results) == 10
    after = server.function(name)
    assert after["cold_starts"] == 1
    assert after["requests"] == 10
    assert len(after["instance_list"]) == 1
    assert after["cold_start_ms"] > 0


def test_first_request_starts_one_instance(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp)
    assert server.alive(name) == 0
    server.client.infer(name, {"input": MLP_X})
    status = server.function(name)
    assert status["cold_starts"] == 1
    assert status["instances"]["idle"] + status["instances"]["warm"] == 1
    server.client.infer(name, {"input": MLP_X})
    assert server.function(name)["cold_starts"] == 1  # warm now


def test_keep_alive_then_scale_to_zero(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp, keep_alive_s=0.5)
    server.client.infer(name, {"input": MLP_X})
    (instance,) = server.function(name)["instance_list"]
    server.wait_until(lambda: server.alive(name) == 0, 10, "scale to zero")
    server.wait_until(lambda: _gone(instance["pid"]), 10, "the instance process to exit")
    status = server.function(name)
    assert status["instance_list"] == []
    gb_seconds = status["gb_seconds"]
    time.sleep(0.3)
    assert server.function(name)["gb_seconds"] == gb_seconds  # nothing billed at zero
    server.client.infer(name, {"input": MLP_X})  # and back from zero
    assert server.function(name)["cold_starts"] == 2


def test_min_instances_floor_starts_without_traffic(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.mlp, min_instances=2, keep_alive_s=0)
    server.wait_until(lambda: server.function(name)["instances"]["idle"] == 2, 10, "2 idle")
    time.sleep(1.5)  # past the stable window and keep-alive: the floor holds
    status = server.function(name)
    assert status["instances"]["idle"] == 2
    assert status["cold_starts"] == 2
    assert status["requests"] == 0
    assert all(not _gone(i["pid"]) for i in status["instance_list"])


def test_scale_out_under_load_then_back_in(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.slow, max_batch=1, max_instances=3, keep_alive_s=0.5)
    stop = threading.Event()
    counts: list[int] = []

    def load() -> None:
        while not stop.is_set():
            server.client.infer(name, {"input": SLOW_X})

    with ThreadPoolExecutor(6) as workers:
        futures = [workers.submit(load) for _ in range(6)]
        deadline, ready = time.monotonic() + 10, 0
        while time.monotonic() < deadline and ready < 3:
            status = server.function(name)
            counts.append(len(status["instance_list"]))
            ready = status["cold_starts"]
            time.sleep(0.05)
        stop.set()
        for future in futures:
            future.result()  # re-raises any failed request
    assert ready >= 3, counts
    assert max(counts) == 3, counts  # up to max_instances, never past it
    server.wait_until(lambda: server.alive(name) == 0, 15, "scale back to zero")


def test_adaptive_batching_under_concurrency_only(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.slow, max_batch=8, max_instances=1, slo_ms=1000)
    for _ in range(10):  # one client, one request at a time: nothing to batch
        server.client.infer(name, {"input": SLOW_X})
    alone = _batch_sizes(server, name)
    assert alone["count"] == 10
    assert alone["1.0"] == 10

    start = threading.Barrier(8)

    def client(_: int) -> None:
        start.wait()
        for _ in range(15):
            server.client.infer(name, {"input": SLOW_X})

    with ThreadPoolExecutor(8) as workers:
        list(workers.map(client, range(8)))
    together = _batch_sizes(server, name)
    batches = together["count"] - alone["count"]
    assert together["1.0"] - alone["1.0"] < batches, together  # some batch held > 1 request
    assert together["+Inf"] == together["count"]
    assert batches < 8 * 15  # 120 requests took fewer batches
    assert server.function(name)["requests"] == 10 + 8 * 15
