"""`python -m sealfn.keyservice` as a real process on loopback: it starts, says loudly that it
accepts simulated enclaves, attests itself, serves the enclave flow fast, and stops cleanly."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import statistics
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
from sealfn.envelope import ReplayGuard, generate_keypair
from sealfn.keyservice.client import KeyServiceClient, verify_keyservice
from sealfn.keyservice.enclave import KeyLease
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.keyservice.release import open_release
from sealfn.keyservice.server import PACKAGES
from sealfn.tee import Manifest, SimulatedPlatform, SimulatedTee, report_data

LATENCY_TARGET_S = 0.050  # challenge + evidence + release + open, over loopback HTTP


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


@pytest.fixture
def keyservice(tmp_path: Path) -> Iterator[Running]:
    port, platform_dir = _free_port(), tmp_path / "platform"
    log = tmp_path / "keyservice.log"
    command = [
        sys.executable, "-m", "sealfn.keyservice", "--port", str(port),
        "--db", str(tmp_path / "ks.db"), "--platform-dir", str(platform_dir),
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
    running = Running(url, process, log, SimulatedPlatform.load_or_create(platform_dir))
    yield running
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(10)


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


def test_challenge_and_release_latency(keyservice: Running) -> None:
    enclave = SimulatedTee(keyservice.platform, Manifest.build(("sealfn.errors",), {"r": 1}))
    owner = Principal.generate("acme", PrincipalKind.OWNER)
    with KeyServiceClient(keyservice.url) as client:
        key = client.attest(keyservice.policy())
        client.register(owner)
        client.upload_model_key(owner, MODEL, secrets.token_bytes(32), key)
        client.grant(owner, MODEL, "acme", [enclave.measurement()])
        pair = generate_keypair()
        replay = ReplayGuard()
        timings, renewals = [], []
        for _ in range(100):
            start = time.perf_counter()
            nonce = client.challenge()
            evidence = enclave.evidence(report_data(pair.public_key, nonce))
            sealed = client.release(evidence, nonce, pair.public_key, [MODEL])
            release = open_release(sealed, pair, replay=replay)
            timings.append(time.perf_counter() - start)
            start = time.perf_counter()
            open_release(
                client.renew(release.session_id, release.session_secret), pair, replay=replay
            )
            renewals.append(time.perf_counter() - start)
    p50, p99 = statistics.median(timings), statistics.quantiles(timings, n=100)[98]
    renew_p50 = statistics.median(renewals)
    print(
        f"\nkeyservice over loopback HTTP: challenge+release p50 {p50 * 1e3:.2f} ms, "
        f"p99 {p99 * 1e3:.2f} ms; renew p50 {renew_p50 * 1e3:.2f} ms"
    )
    assert p50 <= LATENCY_TARGET_S
