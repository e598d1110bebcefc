"""The key-release payload: what an attested enclave receives, sealed to its own HPKE key.

The KeyService seals it with ``envelope.seal_request(payload, enclave_public_key,
model_id="keyservice", user_id=session_id)``; only the enclave that holds the private key
(the one bound into its evidence) can open it. Inside, canonical JSON, version 1::

    {"v": 1, "session_id": str, "session_secret": b64, "lease_expires": unix seconds,
     "models": [{"model_id", "model_key": b64, "suite": int, "private_key": b64,
                 "public_key": b64, "users": [user ids granted for this measurement]}]}

The lease is the point of the design: an enclave must stop serving a (model, user) once
``lease_expires`` has passed without a renewal that still lists the user, and should renew at
about half the lease. A renewal carries the grants as they are now, so a revocation reaches a
warm enclave within one lease; a model with no grant left is missing from it (wipe its keys).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any

from sealfn.envelope import KeyPair, ReplayGuard, Suite, open_request
from sealfn.errors import EnvelopeError, InvalidInput
from sealfn.keyservice.keys import suite_of
from sealfn.keyservice.wire import b64, check_id, dumps, get, loads, unb64

VERSION = 1
KEYSERVICE_MODEL_ID = "keyservice"  # the envelope model id every release is sealed under
SESSION_SECRET_SIZE = 32  # bytes
_TIMESTAMP = struct.Struct(">Q")


@dataclass(frozen=True)
class ModelKeys:
    """One model's secrets, as released to an enclave of a granted measurement."""

    model_id: str
    model_key: bytes = field(repr=False)  # AES-256 key of the sealed model
    suite: Suite
    private_key: bytes = field(repr=False)  # the deployment HPKE private key requests open with
    public_key: bytes
    users: tuple[str, ...]  # who may call this model on this measurement, now
    user_keys: tuple[bytes, ...] = ()  # their Ed25519 public keys, in the order of ``users``

    def user_key(self, user_id: str) -> bytes | None:
        """The signing key of a granted user (requests carry their signature), else None."""
        for user, key in zip(self.users, self.user_keys, strict=False):
            if user == user_id:
                return key
        return None

    def keypair(self) -> KeyPair:
        """The deployment key pair, ready for ``envelope.open_request``."""
        return KeyPair(self.suite, self.private_key, self.public_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_key": b64(self.model_key),
            "suite": int(self.suite),
            "private_key": b64(self.private_key),
            "public_key": b64(self.public_key),
            "users": list(self.users),
            "user_keys": [b64(key) for key in self.user_keys],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ModelKeys:
        users = get(doc, "users", list)
        user_keys = get(doc, "user_keys", list)
        if len(user_keys) != len(users):
            raise InvalidInput("release lists a key for every granted user")
        return cls(
            check_id("model_id", doc.get("model_id")),
            unb64(doc.get("model_key"), "model_key"),
            suite_of(doc.get("suite")),
            unb64(doc.get("private_key"), "private_key"),
            unb64(doc.get("public_key"), "public_key"),
            tuple(check_id("user id", user) for user in users),
            tuple(unb64(key, "user key") for key in user_keys),
        )


@dataclass(frozen=True)
class KeyRelease:
    """A session's keys and grants, valid until ``lease_expires``."""

    session_id: str
    session_secret: bytes = field(repr=False)  # 32 bytes; MACs this session's renewals
    lease_expires: float  # unix seconds
    models: tuple[ModelKeys, ...]

    def model(self, model_id: str) -> ModelKeys | None:
        return next((m for m in self.models if m.model_id == model_id), None)

    def to_bytes(self) -> bytes:
        return dumps(
            {
                "v": VERSION,
                "session_id": self.session_id,
                "session_secret": b64(self.session_secret),
                "lease_expires": self.lease_expires,
                "models": [m.to_json() for m in self.models],
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyRelease:
        doc = loads(raw, "key release")
        if doc.get("v") != VERSION:
            raise InvalidInput(f"key release version {doc.get('v')!r} is not {VERSION}")
        expires = doc.get("lease_expires")
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            raise InvalidInput("field 'lease_expires' must be a number")
        return cls(
            get(doc, "session_id", str),
            unb64(doc.get("session_secret"), "session_secret"),
            float(expires),
            tuple(ModelKeys.from_json(m) for m in get(doc, "models", list)),
        )


def open_release(
    sealed: bytes, keypair: KeyPair, *, replay: ReplayGuard, now: float | None = None
) -> KeyRelease:
    """Open a release or renewal sealed to ``keypair`` (the enclave's); EnvelopeError if it
    cannot be opened, was replayed, or its envelope names another session than its payload."""
    opened = open_request(
        sealed, keypair, expected_model_id=KEYSERVICE_MODEL_ID, replay=replay, now=now
    )
    try:
        release = KeyRelease.from_bytes(opened.plaintext)
    except InvalidInput:
        raise EnvelopeError() from None
    if release.session_id != opened.header.user_id:
        raise EnvelopeError()
    return release


def renewal_mac(session_secret: bytes, session_id: str, timestamp_ms: int) -> bytes:
    """HMAC-SHA256(session secret, session id ‖ timestamp as u64 ms): proves a renewal comes from
    the enclave the session was released to."""
    message = session_id.encode() + _TIMESTAMP.pack(timestamp_ms)
    return hmac.new(session_secret, message, hashlib.sha256).digest()
