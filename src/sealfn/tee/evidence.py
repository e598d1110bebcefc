"""Wire formats of evidence: the versioned envelope, and the simulated TEE's signed token and
attestation-key certificate.

Envelope (canonical JSON, UTF-8)::

    {"v": 1, "tee": "simulated" | "tdx" | "sev-snp" | "sgx-gramine",
     "token": b64url, "chain": [b64url, ...]}

``token`` is what the TEE produced: a signed claims token (simulated), a TDX or SGX quote, or an
SNP attestation report. ``chain`` holds certificates, leaf first: the simulated attestation-key
certificate, or whatever the hardware provider returned alongside its report (SNP's auxblob).

A signed blob is ``body ‖ Ed25519 signature (64 bytes)`` over ``domain ‖ body``, with a distinct
domain per kind of blob so a certificate can never pass for a token. Bodies are canonical JSON.

Parsers raise :class:`AttestationError` with a specific reason; the verifier logs that reason and
raises an opaque one instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sealfn.errors import AttestationError
from sealfn.tee.base import HARDWARE, SIMULATED, canonical_json

VERSION = 1
MAX_EVIDENCE = 64 * 1024  # bytes; hardware quotes with collateral are ~10 KiB
SIGNATURE_SIZE = 64  # Ed25519
TOKEN_DOMAIN = b"sealfn simulated evidence token v1\x00"
CERTIFICATE_DOMAIN = b"sealfn simulated attestation-key certificate v1\x00"
CERTIFICATE_KIND = "sealfn-simulated-attestation-key"

# The claims of a simulated token: exactly these keys, with these types.
CLAIM_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": int,
    "tee": str,
    "simulated": bool,
    "debug": bool,
    "measurement": str,  # hex
    "report_data": str,  # hex
    "iat": (int, float),  # unix time, seconds
    "platform": str,  # SHA-256 hex of the simulated root's public key
}
_CERTIFICATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": int,
    "kind": str,
    "subject": str,  # hex of the attestation key's raw Ed25519 public key
    "issuer": str,  # fingerprint of the root that signed it
    "iat": (int, float),
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One piece of evidence, as it travels from attester to verifier."""

    tee: str
    token: bytes
    chain: tuple[bytes, ...] = ()

    def to_bytes(self) -> bytes:
        return canonical_json(
            {"v": VERSION, "tee": self.tee, "token": _b64(self.token), "chain": _b64s(self.chain)}
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Evidence:
        if len(raw) > MAX_EVIDENCE:
            raise AttestationError(f"evidence of {len(raw)} bytes is over {MAX_EVIDENCE}")
        doc = _json_object(raw, {"v": int, "tee": str, "token": str, "chain": list}, "evidence")
        if doc["v"] != VERSION:
            raise AttestationError(f"evidence version {doc['v']!r} is not {VERSION}")
        if doc["tee"] not in (SIMULATED, *HARDWARE):
            raise AttestationError(f"evidence from unknown TEE {doc['tee']!r}")
        chain = tuple(_unb64(item) for item in doc["chain"])
        return cls(doc["tee"], _unb64(doc["token"]), chain)


@dataclass(frozen=True, slots=True)
class Certificate:
    """The simulated root's statement "this Ed25519 key is a simulated attestation key of mine"."""

    subject: bytes  # raw public key, 32 bytes
    issuer: str  # fingerprint of the root
    issued_at: float  # unix time, seconds

    def sign(self, root: Ed25519PrivateKey) -> bytes:
        body = {
            "version": VERSION,
            "kind": CERTIFICATE_KIND,
            "subject": self.subject.hex(),
            "issuer": self.issuer,
            "iat": self.issued_at,
        }
        return sign(root, CERTIFICATE_DOMAIN, canonical_json(body))

    @classmethod
    def issuer_of(cls, blob: bytes) -> str:
        """The claimed issuer, read before the signature is checked (to pick the root key)."""
        return str(_certificate_body(unsigned_body(blob))["issuer"])

    @classmethod
    def open(cls, blob: bytes, root: Ed25519PublicKey) -> Certificate:
        """Check ``root``'s signature and the body; the certified key."""
        body = _certificate_body(verify_signed(root, CERTIFICATE_DOMAIN, blob))
        if body["issuer"] != fingerprint(root):
            raise AttestationError("certificate issuer does not match the root that signed it")
        return cls(unhex(body["subject"], 32, "subject"), body["issuer"], float(body["iat"]))


def sign(key: Ed25519PrivateKey, domain: bytes, body: bytes) -> bytes:
    """``body ‖ signature`` over ``domain ‖ body``."""
    return body + key.sign(domain + body)


def verify_signed(key: Ed25519PublicKey, domain: bytes, blob: bytes) -> bytes:
    """The body of a signed blob if ``key`` signed it under ``domain``."""
    if len(blob) <= SIGNATURE_SIZE:
        raise AttestationError(f"signed blob of {len(blob)} bytes is too short")
    body, signature = blob[:-SIGNATURE_SIZE], blob[-SIGNATURE_SIZE:]
    try:
        key.verify(signature, domain + body)
    except InvalidSignature:
        raise AttestationError("bad signature") from None
    return body


def unsigned_body(blob: bytes) -> bytes:
    """The body of a signed blob, NOT verified: only to read which key should verify it."""
    if len(blob) <= SIGNATURE_SIZE:
        raise AttestationError(f"signed blob of {len(blob)} bytes is too short")
    return blob[:-SIGNATURE_SIZE]


def encode_claims(claims: dict[str, Any]) -> bytes:
    """Canonical JSON of a simulated token's claims, checked against :data:`CLAIM_TYPES`."""
    body = canonical_json(claims)
    decode_claims(body)
    return body


def decode_claims(body: bytes) -> dict[str, Any]:
    """The claims of a simulated token: exactly the keys of :data:`CLAIM_TYPES`, well typed."""
    claims = _json_object(body, CLAIM_TYPES, "claims")
    if claims["version"] != VERSION:
        raise AttestationError(f"claims version {claims['version']!r} is not {VERSION}")
    return claims


def fingerprint(key: Ed25519PublicKey | bytes) -> str:
    """SHA-256 hex of a raw Ed25519 public key: how a simulated root is named in claims."""
    raw = key if isinstance(key, bytes) else key.public_bytes_raw()
    digest = hashes.Hash(hashes.SHA256())
    digest.update(raw)
    return digest.finalize().hex()


def _certificate_body(raw: bytes) -> dict[str, Any]:
    body = _json_object(raw, _CERTIFICATE_TYPES, "certificate")
    if body["version"] != VERSION or body["kind"] != CERTIFICATE_KIND:
        raise AttestationError(f"certificate {body['kind']!r} v{body['version']!r} not supported")
    return body


def _json_object(
    raw: bytes, types: dict[str, type | tuple[type, ...]], what: str
) -> dict[str, Any]:
    """A JSON object with exactly the keys of ``types``, each of its type (bool is not int)."""
    try:
        doc = json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AttestationError(f"{what} is not strict JSON") from None
    if not isinstance(doc, dict) or set(doc) != set(types):
        raise AttestationError(f"{what} does not have exactly the fields {sorted(types)}")
    for key, kind in types.items():
        value = doc[key]
        bool_mismatch = isinstance(value, bool) != (kind is bool)
        if not isinstance(value, kind) or bool_mismatch:
            raise AttestationError(f"{what} field {key!r} has type {type(value).__name__}")
    return doc


def unhex(value: str, size: int, what: str) -> bytes:
    """The bytes of a lowercase hex field of exactly ``size`` bytes (one spelling per value)."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise AttestationError(f"{what} is not hex") from None
    if len(raw) != size or raw.hex() != value:
        raise AttestationError(f"{what} is not {size} bytes of lowercase hex")
    return raw


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("duplicate key")
    return doc


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not allowed")  # NaN would slip through freshness comparisons


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _b64s(items: tuple[bytes, ...]) -> list[str]:
    return [_b64(item) for item in items]


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise AttestationError("a base64 field is not a string")
    try:
        return base64.b64decode(value.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise AttestationError("a base64 field is not base64url") from None
