"""Signed owner/user calls: every forgery, staleness and replay is the same opaque denial."""

from __future__ import annotations

from dataclasses import replace

import pytest
from keyservice_harness import Harness

from sealfn.errors import AccessDenied, Conflict, InvalidInput
from sealfn.keyservice.auth import (
    DENIED,
    PRINCIPAL_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignedCall,
    signing_message,
    verify_call,
)
from sealfn.keyservice.principal import Principal, PrincipalKind

NOW = 1_800_000_000.0


@pytest.fixture
def signer() -> Principal:
    return Principal.generate("acme", PrincipalKind.OWNER)


def test_the_message_covers_every_field() -> None:
    base = signing_message("PUT", "/v1/models/m/grants/u", 1000, b"{}")
    assert base == signing_message("put", "/v1/models/m/grants/u", 1000, b"{}")
    for other in (
        signing_message("DELETE", "/v1/models/m/grants/u", 1000, b"{}"),
        signing_message("PUT", "/v1/models/m/grants/v", 1000, b"{}"),
        signing_message("PUT", "/v1/models/m/grants/u", 1001, b"{}"),
        signing_message("PUT", "/v1/models/m/grants/u", 1000, b"{ }"),
    ):
        assert other != base


def test_a_good_call_verifies(signer: Principal) -> None:
    call = signer.sign("PUT", "/p", b"body", now=NOW)
    verify_call(signer.public_key, call, NOW + 59)
    verify_call(signer.public_key, call, NOW - 59)


@pytest.mark.parametrize(
    "change",
    [
        {"method": "DELETE"},
        {"path": "/other"},
        {"body": b"Body"},
        {"timestamp_ms": int(NOW * 1000) + 1},
        {"signature": bytes(64)},
    ],
    ids=["method", "path", "body", "timestamp", "signature"],
)
def test_any_tampering_is_denied(signer: Principal, change: dict[str, object]) -> None:
    call = replace(signer.sign("PUT", "/p", b"body", now=NOW), **change)  # type: ignore[arg-type]
    with pytest.raises(AccessDenied, match=f"^{DENIED}$"):
        verify_call(signer.public_key, call, NOW)


def test_a_flipped_signature_bit_is_denied(signer: Principal) -> None:
    call = signer.sign("PUT", "/p", b"body", now=NOW)
    flipped = bytes([call.signature[0] ^ 1]) + call.signature[1:]
    with pytest.raises(AccessDenied):
        verify_call(signer.public_key, replace(call, signature=flipped), NOW)


@pytest.mark.parametrize("skew", [-61.0, 61.0])
def test_a_stale_or_future_timestamp_is_denied(signer: Principal, skew: float) -> None:
    call = signer.sign("PUT", "/p", b"", now=NOW)
    with pytest.raises(AccessDenied):
        verify_call(signer.public_key, call, NOW - skew)


def test_another_key_is_denied(signer: Principal) -> None:
    call = signer.sign("PUT", "/p", b"", now=NOW)
    other = Principal.generate("acme", PrincipalKind.OWNER)
    with pytest.raises(AccessDenied):
        verify_call(other.public_key, call, NOW)


def test_headers_round_trip_and_missing_ones_are_denied(signer: Principal) -> None:
    call = signer.sign("POST", "/p", b"x", now=NOW)
    assert SignedCall.from_headers("POST", "/p", b"x", call.headers()) == call
    for missing in (PRINCIPAL_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        headers = {k: v for k, v in call.headers().items() if k != missing}
        with pytest.raises(AccessDenied):
            SignedCall.from_headers("POST", "/p", b"x", headers)
    for bad in ({TIMESTAMP_HEADER: "-5"}, {TIMESTAMP_HEADER: "1e9"}, {SIGNATURE_HEADER: "!!"}):
        with pytest.raises(AccessDenied):
            SignedCall.from_headers("POST", "/p", b"x", {**call.headers(), **bad})


def test_timestamps_of_one_signer_strictly_increase(signer: Principal) -> None:
    first = signer.sign("GET", "/p", b"", now=NOW)
    second = signer.sign("GET", "/p", b"", now=NOW)  # same instant, still different bytes
    assert second.timestamp_ms == first.timestamp_ms + 1
    assert first.replay_key(signer.public_key) != second.replay_key(signer.public_key)


# ---- through the service: who is registered, and replays -------------------------------------


def test_a_replayed_call_is_denied(ks: Harness) -> None:
    ks.deploy()
    call = ks.owner.sign("DELETE", "/v1/models/digits/grants/bob", b"", now=ks.clock())
    ks.service.revoke(call, "digits", "bob", ks.clock())
    ks.grant("bob")
    with pytest.raises(AccessDenied, match=f"^{DENIED}$"):
        ks.service.revoke(call, "digits", "bob", ks.clock.advance(5))


def test_the_replay_cache_survives_a_restart(ks: Harness) -> None:
    ks.deploy()
    call = ks.owner.sign("DELETE", "/v1/models/digits/grants/bob", b"", now=ks.clock())
    ks.service.revoke(call, "digits", "bob", ks.clock())
    ks.grant("bob")
    ks.reopen()
    with pytest.raises(AccessDenied):
        ks.service.revoke(call, "digits", "bob", ks.clock())


def test_unknown_and_impersonating_principals_are_denied(ks: Harness) -> None:
    ks.deploy()
    stranger = Principal.generate("mallory", PrincipalKind.OWNER)
    with pytest.raises(AccessDenied, match=f"^{DENIED}$"):
        ks.grant("mallory", owner=stranger)
    # alice signs with her own key but claims to be the owner
    impostor = Principal("acme", PrincipalKind.OWNER, ks.alice._key)
    with pytest.raises(AccessDenied, match=f"^{DENIED}$"):
        ks.revoke("bob", owner=impostor)


def test_registration_is_trust_on_first_use(ks: Harness) -> None:
    ks.register(ks.alice)
    ks.register(ks.alice)  # the same key again: fine
    usurper = Principal.generate("alice", PrincipalKind.USER)
    with pytest.raises(Conflict, match="already registered"):
        ks.register(usurper)
    as_owner = Principal("alice", PrincipalKind.OWNER, ks.alice._key)
    ks.clock.advance(1)  # a new Principal object's first timestamp would repeat alice's first
    with pytest.raises(Conflict):
        ks.register(as_owner)


def test_registration_must_be_signed_by_the_registered_key(ks: Harness) -> None:
    victim = Principal.generate("victim", PrincipalKind.USER)
    call = ks.alice.sign("POST", "/v1/principals", b"{}", now=ks.clock())
    call = replace(call, principal="victim")
    with pytest.raises(AccessDenied):
        ks.service.register(call, PrincipalKind.USER, victim.public_key, ks.clock())
    with pytest.raises(InvalidInput):
        ks.service.register(call, PrincipalKind.USER, b"short", ks.clock())
