"""Reply sealing as in Oblivious HTTP (RFC 9458 §4.4), with the body padded to a size bucket.

From the request's 32-byte reply secret (exported from its HPKE context, or carried inside it)::

    response_nonce = random(32)                      # max(Nn, Nk)
    prk   = HKDF-Extract(salt = enc ‖ response_nonce, ikm = secret)
    key   = HKDF-Expand(prk, "key", 32)              # Nk of AES-256-GCM
    nonce = HKDF-Expand(prk, "nonce", 12)            # Nn
    reply = response_nonce ‖ AES-256-GCM(key, nonce, aad = "", padded body)

A fresh response nonce per reply gives every reply its own key and nonce, so replies never reuse
an AES-GCM nonce even if one request is answered twice. The padded body is ``u64 true length |
body | zeros`` filling a bucket, so the ciphertext length reveals the bucket, not the size.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from sealfn.envelope._failure import check_type, reject
from sealfn.envelope.format import RESPONSE_NONCE_BYTES, SealedReply

# Powers of two from 256 B to 64 MiB; bodies past the largest bucket round up to its multiples.
DEFAULT_BUCKETS: tuple[int, ...] = tuple(256 << i for i in range(19))
_LENGTH = struct.Struct(">Q")  # the true body length, first in the padded plaintext
_KEY_BYTES = 32
_NONCE_BYTES = 12


class ReplyKey:
    """What opens the reply to one sealed request; only its sender (and the enclave) hold it."""

    __slots__ = ("_enc", "_secret")

    def __init__(self, secret: bytes, enc: bytes) -> None:
        self._secret = secret
        self._enc = enc

    def __repr__(self) -> str:
        return "ReplyKey(<secret>)"

    def open_reply(self, sealed_reply: bytes) -> bytes:
        """The reply body; ``EnvelopeError`` if it is not this request's reply or was altered."""
        reply = SealedReply.from_bytes(sealed_reply)
        aead, nonce = _reply_aead(self, reply.response_nonce)
        try:
            padded = aead.decrypt(nonce, reply.ciphertext, None)
        except (InvalidTag, ValueError) as exc:
            raise reject(f"reply open failed ({type(exc).__name__})") from None
        return _unpad(padded)


def seal_reply(key: ReplyKey, body: bytes, buckets: Sequence[int] = DEFAULT_BUCKETS) -> bytes:
    """Seal ``body`` as the reply to the request ``key`` belongs to."""
    check_type("plaintext", body, bytes)
    padded = _pad(body, bucket_size(_LENGTH.size + len(body), buckets))
    response_nonce = os.urandom(RESPONSE_NONCE_BYTES)
    aead, nonce = _reply_aead(key, response_nonce)
    ciphertext = aead.encrypt(nonce, padded, None)
    return SealedReply(response_nonce, memoryview(ciphertext)).to_bytes()


def bucket_size(needed: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``needed`` bytes; past the largest, a multiple of it."""
    ascending = all(a < b for a, b in itertools.pairwise(buckets))
    if not buckets or buckets[0] <= 0 or not ascending:
        raise ValueError(f"buckets must be positive and strictly increasing, got {buckets!r}")
    for size in buckets:
        if needed <= size:
            return size
    largest = buckets[-1]
    return -(-needed // largest) * largest


def _reply_aead(key: ReplyKey, response_nonce: bytes) -> tuple[AESGCM, bytes]:
    """RFC 9458 §4.4: the AEAD and nonce for one reply."""
    salt = key._enc + response_nonce
    prk = HKDF.extract(hashes.SHA256(), salt, key._secret)
    aead_key = HKDFExpand(hashes.SHA256(), _KEY_BYTES, b"key").derive(prk)
    nonce = HKDFExpand(hashes.SHA256(), _NONCE_BYTES, b"nonce").derive(prk)
    return AESGCM(aead_key), nonce


def _pad(body: bytes, size: int) -> bytearray:
    padded = bytearray(size)  # zero-filled
    _LENGTH.pack_into(padded, 0, len(body))
    padded[_LENGTH.size : _LENGTH.size + len(body)] = body
    return padded


def _unpad(padded: bytes) -> bytes:
    if len(padded) < _LENGTH.size:
        raise reject("padded reply shorter than its length field")
    (size,) = _LENGTH.unpack_from(padded)
    if size > len(padded) - _LENGTH.size:
        raise reject("reply length field past the padded body")
    return padded[_LENGTH.size : _LENGTH.size + size]
