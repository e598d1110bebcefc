"""Process faults beyond an instance crash under load (test_crash.py): an instance killed while it
loads its model, and the gateway itself killed with -9 under load. No request hangs, no process
is orphaned, deployments survive, serving resumes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import psutil
import pytest

from sealfn.client import Client
from sealfn.errors import SealfnError, Unavailable
from sealfn_testing import launch

if TYPE_CHECKING:
    from sealfn_testing import Models, Server

SLOW_X = np.ones((1, 256), dtype=np.float32)


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _instances(server: Server, name: str) -> list[dict[str, object]]:
    return list(server.function(name)["instance_list"])


def test_instance_killed_while_loading_its_model(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    """The request that triggered the cold start is answered by a replacement (or refused with a
    clean 503 within its deadline); nothing hangs, and the function serves afterwards."""
    name = deploy(models.slow, max_instances=1)
    outcome: list[object] = []

    def first_request() -> None:
        try:
            outcome.append(server.client.infer(name, {"input": SLOW_X})["output"].shape)
        except SealfnError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=first_request)
    thread.start()
    starting = server.wait_until(
        lambda: [i for i in _instances(server, name) if i["pid"] and i["state"] == "starting"],
        10,
        "an instance that is loading its model",
    )
    victim = int(starting[0]["pid"])  # type: ignore[call-overload]
    os.kill(victim, signal.SIGKILL)
    thread.join(35)  # SEALFN_REQUEST_TIMEOUT_S is 30 in tests
    assert not thread.is_alive(), "the request hung"
    (result,) = outcome
    assert result == (1, 256) or isinstance(result, Unavailable), result
    assert server.client.infer(name, {"input": SLOW_X})["output"].shape == (1, 256)
    assert _gone(victim)


def test_gateway_sigkill_orphans_nothing_and_restarts_with_its_deployments(
    start_server: Callable[..., Server], models: Models, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = launch(state)  # not start_server's: that one expects a clean exit
    first.client.deploy("mlp", models.mlp, min_instances=2, max_instances=2)
    first.wait_until(lambda: first.function("mlp")["instances"]["idle"] == 2, 15, "2 instances")
    pids = [int(i["pid"]) for i in _instances(first, "mlp")]  # type: ignore[call-overload]
    stop, errors, answered = threading.Event(), list[BaseException](), [0]

    def load() -> None:
        with Client(first.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    client.infer("mlp", {"input": np.ones((1, 16), np.float32)})
                    answered[0] += 1
                except (SealfnError, httpx.HTTPError) as exc:  # a timeout would fail the test
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    first.process.send_signal(signal.SIGKILL)
    assert first.stop() == -signal.SIGKILL  # (closes our client of it too)
    stop.set()
    for thread in threads:
        thread.join(15)
    assert not any(t.is_alive() for t in threads), "a client hung on the dead gateway"
    assert answered[0] > 0
    assert all(isinstance(e, Unavailable | httpx.HTTPError) for e in errors), errors
    deadline = time.monotonic() + 10  # instances notice their gateway is gone and exit
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in pids), "instances outlived their gateway"

    second = start_server(state)
    assert [f["name"] for f in second.client.status()["functions"]] == ["mlp"]
    out = second.client.infer("mlp", {"input": np.ones((2, 16), np.float32)})
    assert out["output"].shape == (2, 4)


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> None:
    """Instances are children of the gateway under test, never of pytest itself."""
    assert not [
        p for p in psutil.Process().children() if "sealfn.instance" in " ".join(p.cmdline())
    ]
