"""Raw HPKE (RFC 9180, base mode) for the two suites, and the secret each reply key comes from.

- Suite 1, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM: pyhpke's contexts, because
  cryptography's single-shot ``hpke.Suite`` has no exporter. The reply secret is
  ``context.Export(EXPORT_LABEL, 32)``, exactly where RFC 9458 exports "message/bhttp response".
  pyhpke's primitives are cryptography's (X25519, HMAC, AESGCM); its wire output is checked
  against cryptography's own HPKE both ways and against RFC 9180's published vectors.
- Suite 2, ML-KEM-768+X25519 / HKDF-SHA256 / AES-256-GCM: cryptography's ``hpke.Suite`` (pyhpke
  has no ML-KEM). It has no exporter, so the client draws a fresh 32-byte reply secret and seals
  it as the first 32 bytes of the HPKE plaintext.

Raw keys: suite 1 is the 32-byte X25519 scalar / point. Suite 2 is our own layout, since
cryptography builds the hybrid key from its two parts and serialises neither whole: ML-KEM-768
seed (64) ‖ X25519 scalar (32) private, ML-KEM-768 key (1184) ‖ X25519 point (32) public.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeAlias, cast

import pyhpke
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from sealfn.envelope._failure import reject
from sealfn.envelope.format import ENC_BYTES, Suite

EXPORT_LABEL = b"sealfn/v1 response"  # exporter_context; RFC 9458 uses "message/bhttp response"
SECRET_BYTES = 32  # max(Nn, Nk) for AES-256-GCM, as RFC 9458 sizes the exported secret
_X25519_BYTES = 32
_MLKEM_SEED_BYTES = 64
_MLKEM_PUBLIC_BYTES = 1184

_X25519_SUITE = pyhpke.CipherSuite.new(
    pyhpke.KEMId.DHKEM_X25519_HKDF_SHA256, pyhpke.KDFId.HKDF_SHA256, pyhpke.AEADId.AES256_GCM
)
_HYBRID_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)

PrivateKey: TypeAlias = "pyhpke.KEMKeyInterface | hpke.MLKEM768X25519PrivateKey"
_SIZES = {  # suite: (private key bytes, public key bytes)
    Suite.X25519_SHA256_AES256GCM: (_X25519_BYTES, _X25519_BYTES),
    Suite.MLKEM768X25519_SHA256_AES256GCM: (
        _MLKEM_SEED_BYTES + _X25519_BYTES,
        _MLKEM_PUBLIC_BYTES + _X25519_BYTES,
    ),
}


@dataclass(frozen=True)
class Sealed:
    """One sealed message: the wire pieces (enc ‖ ciphertext, in order), enc, the reply secret."""

    parts: tuple[bytes, ...]
    enc: bytes
    secret: bytes


@dataclass(frozen=True)
class Opened:
    plaintext: bytes
    enc: bytes
    secret: bytes


def generate(suite: Suite) -> tuple[bytes, bytes]:
    """A fresh (private, public) raw key pair for ``suite``."""
    x = x25519.X25519PrivateKey.generate()
    x_pair = (x.private_bytes_raw(), x.public_key().public_bytes_raw())
    if suite is Suite.X25519_SHA256_AES256GCM:
        return x_pair
    m = mlkem.MLKEM768PrivateKey.generate()
    return m.private_bytes_raw() + x_pair[0], m.public_key().public_bytes_raw() + x_pair[1]


def load_private_key(suite: Suite, raw: bytes) -> tuple[PrivateKey, bytes]:
    """The key object for ``raw`` and its raw public key; ``ValueError`` if ``raw`` is malformed."""
    _check_size("private key", raw, _SIZES[suite][0])
    x = x25519.X25519PrivateKey.from_private_bytes(raw[-_X25519_BYTES:])
    x_public = x.public_key().public_bytes_raw()
    if suite is Suite.X25519_SHA256_AES256GCM:
        return pyhpke.KEMKey.from_pyca_cryptography_key(x), x_public
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:_MLKEM_SEED_BYTES])
    public = m.public_key().public_bytes_raw() + x_public
    return hpke.MLKEM768X25519PrivateKey(m, x), public


def seal(suite: Suite, public_key: bytes, info: bytes, plaintext: bytes) -> Sealed:
    """Seal ``plaintext`` to ``public_key`` with ``info`` bound in; one message per context."""
    _check_size("recipient_public_key", public_key, _SIZES[suite][1])
    if suite is Suite.X25519_SHA256_AES256GCM:
        enc, context = x25519_sender(public_key, info)
        ciphertext = context.seal(plaintext)
        return Sealed((enc, ciphertext), enc, context.export(EXPORT_LABEL, SECRET_BYTES))
    secret = os.urandom(SECRET_BYTES)
    out = _HYBRID_SUITE.encrypt(secret + plaintext, _hybrid_public_key(public_key), info=info)
    return Sealed((out,), out[: ENC_BYTES[suite]], secret)


def open_(suite: Suite, private_key: PrivateKey, info: bytes, kem_output: memoryview) -> Opened:
    """Open enc ‖ ciphertext; every failure is the opaque EnvelopeError."""
    enc = bytes(kem_output[: ENC_BYTES[suite]])
    if suite is Suite.X25519_SHA256_AES256GCM:
        return _open_x25519(cast(pyhpke.KEMKeyInterface, private_key), info, enc, kem_output)
    try:
        out = _HYBRID_SUITE.decrypt(
            kem_output, cast(hpke.MLKEM768X25519PrivateKey, private_key), info=info
        )
    except (InvalidTag, ValueError) as exc:
        raise reject(f"HPKE open failed ({type(exc).__name__})") from None
    if len(out) < SECRET_BYTES:
        raise reject("hybrid plaintext shorter than the reply secret")
    return Opened(out[SECRET_BYTES:], enc, out[:SECRET_BYTES])


def x25519_sender(
    public_key: bytes, info: bytes, *, ephemeral_private_key: bytes | None = None
) -> tuple[bytes, pyhpke.ContextInterface]:
    """Suite 1's (enc, sender context); a fixed ephemeral key is for known-answer tests only."""
    recipient = pyhpke.KEMKey.from_pyca_cryptography_key(
        x25519.X25519PublicKey.from_public_bytes(public_key)
    )
    ephemeral = None
    if ephemeral_private_key is not None:
        sk = x25519.X25519PrivateKey.from_private_bytes(ephemeral_private_key)
        ephemeral = pyhpke.KEMKeyPair(
            pyhpke.KEMKey.from_pyca_cryptography_key(sk),
            pyhpke.KEMKey.from_pyca_cryptography_key(sk.public_key()),
        )
    return _X25519_SUITE.create_sender_context(recipient, info, eks=ephemeral)


def x25519_recipient(
    private_key: pyhpke.KEMKeyInterface, enc: bytes, info: bytes
) -> pyhpke.ContextInterface:
    """Suite 1's recipient context for ``enc``."""
    return _X25519_SUITE.create_recipient_context(enc, private_key, info)


def _open_x25519(
    private_key: pyhpke.KEMKeyInterface, info: bytes, enc: bytes, kem_output: memoryview
) -> Opened:
    try:
        context = x25519_recipient(private_key, enc, info)
        # pyhpke annotates ``bytes`` but hands ct straight to AESGCM.decrypt, which takes any
        # buffer: passing the view saves copying a request that may be tens of MB.
        plaintext = context.open(cast(bytes, kem_output[len(enc) :]))
    except (pyhpke.PyHPKEError, ValueError) as exc:
        raise reject(f"HPKE open failed ({type(exc).__name__})") from None
    return Opened(plaintext, enc, context.export(EXPORT_LABEL, SECRET_BYTES))


def _hybrid_public_key(raw: bytes) -> hpke.MLKEM768X25519PublicKey:
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM_PUBLIC_BYTES]),
        x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM_PUBLIC_BYTES:]),
    )


def _check_size(name: str, raw: bytes, size: int) -> None:
    if len(raw) != size:
        raise ValueError(f"{name} must be {size} bytes for this suite, got {len(raw)}")
