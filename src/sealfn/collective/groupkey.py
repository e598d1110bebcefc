"""Group encryption between enclave ranks: AES-256-GCM frames under a key only members hold.

Where the key comes from: the KeyService releases a sealed model's key only to enclaves whose
attested measurement the owner granted (``keyservice.enclave.KeyLease``). Every rank of a sealed
batch job holds that lease, so each derives the same group key from it with HKDF-SHA256 (info =
a label and the group id); the platform, which never holds the model key, cannot. A fresh group
id per job round gives a fresh key.

A frame: ``version u8 | nonce (12 random bytes) | ciphertext | tag``, with the group id, sender,
receiver and a per-pair sequence number as associated data, so a frame cannot be moved to another
group or pair, replayed, dropped or reordered without the receiver noticing. Random nonces are
safe far beyond the frames one group sends (about 2^32 per key).
"""

from __future__ import annotations

import logging
import os
import struct
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfn.collective.channel import Buffer, Channel
from sealfn.errors import AccessDenied, EnvelopeError

log = logging.getLogger("sealfn.collective")

VERSION = 1
KEY_SIZE = 32  # bytes: AES-256
NONCE_SIZE = 12
_LABEL = b"sealfn collective group key v1\x00"
_AAD = struct.Struct("<BIIQ")  # version, src, dst, seq


class GroupKeySource(Protocol):
    """Gives a member the key of group ``group``; raises ``AccessDenied`` for a non-member."""

    def group_key(self, group: str) -> bytes: ...


class _Released(Protocol):
    model_key: bytes


class _Lease(Protocol):
    def model(self, model_id: str) -> _Released | None: ...


def derive_group_key(secret: bytes, group: str) -> bytes:
    """The group key for ``group`` from a secret every member was released (HKDF-SHA256)."""
    if len(secret) < KEY_SIZE:
        raise ValueError("the group secret must hold at least 32 bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=_LABEL + group.encode())
    return hkdf.derive(secret)


class ReleasedModelGroupKey:
    """The group key of a sealed job, derived from the model key the KeyService released.

    ``lease`` is the enclave's ``KeyLease`` for ``model_id``: only an attested, granted enclave
    has one, and once it lapses (revocation) no new group key can be derived."""

    def __init__(self, lease: _Lease, model_id: str) -> None:
        self._lease = lease
        self._model_id = model_id

    def group_key(self, group: str) -> bytes:
        keys = self._lease.model(self._model_id)
        if keys is None:
            raise AccessDenied("access denied")
        return derive_group_key(keys.model_key, group)


class SealedChannel:
    """Wraps a channel so every frame between ranks is sealed under the group key."""

    def __init__(self, inner: Channel, key: bytes, group: str) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("a group key is 32 bytes")
        self.rank = inner.rank
        self.size = inner.size
        self.name = inner.name
        self._inner = inner
        self._aead = AESGCM(key)
        self._group = group.encode()
        self._sent = [0] * inner.size
        self._received = [0] * inner.size

    def send(self, dst: int, *parts: Buffer) -> None:
        nonce = os.urandom(NONCE_SIZE)
        aad = self._aad(self.rank, dst, self._sent[dst])
        self._sent[dst] += 1
        sealed = self._aead.encrypt(nonce, b"".join(parts), aad)
        self._inner.send(dst, bytes([VERSION]) + nonce, sealed)

    def recv(self, src: int) -> Buffer:
        frame = memoryview(self._inner.recv(src))
        aad = self._aad(src, self.rank, self._received[src])
        try:
            if len(frame) < 1 + NONCE_SIZE or frame[0] != VERSION:
                raise InvalidTag
            plain = self._aead.decrypt(
                bytes(frame[1 : 1 + NONCE_SIZE]), frame[1 + NONCE_SIZE :], aad
            )
        except InvalidTag:
            log.debug("frame from rank %d to %d did not open", src, self.rank)
            raise EnvelopeError(f"cannot open a frame from rank {src}") from None
        self._received[src] += 1
        return plain

    def close(self) -> None:
        self._inner.close()

    def _aad(self, src: int, dst: int, seq: int) -> bytes:
        return _AAD.pack(VERSION, src, dst, seq) + self._group
