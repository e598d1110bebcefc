"""Wire format: the documented layout, round trips, and framing faults as the opaque error."""

from __future__ import annotations

import struct

import pytest

from sealfn.envelope.format import (
    ENC_BYTES,
    MAX_ID_BYTES,
    REPLY_MAGIC,
    REQUEST_MAGIC,
    VERSION,
    RequestHeader,
    SealedReply,
    SealedRequest,
    Suite,
)
from sealfn.errors import EnvelopeError

NONCE = bytes(range(16))
HEADER = RequestHeader(VERSION, Suite.X25519_SHA256_AES256GCM, "mödel", "ana", 1234, NONCE)


def test_header_layout_is_the_documented_one() -> None:
    model, user = "mödel".encode(), b"ana"
    expected = (
        REQUEST_MAGIC
        + bytes([1, 1])
        + struct.pack(">H", len(model))
        + model
        + struct.pack(">H", 3)
        + user
        + struct.pack(">Q", 1234)
        + NONCE
    )
    assert HEADER.to_bytes() == expected


@pytest.mark.parametrize("suite", list(Suite))
def test_request_round_trip_keeps_the_ciphertext_as_a_view(suite: Suite) -> None:
    header = RequestHeader(VERSION, suite, "m", "u", 1, NONCE)
    body = bytes(ENC_BYTES[suite]) + b"c" * 20
    wire = header.to_bytes() + body
    decoded = SealedRequest.from_bytes(wire)
    assert decoded.header == header
    assert decoded.header_bytes == header.to_bytes()
    assert isinstance(decoded.kem_output, memoryview)
    assert decoded.kem_output.obj is wire  # no copy of the (possibly large) ciphertext
    assert bytes(decoded.kem_output) == body


def test_reply_round_trip() -> None:
    reply = SealedReply(b"n" * 32, memoryview(b"c" * 16))
    wire = reply.to_bytes()
    assert wire == REPLY_MAGIC + b"\x01" + b"n" * 32 + b"c" * 16
    decoded = SealedReply.from_bytes(wire)
    assert decoded.response_nonce == b"n" * 32
    assert bytes(decoded.ciphertext) == b"c" * 16


def _raw(
    *,
    magic: bytes = REQUEST_MAGIC,
    version: int = VERSION,
    suite: int = 1,
    model: bytes = b"m",
    user: bytes = b"u",
    tail: bytes = struct.pack(">Q", 1) + NONCE,
    body: bytes = bytes(32 + 16),
) -> bytes:
    ids = struct.pack(">H", len(model)) + model + struct.pack(">H", len(user)) + user
    return magic + bytes([version, suite]) + ids + tail + body


BAD_REQUESTS = {
    "empty": b"",
    "short fixed header": REQUEST_MAGIC + b"\x01",
    "wrong magic": _raw(magic=b"\x89SFP"),
    "version 0": _raw(version=0),
    "version 2": _raw(version=2),
    "suite 0": _raw(suite=0),
    "suite 3": _raw(suite=3),
    "empty model id": _raw(model=b""),
    "oversize model id": _raw(model=b"m" * (MAX_ID_BYTES + 1)),
    "oversize user id": _raw(user=b"u" * (MAX_ID_BYTES + 1)),
    "model id not UTF-8": _raw(model=b"\xff\xfe"),
    "model id past the end": _raw()[:8],
    "truncated timestamp": _raw(tail=b"\x00" * 7, body=b""),
    "no enc": _raw(body=b""),
    "no tag": _raw(body=bytes(32 + 15)),
    "hybrid enc too short": _raw(suite=2, body=bytes(1120 + 15)),
}


@pytest.mark.parametrize("wire", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_malformed_requests_are_the_opaque_error(wire: bytes) -> None:
    with pytest.raises(EnvelopeError) as caught:
        SealedRequest.from_bytes(wire)
    assert str(caught.value) == EnvelopeError().message


def test_the_smallest_well_framed_request_decodes() -> None:
    assert SealedRequest.from_bytes(_raw()).header.model_id == "m"


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        REPLY_MAGIC + b"\x01" + bytes(47),
        REQUEST_MAGIC + b"\x01" + bytes(48),
        b"\x89SFP\x02" + bytes(48),
    ],
    ids=["empty", "no full tag", "request magic", "version 2"],
)
def test_malformed_replies_are_the_opaque_error(wire: bytes) -> None:
    with pytest.raises(EnvelopeError) as caught:
        SealedReply.from_bytes(wire)
    assert str(caught.value) == EnvelopeError().message


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("suite", 1, TypeError),
        ("model_id", b"m", TypeError),
        ("user_id", None, TypeError),
        ("timestamp_ms", 1.5, TypeError),
        ("timestamp_ms", True, TypeError),
        ("nonce", bytearray(16), TypeError),
        ("model_id", "", ValueError),
        ("user_id", "é" * 129, ValueError),  # 258 UTF-8 bytes
        ("timestamp_ms", -1, ValueError),
        ("nonce", bytes(15), ValueError),
        ("version", 256, ValueError),
    ],
)
def test_bad_header_fields_fail_early(field: str, value: object, error: type[Exception]) -> None:
    fields = {
        "version": VERSION,
        "suite": Suite.X25519_SHA256_AES256GCM,
        "model_id": "m",
        "user_id": "u",
        "timestamp_ms": 0,
        "nonce": NONCE,
        field: value,
    }
    with pytest.raises(error, match=field):
        RequestHeader(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["text", bytearray(b"x"), memoryview(b"x")])
def test_decoding_needs_bytes(value: object) -> None:
    with pytest.raises(TypeError):
        SealedRequest.from_bytes(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SealedReply.from_bytes(value)  # type: ignore[arg-type]
