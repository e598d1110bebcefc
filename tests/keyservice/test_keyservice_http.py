"""The KeyService over HTTP (uvicorn on loopback): the whole flow through KeyServiceClient and
KeyLease, the error → status table, opaque failures, and no secret in any log line."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from keyservice_harness import MODEL, Harness, serve

from sealfn.attestation import Policy
from sealfn.envelope import ReplayGuard, generate_keypair, open_request, seal_request
from sealfn.errors import (
    AccessDenied,
    AttestationError,
    Conflict,
    EnvelopeError,
    NotFound,
    PayloadTooLarge,
)
from sealfn.keyservice.app import create_app
from sealfn.keyservice.client import KeyServiceClient
from sealfn.keyservice.enclave import KeyLease
from sealfn.keyservice.keys import KeyServiceKey
from sealfn.keyservice.principal import Principal, PrincipalKind


@pytest.fixture
def url(ks: Harness) -> Iterator[str]:
    with serve(create_app(ks.service, max_body_bytes=64 << 10, clock=ks.clock)) as address:
        yield address


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url) as client:
        yield client


@pytest.fixture
def client(url: str) -> Iterator[KeyServiceClient]:
    with KeyServiceClient(url) as keyservice:
        yield keyservice


def policy(ks: Harness, *measurements: bytes) -> Policy:
    return Policy(
        frozenset(measurements or {ks.ks_tee.measurement()}),
        accept_simulated=True,
        trusted_simulated_roots=frozenset({ks.platform.root_public_key()}),
    )


def setup(ks: Harness, client: KeyServiceClient) -> KeyServiceKey:
    """What an owner does: check the KeyService, register everyone, upload, grant."""
    keyservice = client.attest(policy(ks))
    for principal in (ks.owner, ks.alice, ks.bob):
        client.register(principal)
    client.upload_model_key(ks.owner, MODEL, ks.model_key, keyservice)
    for user in ("alice", "bob"):
        client.grant(ks.owner, MODEL, user, [ks.enclave.measurement()])
    return keyservice


def test_owner_user_and_enclave_flow(ks: Harness, client: KeyServiceClient) -> None:
    setup(ks, client)
    deployment = client.deployment_key(MODEL, policy=policy(ks))  # attested by the KeyService
    assert deployment == client.deployment_key(MODEL)
    lease = KeyLease(client, ks.enclave, [MODEL], clock=ks.clock)
    release = lease.acquire()
    assert release.models[0].model_key == ks.model_key
    # alice seals to the deployment key; the enclave opens with the key it was released
    sealed, reply_key = seal_request(
        b"x", deployment.public_key, model_id=MODEL, user_id="alice", now=ks.clock()
    )
    keys = lease.model(MODEL)
    assert keys is not None
    opened = open_request(
        sealed, keys.keypair(), expected_model_id=MODEL, replay=ReplayGuard(), now=ks.clock()
    )
    assert lease.allows(MODEL, opened.header.user_id)
    assert reply_key.open_reply(opened.seal_reply(b"y")) == b"y"


def test_revocation_reaches_a_warm_enclave_within_one_lease(
    ks: Harness, client: KeyServiceClient
) -> None:
    setup(ks, client)
    lease = KeyLease(client, ks.enclave, [MODEL], clock=ks.clock)
    lease.acquire()
    before = client.stats()
    for _ in range(100):  # warm requests: the enclave checks its lease, never the KeyService
        assert lease.allows(MODEL, "bob")
    assert client.stats() == before
    client.revoke(ks.owner, MODEL, "bob")
    assert lease.allows(MODEL, "bob")  # until the next renewal…
    ks.clock.advance(2)
    assert lease.due()
    lease.renew()
    assert not lease.allows(MODEL, "bob")  # …at most one lease later
    assert lease.allows(MODEL, "alice")
    ks.clock.advance(4.5)  # a lease that is not renewed runs out: no keys at all
    assert lease.model(MODEL) is None


def test_a_lapsed_session_attests_again(ks: Harness, client: KeyServiceClient) -> None:
    setup(ks, client)
    lease = KeyLease(client, ks.enclave, [MODEL], clock=ks.clock)
    first = lease.acquire()
    ks.clock.advance(120)
    second = lease.renew()
    assert second.session_id != first.session_id
    assert client.stats()["release"] == 2


def test_a_keyservice_of_another_measurement_is_refused(
    ks: Harness, client: KeyServiceClient
) -> None:
    with pytest.raises(AttestationError):
        client.attest(policy(ks, ks.enclave.measurement()))
    setup(ks, client)
    with pytest.raises(AttestationError):
        client.deployment_key(MODEL, policy=policy(ks, ks.enclave.measurement()))


def test_errors_arrive_as_their_classes(ks: Harness, client: KeyServiceClient) -> None:
    keyservice = setup(ks, client)
    with pytest.raises(Conflict):
        client.register(Principal.generate("alice", PrincipalKind.USER))
    with pytest.raises(NotFound):
        client.deployment_key("ghost")
    with pytest.raises(AccessDenied, match="only the owner"):
        client.grant(ks.alice, MODEL, "bob", [ks.enclave.measurement()])
    with pytest.raises(AccessDenied, match="authentication failed"):
        client.grant(Principal.generate("mallory", PrincipalKind.OWNER), MODEL, "bob", [b"m" * 48])
    with pytest.raises(AccessDenied, match="measurement not allowed"):
        KeyLease(client, ks.rogue, [MODEL], clock=ks.clock).acquire()
    with pytest.raises(EnvelopeError):  # sealed to a key that is not the KeyService's
        forged = KeyServiceKey(generate_keypair().public_key, keyservice.suite, True)
        client.upload_model_key(ks.owner, "forged", ks.model_key, forged)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "case",
    [
        ("POST", "/v1/attest/release", "garbage evidence", 403, "AttestationError"),
        ("POST", "/v1/models/m2/key", "garbage envelope", 400, "EnvelopeError"),
        ("PUT", "/v1/models/digits/grants/bob", "unsigned", 403, "AccessDenied"),
        ("GET", "/v1/models/ghost/public-key", None, 404, "NotFound"),
        ("POST", "/v1/attest/release", "not json", 400, "InvalidInput"),
        ("POST", "/v1/attest/release", "wrong type", 400, "InvalidInput"),
        ("GET", "/attestation?nonce=zz", None, 400, "InvalidInput"),
        ("GET", "/attestation", None, 400, "InvalidInput"),
    ],
)
def test_error_statuses_and_opaque_messages(
    ks: Harness,
    client: KeyServiceClient,
    http: httpx.Client,
    case: tuple[str, str, str | None, int, str],
) -> None:
    method, path, body, status, error = case
    setup(ks, client)
    release = {
        "evidence": _b64(b"{}"),
        "nonce": _b64(client.challenge()),
        "public_key": _b64(generate_keypair().public_key),
        "suite": 1,
        "model_ids": [MODEL],
    }
    envelope = json.dumps({"sealed_key": _b64(b"\x89SFQ" + bytes(200))}).encode()
    contents = {
        "garbage evidence": json.dumps(release).encode(),
        "garbage envelope": envelope,
        "unsigned": b'{"measurements":[]}',
        "not json": b"{",
        "wrong type": json.dumps({**release, "model_ids": "digits"}).encode(),
        None: None,
    }
    headers = ks.owner.sign(method, path, envelope).headers() if body == "garbage envelope" else {}
    reply = http.request(method, path, content=contents[body], headers=headers)
    assert (reply.status_code, reply.json()["type"]) == (status, error)
    opaque = {"AttestationError": "attestation failed", "EnvelopeError": "cannot open envelope"}
    if error in opaque:  # no hint of which check failed
        assert reply.json()["error"] == opaque[error]


def test_oversized_bodies_are_refused(http: httpx.Client, client: KeyServiceClient) -> None:
    reply = http.post("/v1/attest/release", content=b"x" * (65 << 10))
    assert reply.status_code == 413
    with pytest.raises(PayloadTooLarge):
        client.release(b"e" * (64 << 10), b"n", b"k", [MODEL])


def test_health_and_stats(http: httpx.Client, client: KeyServiceClient) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    client.challenge()
    assert client.stats() == {"challenge": 1}


def test_no_secret_reaches_the_logs(
    ks: Harness, client: KeyServiceClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        setup(ks, client)
        lease = KeyLease(client, ks.enclave, [MODEL], clock=ks.clock)
        release = lease.acquire()
        ks.clock.advance(2)
        lease.renew()
        with pytest.raises(AccessDenied):
            KeyLease(client, ks.rogue, [MODEL], clock=ks.clock).acquire()
    keys = release.models[0]
    text = caplog.text.encode()
    assert b"released digits" in text  # the log does say what happened…
    for secret in (ks.model_key, keys.private_key, release.session_secret):
        for form in (secret.hex().encode(), base64.b64encode(secret), repr(secret).encode()):
            assert form not in text  # …but never with a key
