"""Sealed sessions: one HPKE exchange per session, then one AES-GCM seal per request.

A per-request HPKE exchange costs two X25519 operations and a key schedule on each side (about
0.3 ms of CPU per request here). A session pays that once: its **ticket** is an ordinary
version-1 sealed request to the deployment key, and the 32-byte secret that request's context
yields (exported as in RFC 9458, or carried for the hybrid suite; see ``__init__``) is the
session's root secret ``S``. Each session request carries the ticket, so *any* enclave holding the
deployment key can open it once and cache ``S`` — no affinity between a client and an instance —
and the request itself is::

    key   = HKDF-SHA256(S, info = "sealfn/v1 session request")        (once per session)
    sealed = header(v2) ‖ ticket ‖ iv ‖ AES-256-GCM(key, iv, aad = header ‖ SHA-256(ticket), body)
    reply secret = HKDF-SHA256(S, info = "sealfn/v1 session reply" ‖ header)   (per request)

The clear header (model, user, timestamp, random nonce) is checked as for a version-1 request:
bound as AAD, fresh within ±30 s, (user, nonce) never seen before. The ticket is bound to the
same model and user (its own HPKE ``info``), may be reused until ``max_age_s`` after it was made,
and is opened without a replay check (reuse is its purpose). The first time an enclave opens a
ticket it hands the ticket's plaintext to ``accept_ticket`` (the caller verifies the user's
signature there) and caches the session only if that returns. Random 96-bit IVs are safe far
beyond a session's life (NIST SP 800-38D: 2³² messages per key); sessions end after
``max_age_s``.

What a session changes: compromise of the deployment private key exposes a session's requests,
as it exposes version-1 requests; a session's requests are linkable to each other by their
ticket, which version-1 requests are only by their user id, already in clear.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from sealfn.envelope import _hpke
from sealfn.envelope._failure import check_type, reject
from sealfn.envelope.format import (
    IV_BYTES,
    NONCE_BYTES,
    SESSION_VERSION,
    RequestHeader,
    SealedRequest,
    SessionRequest,
    Suite,
)
from sealfn.envelope.keys import KeyPair
from sealfn.envelope.replay import ReplayGuard
from sealfn.envelope.reply import ReplyKey
from sealfn.envelope.request import OpenedRequest, check_addressed, check_fresh, seal_request

DEFAULT_MAX_AGE_S = 600.0  # seconds a ticket may be used after it was made
_REQUEST_INFO = b"sealfn/v1 session request"
_REPLY_INFO = b"sealfn/v1 session reply"


def _expand(secret: bytes, info: bytes) -> bytes:
    return HKDFExpand(hashes.SHA256(), 32, info).derive(secret)


@dataclass(frozen=True, eq=False)
class _Keys:
    """What a session's root secret gives: the request AEAD and the root for reply secrets."""

    request: AESGCM = field(repr=False)
    root: bytes = field(repr=False)

    @classmethod
    def derive(cls, root: bytes) -> _Keys:
        return cls(AESGCM(_expand(root, _REQUEST_INFO)), root)

    def reply_key(self, header_bytes: bytes, ticket_digest: bytes) -> ReplyKey:
        return ReplyKey(_expand(self.root, _REPLY_INFO + header_bytes), ticket_digest)


class ClientSession:
    """The sender's side of one session with one deployment (model), as one user."""

    def __init__(
        self,
        ticket: bytes,
        root: bytes,
        *,
        suite: Suite,
        model_id: str,
        user_id: str,
        created: float,
        max_age_s: float = DEFAULT_MAX_AGE_S,
    ) -> None:
        self.ticket = ticket
        self.suite, self.model_id, self.user_id = suite, model_id, user_id
        self.created = created  # seconds since the Unix epoch
        self.max_age_s = max_age_s
        self._keys = _Keys.derive(root)
        self._digest = hashlib.sha256(ticket).digest()

    def __repr__(self) -> str:
        return f"ClientSession(model_id={self.model_id!r}, user_id={self.user_id!r})"

    def fresh(self, now: float | None = None, margin_s: float = 30.0) -> bool:
        """Whether an enclave will still accept the ticket for the next ``margin_s`` seconds."""
        return _seconds(now) + margin_s < self.created + self.max_age_s

    def seal(self, plaintext: bytes, now: float | None = None) -> tuple[bytes, ReplyKey]:
        """A session request carrying ``plaintext``; the ReplyKey opens its reply."""
        check_type("plaintext", plaintext, bytes)
        header = RequestHeader(
            SESSION_VERSION,
            self.suite,
            self.model_id,
            self.user_id,
            int(_seconds(now) * 1000),
            os.urandom(NONCE_BYTES),
        ).to_bytes()
        iv = os.urandom(IV_BYTES)
        ciphertext = self._keys.request.encrypt(iv, plaintext, header + self._digest)
        sealed = SessionRequest.pack(header, self.ticket, iv, ciphertext)
        return sealed, self._keys.reply_key(header, self._digest)


def start_session(
    ticket_plaintext: bytes,
    recipient_public_key: bytes,
    *,
    model_id: str,
    user_id: str,
    suite: Suite = Suite.X25519_SHA256_AES256GCM,
    now: float | None = None,
    max_age_s: float = DEFAULT_MAX_AGE_S,
) -> ClientSession:
    """Make a session: its ticket is a sealed request carrying ``ticket_plaintext`` (what the
    enclave's ``accept_ticket`` checks, such as the user's signature)."""
    created = _seconds(now)
    ticket, reply_key = seal_request(
        ticket_plaintext,
        recipient_public_key,
        model_id=model_id,
        user_id=user_id,
        suite=suite,
        now=created,
    )
    root = reply_key._secret  # the secret the ticket's HPKE context yields (package-private)
    return ClientSession(
        ticket,
        root,
        suite=suite,
        model_id=model_id,
        user_id=user_id,
        created=created,
        max_age_s=max_age_s,
    )


class AcceptTicket(Protocol):
    """Checks a ticket's plaintext the first time an enclave sees it; raises to refuse it."""

    def __call__(self, header: RequestHeader, plaintext: memoryview) -> None: ...


@dataclass(frozen=True, eq=False)
class _Session:
    keys: _Keys
    model_id: str
    user_id: str
    expires: float  # seconds since the Unix epoch


class SessionCache:
    """The enclave's side: tickets it has opened, by SHA-256, least recently used dropped first.

    One cache per deployment key pair. Thread-safe; a miss costs one HPKE open and one
    ``accept_ticket`` call, a hit one dictionary lookup.
    """

    def __init__(self, *, max_sessions: int = 4096, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        if max_sessions <= 0 or not max_age_s > 0:
            raise ValueError(f"max_sessions and max_age_s must be positive: {max_sessions}")
        self.max_sessions = max_sessions
        self.max_age_s = float(max_age_s)
        self._sessions: OrderedDict[bytes, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(
        self,
        sealed: bytes,
        keypair: KeyPair,
        *,
        expected_model_id: str | None,
        replay: ReplayGuard,
        accept_ticket: AcceptTicket,
        now: float | None = None,
        max_skew_s: float = 30.0,
    ) -> OpenedRequest:
        """Open a session request, or raise the opaque ``EnvelopeError`` (or what
        ``accept_ticket`` raises, the first time a ticket is seen)."""
        check_type("keypair", keypair, KeyPair)
        now_s = _seconds(now)
        request = SessionRequest.from_bytes(sealed)
        check_addressed(request.header, keypair.suite, expected_model_id)
        check_fresh(request.header, now_s, max_skew_s)
        digest = hashlib.sha256(request.ticket).digest()
        session = self._session(
            digest,
            request,
            keypair=keypair,
            accept_ticket=accept_ticket,
            now=now_s,
            max_skew_s=max_skew_s,
        )
        try:
            plaintext = session.keys.request.decrypt(
                request.iv, request.ciphertext, request.header_bytes + digest
            )
        except (InvalidTag, ValueError) as exc:
            raise reject(f"session request open failed ({type(exc).__name__})") from None
        replay.check(request.header, now_s)  # after open: only authentic requests enter
        reply_key = session.keys.reply_key(request.header_bytes, digest)
        return OpenedRequest(request.header, plaintext, reply_key)

    def _session(
        self,
        digest: bytes,
        request: SessionRequest,
        *,
        keypair: KeyPair,
        accept_ticket: AcceptTicket,
        now: float,
        max_skew_s: float,
    ) -> _Session:
        with self._lock:
            session = self._sessions.get(digest)
            if session is not None:
                self._sessions.move_to_end(digest)
        if session is None:
            session = self._open_ticket(request.ticket, keypair, accept_ticket, now, max_skew_s)
            with self._lock:
                self._sessions[digest] = session
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
        header = request.header
        if (header.model_id, header.user_id) != (session.model_id, session.user_id):
            raise reject("session request and ticket name different models or users")
        if now > session.expires:
            with self._lock:
                self._sessions.pop(digest, None)
            raise reject("session ticket expired")
        return session

    def _open_ticket(
        self,
        ticket: bytes,
        keypair: KeyPair,
        accept_ticket: AcceptTicket,
        now: float,
        max_skew_s: float,
    ) -> _Session:
        request = SealedRequest.from_bytes(ticket)
        check_addressed(request.header, keypair.suite, None)
        age = now - request.header.timestamp_ms / 1000
        if not -max_skew_s <= age <= self.max_age_s:
            raise reject("session ticket too old or from the future")
        opened = _hpke.open_(
            keypair.suite, keypair._loaded, request.header_bytes, request.kem_output
        )
        accept_ticket(request.header, memoryview(opened.plaintext))
        expires = request.header.timestamp_ms / 1000 + self.max_age_s
        header = request.header
        return _Session(_Keys.derive(opened.secret), header.model_id, header.user_id, expires)


def _seconds(now: float | None) -> float:
    if now is None:
        return time.time()
    check_type("now", now, (int, float))
    return float(now)
