"""Signed inference requests, per request and in sessions: who may speak for a user."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealfn.envelope import ReplayGuard, generate_keypair
from sealfn.envelope.session import SessionCache
from sealfn.errors import AccessDenied, EnvelopeError
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.sealed_request import (
    open_inference,
    open_inference_reply,
    seal_in_session,
    seal_inference,
    start_session,
)

NOW = 1_800_000_000.0
ALICE = Principal.generate("alice", PrincipalKind.USER)
KEYPAIR = generate_keypair()


def _grants(*granted: Principal) -> Callable[[str], Ed25519PublicKey]:
    keys = {p.name: Ed25519PublicKey.from_public_bytes(p.public_key) for p in granted}

    def user_key(user: str) -> Ed25519PublicKey:
        if user not in keys:
            raise AccessDenied("access denied")
        return keys[user]

    return user_key


def _open(sealed: bytes, user_key: Callable[[str], Ed25519PublicKey], sessions: SessionCache):
    return open_inference(
        sealed, KEYPAIR, model_id="m", user_key=user_key, replay=ReplayGuard(),
        sessions=sessions, now=NOW,
    )  # fmt: skip


def test_session_requests_open_and_their_replies_reach_only_the_sender() -> None:
    session = start_session(public_key=KEYPAIR.public_key, model_id="m", signer=ALICE, now=NOW)
    sessions = SessionCache()
    for body in (b"first", b"second"):
        sealed, reply_key = seal_in_session(session, body, header_length=None, now=NOW)
        request = _open(sealed, _grants(ALICE), sessions)
        assert bytes(request.body) == body and request.header.user_id == "alice"
        reply = open_inference_reply(reply_key, request.seal_reply(200, b"ok"))
        assert (reply.status, reply.body) == (200, b"ok")


def test_an_impostor_cannot_start_a_session_for_a_granted_user() -> None:
    impostor = Principal.generate("alice", PrincipalKind.USER)
    session = start_session(public_key=KEYPAIR.public_key, model_id="m", signer=impostor, now=NOW)
    sealed, _ = seal_in_session(session, b"x", header_length=None, now=NOW)
    sessions = SessionCache()
    with pytest.raises(EnvelopeError):
        _open(sealed, _grants(ALICE), sessions)
    assert len(sessions) == 0


def test_revocation_reaches_an_open_session() -> None:
    session = start_session(public_key=KEYPAIR.public_key, model_id="m", signer=ALICE, now=NOW)
    sessions = SessionCache()
    first, _ = seal_in_session(session, b"x", header_length=None, now=NOW)
    _open(first, _grants(ALICE), sessions)
    second, _ = seal_in_session(session, b"y", header_length=None, now=NOW)
    with pytest.raises(AccessDenied):
        _open(second, _grants(), sessions)  # alice's grant is gone; her session is cached


def test_session_requests_are_refused_where_sessions_are_off() -> None:
    session = start_session(public_key=KEYPAIR.public_key, model_id="m", signer=ALICE, now=NOW)
    sealed, _ = seal_in_session(session, b"x", header_length=None, now=NOW)
    with pytest.raises(EnvelopeError):
        open_inference(
            sealed, KEYPAIR, model_id="m", user_key=_grants(ALICE), replay=ReplayGuard(), now=NOW
        )


def test_per_request_hpke_still_works_next_to_sessions() -> None:
    sealed, reply_key = seal_inference(
        b"body", header_length=7, public_key=KEYPAIR.public_key, model_id="m", signer=ALICE,
        now=NOW,
    )  # fmt: skip
    request = _open(sealed, _grants(ALICE), SessionCache())
    assert (bytes(request.body), request.header_length) == (b"body", 7)
    assert open_inference_reply(reply_key, request.seal_reply(200, b"r")).body == b"r"
