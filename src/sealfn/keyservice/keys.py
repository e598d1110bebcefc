"""Public keys the KeyService hands out, and the bytes its attestation binds each one to."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from sealfn.envelope import Suite
from sealfn.errors import InvalidInput
from sealfn.keyservice.wire import b64, check_id, get, unb64

_DEPLOYMENT_DOMAIN = b"sealfn deployment key v1\x00"
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class DeploymentKey:
    """A model's deployment HPKE public key: what users seal requests for that model to."""

    model_id: str
    suite: Suite
    public_key: bytes

    def binding(self) -> bytes:
        """What the KeyService's evidence binds (as its report-data "public key") when a user asks
        for this key with a nonce: model id, suite and key, so none can be swapped."""
        parts = (_DEPLOYMENT_DOMAIN, self.model_id.encode(), bytes([self.suite]), self.public_key)
        return b"".join(_LENGTH.pack(len(part)) + part for part in parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "suite": int(self.suite),
            "public_key": b64(self.public_key),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DeploymentKey:
        return cls(
            check_id("model_id", doc.get("model_id")),
            suite_of(doc.get("suite")),
            unb64(doc.get("public_key"), "public_key"),
        )


@dataclass(frozen=True)
class KeyServiceKey:
    """The KeyService's own HPKE public key (owners seal model keys to it), as it attested it."""

    public_key: bytes
    suite: Suite
    simulated: bool  # the KeyService runs on the simulated TEE: no isolation from its host


def suite_of(value: object) -> Suite:
    """The :class:`Suite` a wire integer names; InvalidInput otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in set(Suite):
        raise InvalidInput(f"suite {value!r} is not one of {[int(s) for s in Suite]}")
    return Suite(value)


def get_suite(doc: dict[str, Any], key: str = "suite") -> Suite:
    return suite_of(get(doc, key, int))
