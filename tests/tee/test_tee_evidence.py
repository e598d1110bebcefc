"""Evidence wire formats: round trips, strict parsing, domain-separated signatures."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealfn.errors import AttestationError
from sealfn.tee.evidence import (
    CERTIFICATE_DOMAIN,
    MAX_EVIDENCE,
    TOKEN_DOMAIN,
    Certificate,
    Evidence,
    decode_claims,
    fingerprint,
    sign,
    unhex,
    verify_signed,
)


@pytest.mark.parametrize(
    "evidence",
    [
        Evidence("simulated", b"token", (b"cert",)),
        Evidence("tdx", b"\x00\xff" * 100),
        Evidence("sev-snp", b"report", (b"aux", b"more")),
        Evidence("sgx-gramine", b""),
    ],
)
def test_evidence_round_trips(evidence: Evidence) -> None:
    assert Evidence.from_bytes(evidence.to_bytes()) == evidence


def _doc(**changes: object) -> bytes:
    doc = {"v": 1, "tee": "simulated", "token": "dG9rZW4=", "chain": []}
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not strict JSON"),
        (b"\xff\xfe", "not strict JSON"),
        (b"[]", "exactly the fields"),
        (b"null", "exactly the fields"),
        (_doc(v=2), "version 2"),
        (_doc(v=True), "type bool"),
        (_doc(tee="sgx"), "unknown TEE"),
        (_doc(token="not base64!"), "not base64url"),
        (_doc(token=5), "type int"),
        (_doc(chain=[5]), "not a string"),
        (_doc(extra=1), "exactly the fields"),
        (b'{"v":1,"v":1,"tee":"simulated","token":"","chain":[]}', "not strict JSON"),
        (b" " * (MAX_EVIDENCE + 1), "over"),
    ],
)
def test_malformed_evidence_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(AttestationError, match=reason):
        Evidence.from_bytes(raw)


def test_signatures_are_domain_separated() -> None:
    key = Ed25519PrivateKey.generate()
    blob = sign(key, TOKEN_DOMAIN, b"body")
    assert verify_signed(key.public_key(), TOKEN_DOMAIN, blob) == b"body"
    with pytest.raises(AttestationError, match="bad signature"):
        verify_signed(key.public_key(), CERTIFICATE_DOMAIN, blob)
    with pytest.raises(AttestationError, match="bad signature"):
        verify_signed(Ed25519PrivateKey.generate().public_key(), TOKEN_DOMAIN, blob)
    with pytest.raises(AttestationError, match="too short"):
        verify_signed(key.public_key(), TOKEN_DOMAIN, blob[-64:])


def test_certificate_opens_only_under_its_root() -> None:
    root, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    subject = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    blob = Certificate(subject, fingerprint(root.public_key()), 1.5).sign(root)
    assert Certificate.issuer_of(blob) == fingerprint(root.public_key())
    assert Certificate.open(blob, root.public_key()).subject == subject
    with pytest.raises(AttestationError, match="bad signature"):
        Certificate.open(blob, other.public_key())
    lying = Certificate(subject, fingerprint(root.public_key()), 1.5).sign(other)
    with pytest.raises(AttestationError, match="issuer does not match"):
        Certificate.open(lying, other.public_key())


def test_claims_must_match_the_schema_exactly() -> None:
    good = {
        "version": 1,
        "tee": "simulated",
        "simulated": True,
        "debug": True,
        "measurement": "00",
        "report_data": "00",
        "iat": 1,
        "platform": "p",
    }
    assert decode_claims(json.dumps(good).encode()) == good
    for key, bad in [("simulated", 1), ("iat", "1"), ("iat", True), ("version", 2)]:
        with pytest.raises(AttestationError):
            decode_claims(json.dumps({**good, key: bad}).encode())
    with pytest.raises(AttestationError, match="not strict JSON"):
        decode_claims(json.dumps({**good, "iat": float("nan")}).encode())


@pytest.mark.parametrize("value", ["0g" * 4, "AB" * 4, "ab ab ab ab", "ab" * 3, "ab" * 5])
def test_hex_fields_have_one_spelling(value: str) -> None:
    with pytest.raises(AttestationError):
        unhex(value, 4, "field")


def test_base64_uses_the_url_alphabet() -> None:
    raw = bytes([0xFB, 0xFF]) * 3
    encoded = Evidence("tdx", raw).to_bytes()
    assert base64.urlsafe_b64encode(raw).decode() in encoded.decode()
