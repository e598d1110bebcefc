"""Signed owner/user calls: Ed25519 over method ‖ path ‖ timestamp ‖ SHA-256(body).

A call carries three headers: the principal's name, the time in unix milliseconds, and the
signature (base64) over the length-prefixed fields below, under a domain tag, so a signature for
one call can never pass for another's::

    "sealfn keyservice call v1\\0" | method | path | timestamp (decimal ms) | SHA-256(body)

The verifier accepts a timestamp within ``max_skew_s`` of its clock and remembers each accepted
call for twice that window, so a captured call cannot be replayed. Every failure is the same
opaque :class:`AccessDenied`; the reason goes to the debug log.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sealfn.errors import AccessDenied, InvalidInput
from sealfn.keyservice.wire import b64, check_id, unb64

log = logging.getLogger("sealfn.keyservice")

PRINCIPAL_HEADER = "x-sealfn-principal"
TIMESTAMP_HEADER = "x-sealfn-timestamp"
SIGNATURE_HEADER = "x-sealfn-signature"
DOMAIN = b"sealfn keyservice call v1\x00"
MAX_SKEW_S = 60.0  # seconds either side of the verifier's clock
DENIED = "authentication failed"
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class SignedCall:
    """One owner/user HTTP call as signed: what the signature covers, and who claims to sign."""

    method: str
    path: str
    body: bytes
    principal: str
    timestamp_ms: int  # unix milliseconds
    signature: bytes

    def message(self) -> bytes:
        return signing_message(self.method, self.path, self.timestamp_ms, self.body)

    def replay_key(self, public_key: bytes) -> bytes:
        """What the replay cache remembers: SHA-256 of the verifying key ‖ name ‖ message (not
        the signature, so no other encoding of it can pass twice)."""
        parts = (public_key, self.principal.encode(), self.message())
        return hashlib.sha256(_framed(*parts)).digest()

    def headers(self) -> dict[str, str]:
        return {
            PRINCIPAL_HEADER: self.principal,
            TIMESTAMP_HEADER: str(self.timestamp_ms),
            SIGNATURE_HEADER: b64(self.signature),
        }

    @classmethod
    def from_headers(
        cls, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> SignedCall:
        """The call an HTTP request claims to be; AccessDenied if a header is missing or bad."""
        principal = headers.get(PRINCIPAL_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER)
        try:
            check_id("principal", principal)
            signature_bytes = unb64(signature, "signature")
        except InvalidInput:
            log.debug("call refused: missing or malformed auth headers")
            raise AccessDenied(DENIED) from None
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 16):
            log.debug("call refused: malformed timestamp")
            raise AccessDenied(DENIED)
        return cls(method, path, body, str(principal), int(timestamp), signature_bytes)


def signing_message(method: str, path: str, timestamp_ms: int, body: bytes) -> bytes:
    """The bytes an owner/user signs for one call."""
    return _framed(
        DOMAIN,
        method.upper().encode("ascii"),
        path.encode("utf-8"),
        str(int(timestamp_ms)).encode("ascii"),
        hashlib.sha256(body).digest(),
    )


def sign_call(
    key: Ed25519PrivateKey,
    principal: str,
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp_ms: int,
) -> SignedCall:
    signature = key.sign(signing_message(method, path, timestamp_ms, body))
    return SignedCall(method.upper(), path, body, principal, timestamp_ms, signature)


def verify_call(
    public_key: bytes, call: SignedCall, now: float, max_skew_s: float = MAX_SKEW_S
) -> None:
    """Raise AccessDenied unless ``public_key`` signed ``call`` and its timestamp is fresh.

    ``now`` is unix seconds. The replay check is the caller's: it needs shared state.
    """
    if abs(call.timestamp_ms / 1000.0 - now) > max_skew_s:
        log.debug("call by %s refused: timestamp outside ±%g s", call.principal, max_skew_s)
        raise AccessDenied(DENIED)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(call.signature, call.message())
    except (InvalidSignature, ValueError):
        log.debug("call by %s refused: bad signature", call.principal)
        raise AccessDenied(DENIED) from None


def _framed(*parts: bytes) -> bytes:
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)
