"""The HE wire format: ``application/vnd.sealfn.he`` bodies (versioned, binary).

    magic "SFHE" · version (1 byte) · kind (1 byte) · key id (32 bytes, SHA-256) · ciphertext

The key id names the evaluation keys the server must use (uploaded once per session to
``PUT /v2/he/keys``); the platform sees it, the ciphertext is opaque to it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sealfn.errors import InvalidInput

CONTENT_TYPE = "application/vnd.sealfn.he"
KEYS_PATH = "/v2/he/keys"
FUNCTIONS_PATH = "/v2/he/functions"  # GET .../{name}: the function's Requirements
INFER_PATH = FUNCTIONS_PATH + "/{name}/infer"  # POST: a streamed request, a streamed reply
MAGIC = b"SFHE"
VERSION = 1
HEAD_BYTES = len(MAGIC) + 2 + 32  # magic, version, kind, key id
_KEY_ID = re.compile(r"[0-9a-f]{64}")


class Kind(enum.Enum):
    REQUEST = 1
    REPLY = 2


def check_key_id(key_id: str) -> str:
    """``key_id`` if it is a lowercase hex SHA-256 (it also names a file on the server)."""
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise InvalidInput(f"evaluation key id {key_id!r} is not a hex SHA-256")
    return key_id


@dataclass(frozen=True)
class HeMessage:
    kind: Kind
    key_id: str
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        head = MAGIC + bytes([VERSION, self.kind.value]) + bytes.fromhex(check_key_id(self.key_id))
        return head + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes, kind: Kind) -> HeMessage:
        if len(data) <= HEAD_BYTES or not data.startswith(MAGIC):
            raise InvalidInput(f"the body is not an HE message ({CONTENT_TYPE})")
        if data[4] != VERSION:
            raise InvalidInput(f"HE message version {data[4]} is not supported (want {VERSION})")
        if data[5] != kind.value:
            raise InvalidInput(f"expected an HE {kind.name.lower()}")
        return cls(kind, data[6:HEAD_BYTES].hex(), data[HEAD_BYTES:])


def peek_key_id(data: bytes) -> str:
    """The key id of a request, without copying its ciphertext (the gateway's only look)."""
    return HeMessage.from_bytes(data[: HEAD_BYTES + 1], Kind.REQUEST).key_id


@dataclass(frozen=True)
class Requirements:
    """What a user needs to know about an HE function to make keys and ciphertexts for it."""

    width: int  # vector width d: inputs are padded to d and repeated over the slots
    inputs: int  # values per input (C·H·W)
    outputs: int  # logits
    depth: int  # multiplicative depth: the keys need at least this many levels
    rotations: int  # per inference (baby-step giant-step), for information

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirements:
        try:
            return cls(
                **{k: int(data[k]) for k in ("width", "inputs", "outputs", "depth", "rotations")}
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"malformed HE requirements: {exc}") from exc
