"""Sealed requests: the client seals, the gateway peeks at the header, the enclave opens."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sealfn.envelope import _hpke
from sealfn.envelope._failure import check_type, reject
from sealfn.envelope.format import (
    NONCE_BYTES,
    VERSION,
    RequestHeader,
    SealedRequest,
    Suite,
    decode_header,
)
from sealfn.envelope.keys import KeyPair
from sealfn.envelope.replay import ReplayGuard
from sealfn.envelope.reply import DEFAULT_BUCKETS, ReplyKey, seal_reply


@dataclass(frozen=True)
class OpenedRequest:
    """An opened request: its header, its plaintext, and what seals its reply."""

    header: RequestHeader
    plaintext: bytes = field(repr=False)
    _reply_key: ReplyKey = field(repr=False, compare=False)

    def seal_reply(self, plaintext: bytes, *, buckets: Sequence[int] = DEFAULT_BUCKETS) -> bytes:
        """Seal ``plaintext`` so that only this request's sender can open it."""
        return seal_reply(self._reply_key, plaintext, buckets)


def seal_request(
    plaintext: bytes,
    recipient_public_key: bytes,
    *,
    model_id: str,
    user_id: str,
    suite: Suite = Suite.X25519_SHA256_AES256GCM,
    now: float | None = None,
) -> tuple[bytes, ReplyKey]:
    """Seal ``plaintext`` to a deployment's public key; the ReplyKey opens the reply."""
    check_type("plaintext", plaintext, bytes)
    check_type("recipient_public_key", recipient_public_key, bytes)
    header = RequestHeader(
        VERSION, suite, model_id, user_id, int(_seconds(now) * 1000), os.urandom(NONCE_BYTES)
    )  # checks the types and sizes of the header fields
    info = header.to_bytes()
    sealed = _hpke.seal(suite, recipient_public_key, info, plaintext)
    return b"".join((info, *sealed.parts)), ReplyKey(sealed.secret, sealed.enc)


def peek_header(sealed: bytes) -> RequestHeader:
    """The clear header (of a request or a session request), for routing by model id; checks
    framing only, opens nothing."""
    return decode_header(sealed)


def open_request(
    sealed: bytes,
    keypair: KeyPair,
    *,
    expected_model_id: str | None,
    replay: ReplayGuard,
    now: float | None = None,
    max_skew_s: float = 30.0,
) -> OpenedRequest:
    """Open a sealed request, or raise the opaque ``EnvelopeError``.

    ``expected_model_id=None`` leaves it to the caller to run only ``header.model_id``, the id the
    sender bound into the request. ``max_skew_s`` may not exceed ``replay.window_s``: a request
    the guard has forgotten must already be too old to accept.
    """
    check_type("keypair", keypair, KeyPair)
    check_type("replay", replay, ReplayGuard)
    if expected_model_id is not None:
        check_type("expected_model_id", expected_model_id, str)
    check_type("max_skew_s", max_skew_s, (int, float))
    if not 0 <= max_skew_s <= replay.window_s:
        raise ValueError(f"max_skew_s must be in [0, replay.window_s], got {max_skew_s}")
    now_s = _seconds(now)
    request = SealedRequest.from_bytes(sealed)
    check_addressed(request.header, keypair.suite, expected_model_id)
    check_fresh(request.header, now_s, max_skew_s)
    opened = _hpke.open_(keypair.suite, keypair._loaded, request.header_bytes, request.kem_output)
    replay.check(request.header, now_s)  # after open: only authentic requests enter the guard
    return OpenedRequest(request.header, opened.plaintext, ReplyKey(opened.secret, opened.enc))


def check_addressed(header: RequestHeader, suite: Suite, expected_model_id: str | None) -> None:
    if header.suite is not suite:
        raise reject("request suite differs from the key pair's")
    if expected_model_id is not None and header.model_id != expected_model_id:
        raise reject("request is for another model")


def check_fresh(header: RequestHeader, now: float, max_skew_s: float) -> None:
    if abs(now * 1000 - header.timestamp_ms) > max_skew_s * 1000:
        raise reject("timestamp outside the allowed skew")


def _seconds(now: float | None) -> float:
    """The injected wall-clock time, or the current one; seconds since the Unix epoch."""
    if now is None:
        return time.time()
    check_type("now", now, (int, float))
    return now
