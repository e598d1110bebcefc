"""HPKE key pairs as raw bytes, checked once when built."""

from __future__ import annotations

from dataclasses import dataclass, field

from sealfn.envelope import _hpke
from sealfn.envelope._failure import check_type
from sealfn.envelope.format import Suite


@dataclass(frozen=True, eq=False)
class KeyPair:
    """A deployment's HPKE key pair; building one checks that the two halves belong together."""

    suite: Suite
    private_key: bytes = field(repr=False)
    public_key: bytes
    _loaded: _hpke.PrivateKey = field(init=False, repr=False)  # parsed once, used per request

    def __post_init__(self) -> None:
        check_type("suite", self.suite, Suite)
        check_type("private_key", self.private_key, bytes)
        check_type("public_key", self.public_key, bytes)
        loaded, public = _hpke.load_private_key(self.suite, self.private_key)
        if public != self.public_key:
            raise ValueError("public_key does not belong to private_key")
        object.__setattr__(self, "_loaded", loaded)


def generate_keypair(suite: Suite = Suite.X25519_SHA256_AES256GCM) -> KeyPair:
    """A fresh key pair for ``suite``."""
    check_type("suite", suite, Suite)
    return KeyPair(suite, *_hpke.generate(suite))
