"""Replies: RFC 9458 §4.4 key derivation, size buckets, and refusals."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealfn.envelope.format import REPLY_MAGIC
from sealfn.envelope.reply import DEFAULT_BUCKETS, ReplyKey, bucket_size, seal_reply
from sealfn.errors import EnvelopeError

MIB = 1 << 20
SECRET = bytes(range(32))
ENC = bytes(range(0x20, 0x40))
HEADER_BYTES = 4 + 1 + 32  # magic, version, response nonce
TAG = 16


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 Expand with the standard library only: an oracle independent of cryptography."""
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def _independent_open(secret: bytes, enc: bytes, sealed: bytes) -> bytes:
    """RFC 9458 §4.4 written out from the RFC text, then our padding removed."""
    assert sealed[:5] == REPLY_MAGIC + b"\x01"
    response_nonce, ciphertext = sealed[5:37], sealed[37:]
    prk = hmac.new(enc + response_nonce, secret, hashlib.sha256).digest()  # Extract(salt, ikm)
    key, nonce = _hkdf_expand(prk, b"key", 32), _hkdf_expand(prk, b"nonce", 12)
    padded = AESGCM(key).decrypt(nonce, ciphertext, b"")
    (size,) = struct.unpack_from(">Q", padded)
    return padded[8 : 8 + size]


def test_reply_key_is_derived_exactly_as_rfc_9458() -> None:
    sealed = seal_reply(ReplyKey(SECRET, ENC), b"the answer")
    assert _independent_open(SECRET, ENC, sealed) == b"the answer"


@pytest.mark.parametrize("size", [0, 1, 247, 248, 249, 600_000, 8 * MIB])
def test_round_trip(size: int) -> None:
    body = os.urandom(size)
    key = ReplyKey(SECRET, ENC)
    assert key.open_reply(seal_reply(key, body)) == body


def test_default_buckets_are_powers_of_two_from_256_b_to_64_mib() -> None:
    assert DEFAULT_BUCKETS[0] == 256
    assert DEFAULT_BUCKETS[-1] == 64 * MIB
    assert all(b == 2 * a for a, b in itertools.pairwise(DEFAULT_BUCKETS))


@pytest.mark.parametrize(
    ("needed", "expected"),
    [
        (0, 256),
        (256, 256),
        (257, 512),
        (600_008, MIB),
        (64 * MIB, 64 * MIB),
        (64 * MIB + 1, 128 * MIB),
        (130 * MIB, 192 * MIB),
    ],
)
def test_bucket_size(needed: int, expected: int) -> None:
    assert bucket_size(needed, DEFAULT_BUCKETS) == expected


@pytest.mark.parametrize("buckets", [(), (0, 8), (16, 16), (32, 16)])
def test_bad_buckets_are_refused(buckets: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="buckets"):
        bucket_size(1, buckets)


def test_padding_hides_size_within_a_bucket() -> None:
    key = ReplyKey(SECRET, ENC)
    lengths = {len(seal_reply(key, b"x" * n)) for n in (0, 1, 100, 248)}  # 8 + n <= 256
    assert lengths == {HEADER_BYTES + 256 + TAG}
    assert len(seal_reply(key, b"x" * 249)) == HEADER_BYTES + 512 + TAG
    custom = {len(seal_reply(key, b"x" * n, buckets=(64, 1024))) for n in (57, 500, 1016)}
    assert custom == {HEADER_BYTES + 1024 + TAG}


def test_padding_is_zeros_inside_the_aead() -> None:
    sealed = seal_reply(ReplyKey(SECRET, ENC), b"abc")
    response_nonce = sealed[5:37]
    prk = hmac.new(ENC + response_nonce, SECRET, hashlib.sha256).digest()
    padded = AESGCM(_hkdf_expand(prk, b"key", 32)).decrypt(
        _hkdf_expand(prk, b"nonce", 12), sealed[37:], b""
    )
    assert padded == struct.pack(">Q", 3) + b"abc" + bytes(256 - 11)


def _refuses(key: ReplyKey, sealed: bytes) -> None:
    with pytest.raises(EnvelopeError) as caught:
        key.open_reply(sealed)
    assert str(caught.value) == EnvelopeError().message


def test_another_requests_key_cannot_open() -> None:
    sealed = seal_reply(ReplyKey(SECRET, ENC), b"for one request")
    _refuses(ReplyKey(os.urandom(32), ENC), sealed)  # another secret
    _refuses(ReplyKey(SECRET, os.urandom(32)), sealed)  # same secret, another enc


def test_every_flipped_bit_is_refused() -> None:
    key = ReplyKey(SECRET, ENC)
    sealed = seal_reply(key, b"short")
    for bit in range(len(sealed) * 8):
        tampered = bytearray(sealed)
        tampered[bit // 8] ^= 1 << (bit % 8)
        _refuses(key, bytes(tampered))


@pytest.mark.parametrize("keep", [0, 5, 37, 37 + 15, -1])
def test_truncated_replies_are_refused(keep: int) -> None:
    key = ReplyKey(SECRET, ENC)
    sealed = seal_reply(key, b"body")
    _refuses(key, sealed[:keep])


def test_a_length_field_past_the_body_is_refused() -> None:
    """Only a key holder can forge this; it still fails closed rather than over-reading."""
    response_nonce = bytes(32)
    prk = hmac.new(ENC + response_nonce, SECRET, hashlib.sha256).digest()
    padded = struct.pack(">Q", 300) + bytes(248)
    ciphertext = AESGCM(_hkdf_expand(prk, b"key", 32)).encrypt(
        _hkdf_expand(prk, b"nonce", 12), padded, b""
    )
    _refuses(ReplyKey(SECRET, ENC), REPLY_MAGIC + b"\x01" + response_nonce + ciphertext)


def test_reply_key_does_not_print_its_secret() -> None:
    assert SECRET.hex() not in repr(ReplyKey(SECRET, ENC))
    assert repr(SECRET) not in repr(ReplyKey(SECRET, ENC))


@pytest.mark.parametrize("value", ["text", bytearray(b"x"), None])
def test_bad_argument_types_fail_early(value: object) -> None:
    key = ReplyKey(SECRET, ENC)
    with pytest.raises(TypeError):
        seal_reply(key, value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        key.open_reply(value)  # type: ignore[arg-type]
