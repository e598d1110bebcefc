"""A KeyService on a temporary store, with a settable clock, a simulated platform, enclaves of
known measurements and three principals; the steps owners and enclaves take, one method each."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from sealfn.envelope import KeyPair, ReplayGuard, generate_keypair, seal_request
from sealfn.keyservice.config import KeyServiceConfig
from sealfn.keyservice.keys import DeploymentKey
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.keyservice.release import KeyRelease, open_release, renewal_mac
from sealfn.keyservice.service import KeyService
from sealfn.tee import Manifest, SimulatedPlatform, SimulatedTee, report_data

MODEL = "digits"


@dataclass
class Clock:
    """Unix seconds that only move when a test says so."""

    now: float = field(default_factory=lambda: float(int(time.time())))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class RealClock(Clock):
    """The wall clock, for tests against a real server."""

    def __call__(self) -> float:
        return time.time()


def make_tee(platform: SimulatedPlatform, clock: Clock, role: str) -> SimulatedTee:
    """A simulated enclave whose measurement depends on ``role``."""
    return SimulatedTee(platform, Manifest.build(("sealfn.errors",), {"role": role}), clock=clock)


def simulated_config(platform: SimulatedPlatform, **changes: object) -> KeyServiceConfig:
    roots = frozenset({platform.root_public_key()})
    return KeyServiceConfig(accept_simulated=True, trusted_simulated_roots=roots, **changes)  # type: ignore[arg-type]


class Harness:
    """Everything a KeyService test needs; ``service`` is replaced by :meth:`reopen`."""

    def __init__(
        self, folder: Path, config: KeyServiceConfig | None = None, clock: Clock | None = None
    ) -> None:
        self.folder = folder
        self.clock = clock or Clock()
        self.platform = SimulatedPlatform.load_or_create(folder / "platform")
        self.ks_tee = make_tee(self.platform, self.clock, "keyservice")
        self.enclave = make_tee(self.platform, self.clock, "enclave")
        self.rogue = make_tee(self.platform, self.clock, "enclave, patched")
        self.db = folder / "keyservice.db"
        self.config = config or simulated_config(self.platform)
        self.service = KeyService.open(self.db, self.ks_tee, self.config)
        self.owner = Principal.generate("acme", PrincipalKind.OWNER)
        self.alice = Principal.generate("alice", PrincipalKind.USER)
        self.bob = Principal.generate("bob", PrincipalKind.USER)
        self.model_key = secrets.token_bytes(32)

    def reopen(self, config: KeyServiceConfig | None = None) -> KeyService:
        """A new KeyService object on the same store and TEE, as after a restart."""
        self.service.close()
        self.service = KeyService.open(self.db, self.ks_tee, config or self.config)
        return self.service

    # ---- owners and users ----------------------------------------------------------------------

    def register(self, principal: Principal) -> None:
        call = principal.sign("POST", "/v1/principals", b"{}", now=self.clock())
        self.service.register(call, principal.kind, principal.public_key, self.clock())

    def upload(
        self, model_id: str = MODEL, model_key: bytes | None = None, owner: Principal | None = None
    ) -> DeploymentKey:
        """Seal the model key to the service's own key, as an owner's client does; upload it."""
        owner = owner or self.owner
        key, _ = self.service.attestation(secrets.token_bytes(32))
        sealed, _ = seal_request(
            model_key or self.model_key,
            key.public_key,
            model_id=model_id,
            user_id=owner.name,
            suite=key.suite,
            now=self.clock(),
        )
        call = owner.sign("POST", f"/v1/models/{model_id}/key", sealed, now=self.clock())
        return self.service.upload_model_key(call, model_id, sealed, now=self.clock())

    def grant(
        self,
        user: str,
        model_id: str = MODEL,
        measurements: list[bytes] | None = None,
        owner: Principal | None = None,
    ) -> None:
        owner = owner or self.owner
        call = owner.sign("PUT", f"/v1/models/{model_id}/grants/{user}", b"{}", now=self.clock())
        allowed = measurements or [self.enclave.measurement()]
        self.service.grant(call, model_id, user, allowed, self.clock())

    def revoke(self, user: str, model_id: str = MODEL, owner: Principal | None = None) -> None:
        owner = owner or self.owner
        call = owner.sign("DELETE", f"/v1/models/{model_id}/grants/{user}", b"", now=self.clock())
        self.service.revoke(call, model_id, user, self.clock())

    def deploy(self) -> DeploymentKey:
        """Owner, alice, bob registered; MODEL uploaded; alice and bob granted on the enclave."""
        for principal in (self.owner, self.alice, self.bob):
            self.register(principal)
        deployment = self.upload()
        self.grant("alice")
        self.grant("bob")
        return deployment

    # ---- enclaves ------------------------------------------------------------------------------

    def release(
        self, model_ids: list[str] | None = None, tee: SimulatedTee | None = None
    ) -> tuple[bytes, KeyPair]:
        """Challenge → evidence → release, as an enclave's cold start does; the sealed answer."""
        pair = generate_keypair()
        nonce = self.service.challenge(self.clock())
        evidence = (tee or self.enclave).evidence(report_data(pair.public_key, nonce))
        sealed = self.service.release(
            evidence, nonce, pair.public_key, model_ids or [MODEL], now=self.clock()
        )
        return sealed, pair

    def attest(
        self, model_ids: list[str] | None = None, tee: SimulatedTee | None = None
    ) -> tuple[KeyRelease, KeyPair]:
        sealed, pair = self.release(model_ids, tee)
        return open_release(sealed, pair, replay=ReplayGuard(), now=self.clock()), pair

    def renew(self, release: KeyRelease, pair: KeyPair) -> KeyRelease:
        timestamp = int(self.clock() * 1000)
        mac = renewal_mac(release.session_secret, release.session_id, timestamp)
        sealed = self.service.renew(release.session_id, timestamp, mac, self.clock())
        return open_release(sealed, pair, replay=ReplayGuard(), now=self.clock())


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run ``app`` on uvicorn on a loopback port in a thread; its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, ws="none", http="httptools"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
