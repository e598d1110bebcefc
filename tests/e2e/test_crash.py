"""An instance killed mid-load: every request is answered, the pool replaces it, serving goes on."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import psutil
import pytest

from sealfn.client import Client
from sealfn.errors import SealfnError, Unavailable

if TYPE_CHECKING:
    from sealfn_testing import Models, Server

CLIENTS = 6
MAX_BATCH = 4


@dataclass(frozen=True)
class Outcome:
    sent_at: float
    done_at: float
    error: SealfnError | None


def _load(url: str, name: str, stop: threading.Event, outcomes: list[Outcome]) -> None:
    x = np.ones((1, 256), dtype=np.float32)
    with Client(url, timeout=20) as client:
        while not stop.is_set():
            sent = time.monotonic()
            error: SealfnError | None = None
            try:
                client.infer(name, {"input": x})
            except SealfnError as exc:  # any other exception (a timeout included) fails the test
                error = exc
            outcomes.append(Outcome(sent, time.monotonic(), error))


def _pids(server: Server, name: str) -> set[int]:
    return {i["pid"] for i in server.function(name)["instance_list"] if i["pid"] is not None}


def test_sigkill_mid_load_answers_every_request(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.slow, max_instances=1, min_instances=1, max_batch=MAX_BATCH)
    (victim,) = server.wait_until(lambda: _pids(server, name), 10, "the floor instance")
    server.wait_until(lambda: server.function(name)["instances"]["idle"] == 1, 10, "ready")
    stop, outcomes = threading.Event(), list[Outcome]()
    threads = [
        threading.Thread(target=_load, args=(server.url, name, stop, outcomes))
        for _ in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads), "a request hung"

    failed = [o for o in outcomes if o.error is not None]
    for outcome in failed:
        assert isinstance(outcome.error, Unavailable), outcome.error
        assert "crashed" in outcome.error.message, outcome.error.message
    # Only the batch that had started on the victim may fail; its requests were sent before.
    assert len(failed) <= MAX_BATCH, [o.error for o in failed]
    assert all(o.sent_at < killed_at for o in failed)
    after = [o for o in outcomes if o.sent_at > killed_at and o.error is None]
    assert after, "no request succeeded after the crash"

    replacement = server.wait_until(lambda: _pids(server, name) - {victim}, 10, "a replacement")
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == "zombie"
    assert replacement
    assert server.client.infer(name, {"input": np.ones((1, 256), np.float32)})["output"].shape == (
        1,
        256,
    )
    assert server.client.live()


@pytest.mark.slow
def test_repeated_crashes_under_load_with_concurrent_slots(
    server: Server, deploy: Callable[..., str], models: Models
) -> None:
    name = deploy(models.slow, min_instances=2, max_instances=2, max_batch=2, concurrency=2)
    server.wait_until(lambda: server.function(name)["instances"]["idle"] == 2, 10, "2 idle")
    stop, outcomes = threading.Event(), list[Outcome]()
    threads = [
        threading.Thread(target=_load, args=(server.url, name, stop, outcomes))
        for _ in range(2 * CLIENTS)
    ]
    for thread in threads:
        thread.start()
    killed = []
    for _ in range(4):
        time.sleep(1.0)
        victim = sorted(_pids(server, name))[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads), "a request hung"
    failed = [o.error for o in outcomes if o.error is not None]
    assert all(isinstance(e, Unavailable) and "crashed" in e.message for e in failed), failed
    # At most every slot of each killed instance held a started batch.
    assert len(failed) <= len(killed) * 2 * 2, failed
    assert len(outcomes) - len(failed) > 100
    server.wait_until(lambda: len(_pids(server, name) - set(killed)) == 2, 10, "2 replacements")
