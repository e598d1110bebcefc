"""A sealed inference request: a user-signed Open Inference Protocol body inside an HPKE envelope.

HPKE's base mode binds the user id in the request header but does not prove it: anyone holding
the deployment public key could claim to be a granted user. So the sealed plaintext starts with
the user's Ed25519 signature over ``DOMAIN ‖ model id ‖ user id ‖ SHA-256(rest)`` (ids
length-prefixed), and the enclave verifies it with the signing key the KeyService released for
that granted user, against the ids bound in the HPKE header. The signature travels encrypted: the
platform sees neither it nor the body and cannot lift it into a request of its own. Freshness and
replay are the envelope's (timestamp + nonce in the header).

Sessions (``start_session`` / ``seal_in_session``; see ``envelope.session``): one HPKE ticket per
session whose plaintext is ``signature (64) ‖ u64 session start (ms)``, the signature over
``SESSION_DOMAIN ‖ model id ‖ user id ‖ start``; the enclave verifies it the first time it sees
the ticket, and checks the user's grant again on every request (revocation). Session requests
carry ``u32 OIP JSON-header length ‖ OIP body``, authenticated by the session's AEAD.

Request plaintext: ``signature (64) ‖ u32 OIP JSON-header length (0xFFFFFFFF: none) ‖ OIP body``.
Reply plaintext:   ``u16 HTTP status ‖ u32 OIP JSON-header length ‖ OIP body or {"error": ...}``.
The reply is padded by the envelope to a size bucket, so its length says little.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealfn.envelope import (
    KeyPair,
    OpenedRequest,
    ReplayGuard,
    ReplyKey,
    RequestHeader,
    Suite,
    open_request,
    seal_request,
    session,
)
from sealfn.envelope.format import SESSION_VERSION
from sealfn.envelope.session import ClientSession, SessionCache
from sealfn.errors import EnvelopeError

log = logging.getLogger("sealfn.sealed_request")

CONTENT_TYPE = "application/vnd.sealfn.sealed"
DOMAIN = b"sealfn/v1 inference request\x00"
SESSION_DOMAIN = b"sealfn/v1 inference session\x00"
SIGNATURE_SIZE = 64
_NO_HEADER = 0xFFFFFFFF
_U16 = struct.Struct(">H")
_FRAME = struct.Struct(">I")
_REPLY = struct.Struct(">HI")
_START = struct.Struct(">Q")
_VERSION_AT = 4  # the version byte follows the 4-byte magic in every request

UserKeys = Callable[[str], Ed25519PublicKey]
"""A granted user's verifying key; raises AccessDenied when the user has no grant."""


class Signer(Protocol):
    """Who signs requests (a `keyservice.principal.Principal`): a name and an Ed25519 key."""

    @property
    def name(self) -> str: ...

    def sign_message(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class SealedInference:
    """An opened request whose signature verified: who sent it, and its OIP body."""

    opened: OpenedRequest
    body: memoryview  # a view into the opened plaintext: the body is not copied again
    header_length: int | None

    @property
    def header(self) -> RequestHeader:
        return self.opened.header

    def seal_reply(self, status: int, body: bytes, header_length: int | None = None) -> bytes:
        """Seal the answer (an OIP response, or an error) so only this request's sender reads it."""
        length = _NO_HEADER if header_length is None else header_length
        return self.opened.seal_reply(_REPLY.pack(status, length) + body)


@dataclass(frozen=True)
class InferenceReply:
    status: int
    body: bytes
    header_length: int | None


def seal_inference(
    body: bytes,
    *,
    header_length: int | None,
    public_key: bytes,
    model_id: str,
    signer: Signer,
    suite: Suite = Suite.X25519_SHA256_AES256GCM,
    now: float | None = None,
) -> tuple[bytes, ReplyKey]:
    """Client side: sign and seal an OIP body for ``model_id``; the ReplyKey opens the answer."""
    framed = _FRAME.pack(_NO_HEADER if header_length is None else header_length) + body
    signature = signer.sign_message(_digest(model_id, signer.name, framed))
    return seal_request(
        signature + framed, public_key, model_id=model_id, user_id=signer.name, suite=suite, now=now
    )


def start_session(
    *,
    public_key: bytes,
    model_id: str,
    signer: Signer,
    suite: Suite = Suite.X25519_SHA256_AES256GCM,
    now: float | None = None,
) -> ClientSession:
    """Client side: a session with ``model_id``'s deployment, signed once by ``signer``."""
    started = time.time() if now is None else now
    start = _START.pack(int(started * 1000))
    signature = signer.sign_message(_session_digest(model_id, signer.name, start))
    return session.start_session(
        signature + start, public_key, model_id=model_id, user_id=signer.name, suite=suite,
        now=started,
    )  # fmt: skip


def seal_in_session(
    client_session: ClientSession,
    body: bytes,
    *,
    header_length: int | None,
    now: float | None = None,
) -> tuple[bytes, ReplyKey]:
    """Client side: an OIP body as a session request; the ReplyKey opens the answer."""
    framed = _FRAME.pack(_NO_HEADER if header_length is None else header_length) + body
    return client_session.seal(framed, now)


def open_inference(
    sealed: bytes,
    keypair: KeyPair,
    *,
    model_id: str,
    user_key: UserKeys,
    replay: ReplayGuard,
    sessions: SessionCache | None = None,
    now: float | None = None,
) -> SealedInference:
    """Enclave side: open, then verify the sender's signature (of the request, or of its
    session's ticket the first time ``sessions`` sees it).

    Crypto failures are the one opaque EnvelopeError; a sender without a grant is refused by
    ``user_key`` (AccessDenied) before its signature is checked, and on every session request.
    """
    if len(sealed) > _VERSION_AT and sealed[_VERSION_AT] == SESSION_VERSION:
        if sessions is None:
            log.debug("session request where sessions are not enabled")
            raise EnvelopeError()
        return _open_in_session(sealed, keypair, model_id, user_key, replay, sessions, now)
    opened = open_request(sealed, keypair, expected_model_id=model_id, replay=replay, now=now)
    plaintext = memoryview(opened.plaintext)  # slices below are views, not copies
    if len(plaintext) < SIGNATURE_SIZE + _FRAME.size:
        log.debug("sealed request too short for its signature")
        raise EnvelopeError()
    key = user_key(opened.header.user_id)
    signature, framed = plaintext[:SIGNATURE_SIZE], plaintext[SIGNATURE_SIZE:]
    try:
        key.verify(bytes(signature), _digest(opened.header.model_id, opened.header.user_id, framed))
    except InvalidSignature:
        log.debug("sealed request signature does not verify")
        raise EnvelopeError() from None
    (length,) = _FRAME.unpack_from(framed)
    return SealedInference(opened, framed[_FRAME.size :], None if length == _NO_HEADER else length)


def open_inference_reply(reply_key: ReplyKey, sealed_reply: bytes) -> InferenceReply:
    """Client side: open the enclave's answer (EnvelopeError if it is not for this request)."""
    plaintext = reply_key.open_reply(sealed_reply)
    if len(plaintext) < _REPLY.size:
        raise EnvelopeError()
    status, length = _REPLY.unpack_from(plaintext)
    body = plaintext[_REPLY.size :]
    return InferenceReply(status, body, None if length == _NO_HEADER else length)


def _open_in_session(  # noqa: PLR0917 - open_inference's arguments, passed on once
    sealed: bytes,
    keypair: KeyPair,
    model_id: str,
    user_key: UserKeys,
    replay: ReplayGuard,
    sessions: SessionCache,
    now: float | None,
) -> SealedInference:
    def accept_ticket(header: RequestHeader, plaintext: memoryview) -> None:
        if len(plaintext) != SIGNATURE_SIZE + _START.size:
            log.debug("session ticket of the wrong size")
            raise EnvelopeError()
        start = bytes(plaintext[SIGNATURE_SIZE:])
        if _START.unpack(start)[0] != header.timestamp_ms:
            log.debug("session ticket signed for another start time")
            raise EnvelopeError()
        try:
            user_key(header.user_id).verify(
                bytes(plaintext[:SIGNATURE_SIZE]),
                _session_digest(header.model_id, header.user_id, start),
            )
        except InvalidSignature:
            log.debug("session ticket signature does not verify")
            raise EnvelopeError() from None

    opened = sessions.open(
        sealed, keypair, expected_model_id=model_id, replay=replay, accept_ticket=accept_ticket,
        now=now,
    )  # fmt: skip
    user_key(opened.header.user_id)  # the grant, checked on every request: revocation applies
    framed = memoryview(opened.plaintext)
    if len(framed) < _FRAME.size:
        log.debug("session request too short for its frame")
        raise EnvelopeError()
    (length,) = _FRAME.unpack_from(framed)
    return SealedInference(opened, framed[_FRAME.size :], None if length == _NO_HEADER else length)


def _session_digest(model_id: str, user_id: str, start: bytes) -> bytes:
    ids = b"".join(_U16.pack(len(p)) + p for p in (model_id.encode(), user_id.encode()))
    return SESSION_DOMAIN + ids + start


def _digest(model_id: str, user_id: str, framed: bytes | memoryview) -> bytes:
    ids = b"".join(_U16.pack(len(p)) + p for p in (model_id.encode(), user_id.encode()))
    return DOMAIN + ids + hashlib.sha256(framed).digest()
