r"""Versioned binary wire format of sealed requests and sealed replies.

A sealed request, version 1 (integers big-endian; sizes in bytes)::

    size  field
    4     magic b"\x89SFQ"
    1     version = 1
    1     suite (Suite: 1 = DHKEM(X25519), 2 = ML-KEM-768+X25519)
    2     m = len(model_id), 1..256
    m     model_id, UTF-8
    2     u = len(user_id), 1..256
    u     user_id, UTF-8
    8     timestamp_ms, milliseconds since the Unix epoch
    16    nonce, random
    ----  everything above is the header: it travels in clear and is HPKE's ``info``
    Nenc  enc, the HPKE encapsulated key (32 for suite 1, 1120 for suite 2)
    rest  HPKE ciphertext, at least the 16-byte AEAD tag

A session request, version 2: the same clear header (with version = 2; the suite is its
ticket's), then::

    4     t = len(ticket), 1..16384
    t     ticket: a complete version-1 sealed request whose plaintext begins with the session's
          32-byte secret (see ``session.py``)
    12    iv, random
    rest  AES-256-GCM ciphertext under the session's request key, aad = header ‖ SHA-256(ticket),
          then the 16-byte tag

A sealed reply, version 1::

    size  field
    4     magic b"\x89SFP"
    1     version = 1
    32    response_nonce, random (max(Nn, Nk) of AES-256-GCM, as in RFC 9458)
    rest  AES-256-GCM ciphertext of ``u64 true length | body | zero padding`` (padded to a size
          bucket), then the 16-byte tag

Decoding checks framing only and never copies the ciphertext: it stays a view into the input.
Any framing fault is the same opaque ``EnvelopeError`` as a failed decryption.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from sealfn.envelope._failure import check_type, reject

REQUEST_MAGIC = b"\x89SFQ"
REPLY_MAGIC = b"\x89SFP"
VERSION = 1
SESSION_VERSION = 2
MAX_TICKET_BYTES = 16384
IV_BYTES = 12
MAX_ID_BYTES = 256  # UTF-8 bytes of a model id or a user id
NONCE_BYTES = 16
RESPONSE_NONCE_BYTES = 32
TAG_BYTES = 16  # AES-GCM tag
MAX_TIMESTAMP_MS = (1 << 64) - 1

_FIXED = struct.Struct(">4sBB")  # magic, version, suite
_ID_LENGTH = struct.Struct(">H")
_TAIL = struct.Struct(">Q16s")  # timestamp_ms, nonce
_REPLY = struct.Struct(">4sB32s")  # magic, version, response_nonce
_TICKET_LENGTH = struct.Struct(">I")


class Suite(enum.IntEnum):
    """An HPKE suite (KEM / KDF / AEAD); the value is its byte on the wire."""

    X25519_SHA256_AES256GCM = 1  # DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM
    MLKEM768X25519_SHA256_AES256GCM = 2  # hybrid post-quantum ML-KEM-768 + X25519 KEM


ENC_BYTES = {Suite.X25519_SHA256_AES256GCM: 32, Suite.MLKEM768X25519_SHA256_AES256GCM: 1120}


@dataclass(frozen=True)
class RequestHeader:
    """The clear part of a sealed request: what the gateway may route on, bound into HPKE info."""

    version: int
    suite: Suite
    model_id: str
    user_id: str
    timestamp_ms: int
    nonce: bytes  # 16 random bytes; with user_id, the replay-cache key

    def __post_init__(self) -> None:
        check_type("version", self.version, int)
        check_type("suite", self.suite, Suite)
        check_type("model_id", self.model_id, str)
        check_type("user_id", self.user_id, str)
        check_type("timestamp_ms", self.timestamp_ms, int)
        check_type("nonce", self.nonce, bytes)
        if not 0 <= self.version <= 0xFF:
            raise ValueError(f"version must fit one byte, got {self.version}")
        for name in ("model_id", "user_id"):
            size = len(getattr(self, name).encode())
            if not 1 <= size <= MAX_ID_BYTES:
                raise ValueError(f"{name} must be 1..{MAX_ID_BYTES} UTF-8 bytes, got {size}")
        if not 0 <= self.timestamp_ms <= MAX_TIMESTAMP_MS:
            raise ValueError(f"timestamp_ms out of range: {self.timestamp_ms}")
        if len(self.nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes, got {len(self.nonce)}")

    def to_bytes(self) -> bytes:
        model, user = self.model_id.encode(), self.user_id.encode()
        return b"".join(
            (
                _FIXED.pack(REQUEST_MAGIC, self.version, self.suite),
                _ID_LENGTH.pack(len(model)),
                model,
                _ID_LENGTH.pack(len(user)),
                user,
                _TAIL.pack(self.timestamp_ms, self.nonce),
            )
        )


@dataclass(frozen=True)
class SealedRequest:
    """A decoded request: its header, the header's exact bytes, and enc ‖ ciphertext (a view)."""

    header: RequestHeader
    header_bytes: bytes
    kem_output: memoryview  # enc ‖ HPKE ciphertext, not copied out of the input

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedRequest:
        check_type("sealed", data, bytes)
        view = memoryview(data)
        header, end = _decode_header(view)
        if header.version != VERSION:
            raise reject("not a version-1 request")
        body = view[end:]
        if len(body) < ENC_BYTES[header.suite] + TAG_BYTES:
            raise reject("request shorter than enc and tag")
        return cls(header, data[:end], body)


@dataclass(frozen=True)
class SessionRequest:
    """A decoded session request: header, its bytes, the ticket, the iv and the ciphertext."""

    header: RequestHeader
    header_bytes: bytes
    ticket: bytes
    iv: bytes
    ciphertext: memoryview  # not copied out of the input

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRequest:
        check_type("sealed", data, bytes)
        view = memoryview(data)
        header, at = _decode_header(view)
        if header.version != SESSION_VERSION:
            raise reject("not a session request")
        if len(view) < at + _TICKET_LENGTH.size:
            raise reject("session request truncated in ticket length")
        (size,) = _TICKET_LENGTH.unpack_from(view, at)
        at += _TICKET_LENGTH.size
        if not 1 <= size <= MAX_TICKET_BYTES or len(view) < at + size + IV_BYTES + TAG_BYTES:
            raise reject("session request truncated in ticket, iv or tag")
        ticket, iv = data[at : at + size], data[at + size : at + size + IV_BYTES]
        return cls(
            header, data[: at - _TICKET_LENGTH.size], ticket, iv, view[at + size + IV_BYTES :]
        )

    @staticmethod
    def pack(header: bytes, ticket: bytes, iv: bytes, ciphertext: bytes) -> bytes:
        return b"".join((header, _TICKET_LENGTH.pack(len(ticket)), ticket, iv, ciphertext))


def decode_header(data: bytes) -> RequestHeader:
    """The clear header of a sealed or session request (for routing); checks framing only."""
    check_type("sealed", data, bytes)
    return _decode_header(memoryview(data))[0]


@dataclass(frozen=True)
class SealedReply:
    """A decoded reply: the response nonce and the AEAD ciphertext (a view)."""

    response_nonce: bytes
    ciphertext: memoryview

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedReply:
        check_type("sealed_reply", data, bytes)
        if len(data) < _REPLY.size + TAG_BYTES:
            raise reject("reply shorter than its header and tag")
        magic, version, response_nonce = _REPLY.unpack_from(data)
        if magic != REPLY_MAGIC:
            raise reject("not a sealed reply")
        if version != VERSION:
            raise reject("unsupported reply version")
        return cls(response_nonce, memoryview(data)[_REPLY.size :])

    def to_bytes(self) -> bytes:
        return b"".join((_REPLY.pack(REPLY_MAGIC, VERSION, self.response_nonce), self.ciphertext))


def _decode_header(view: memoryview) -> tuple[RequestHeader, int]:
    """The header at the start of ``view`` and the offset where enc begins."""
    if len(view) < _FIXED.size:
        raise reject("request shorter than its fixed header")
    magic, version, suite = _FIXED.unpack_from(view)
    if magic != REQUEST_MAGIC:
        raise reject("not a sealed request")
    if version not in (VERSION, SESSION_VERSION):
        raise reject("unsupported request version")
    if suite not in ENC_BYTES:
        raise reject("unknown suite")
    model_id, at = _read_id(view, _FIXED.size, "model id")
    user_id, at = _read_id(view, at, "user id")
    if len(view) < at + _TAIL.size:
        raise reject("request truncated in timestamp or nonce")
    timestamp_ms, nonce = _TAIL.unpack_from(view, at)
    header = RequestHeader(version, Suite(suite), model_id, user_id, timestamp_ms, nonce)
    return header, at + _TAIL.size


def _read_id(view: memoryview, at: int, what: str) -> tuple[str, int]:
    """A length-prefixed UTF-8 id at ``at``, and the offset just past it."""
    if len(view) < at + _ID_LENGTH.size:
        raise reject(f"request truncated in {what} length")
    (size,) = _ID_LENGTH.unpack_from(view, at)
    at += _ID_LENGTH.size
    if not 1 <= size <= MAX_ID_BYTES:
        raise reject(f"{what} length out of range")
    if len(view) < at + size:
        raise reject(f"request truncated in {what}")
    try:
        return bytes(view[at : at + size]).decode("utf-8"), at + size
    except UnicodeDecodeError:
        raise reject(f"{what} is not UTF-8") from None
