"""`python -m sealfn.keyservice` as a real process on loopback: it starts, says loudly that it
accepts simulated enclaves, attests itself, serves the enclave flow fast, and stops cleanly."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from keyservice_harness import MODEL

from sealfn.attestation import Policy
from sealfn.errors import Conflict
from sealfn.keyservice.client import KeyServiceClient, verify_keyservice
from sealfn.keyservice.enclave import KeyLease
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.keyservice.server import PACKAGES
from sealfn.tee import Manifest, SimulatedPlatform, SimulatedTee


@dataclass
class Running:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    platform: SimulatedPlatform

    def policy(self) -> Policy:
        measurement = Manifest.build(PACKAGES, {"role": "keyservice"}).measurement()
        return Policy(
            frozenset({measurement}),
            accept_simulated=True,
            trusted_simulated_roots=frozenset({self.platform.root_public_key()}),
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(folder: Path) -> Running:
    """`python -m sealfn.keyservice` on a fresh port, its store and platform in ``folder``."""
    port, platform_dir = _free_port(), folder / "platform"
    log = folder / f"keyservice-{port}.log"
    command = [
        sys.executable, "-m", "sealfn.keyservice", "--port", str(port),
        "--db", str(folder / "ks.db"), "--platform-dir", str(platform_dir),
        "--accept-simulated", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"keyservice did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return Running(url, process, log, SimulatedPlatform.load_or_create(platform_dir))


@pytest.fixture
def keyservice(tmp_path: Path) -> Iterator[Running]:
    running = start(tmp_path)
    yield running
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGINT)
        running.process.wait(10)


def test_it_serves_the_enclave_flow_and_stops_cleanly(keyservice: Running) -> None:
    assert "SIMULATED" in keyservice.log.read_text()  # said loudly, at start
    assert verify_keyservice(keyservice.url, keyservice.policy())
    enclave = SimulatedTee(keyservice.platform, Manifest.build(("sealfn.errors",), {"r": 1}))
    owner = Principal.generate("acme", PrincipalKind.OWNER)
    with KeyServiceClient(keyservice.url) as client:
        key = client.attest(keyservice.policy())
        client.register(owner)
        client.upload_model_key(owner, MODEL, secrets.token_bytes(32), key)
        client.grant(owner, MODEL, "acme", [enclave.measurement()])
        lease = KeyLease(client, enclave, [MODEL])
        assert lease.acquire().models[0].users == ("acme",)
        assert lease.renew().models[0].users == ("acme",)
    keyservice.process.send_signal(signal.SIGINT)
    assert keyservice.process.wait(10) == 0


def test_sigkill_loses_no_principal_key_or_grant(keyservice: Running, tmp_path: Path) -> None:
    """kill -9 mid-life: everything acknowledged before it is there after a restart (SQLite
    WAL: a committed transaction survives the process), and enclaves get their keys again."""
    enclave = SimulatedTee(keyservice.platform, Manifest.build(("sealfn.errors",), {"r": 1}))
    owner = Principal.generate("acme", PrincipalKind.OWNER)
    model_key = secrets.token_bytes(32)
    with KeyServiceClient(keyservice.url) as client:
        client.register(owner)
        client.upload_model_key(owner, MODEL, model_key, client.attest(keyservice.policy()))
        client.grant(owner, MODEL, "acme", [enclave.measurement()])
        deployment = client.deployment_key(MODEL)
    keyservice.process.send_signal(signal.SIGKILL)
    keyservice.process.wait(10)
    again = start(tmp_path)
    try:
        with KeyServiceClient(again.url) as client:
            assert client.deployment_key(MODEL) == deployment
            release = KeyLease(client, enclave, [MODEL]).acquire()
            assert release.models[0].model_key == model_key
            assert release.models[0].users == ("acme",)
            with pytest.raises(Conflict):  # the principal is still registered, with its key
                client.register(Principal.generate("acme", PrincipalKind.OWNER))
    finally:
        again.process.send_signal(signal.SIGINT)
        again.process.wait(10)
