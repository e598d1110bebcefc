"""Versioned binary frames exchanged by the gateway and an instance.

A frame on the wire: ``u32 length`` then ``u8 version | u8 kind | u16 reserved | u64 request id |
u32 meta length`` then the meta (JSON, UTF-8) then the payload (inline tensor bytes). Tensors larger
than the inline limit live in the instance's shared-memory arena and the frame only points at them.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

from sealfn.errors import ProtocolError

VERSION = 1
LENGTH = struct.Struct("<I")
HEADER = struct.Struct("<BBHQI")  # version, kind, reserved, request id, meta length
MAX_FRAME = 1 << 31  # bytes; larger frames are refused rather than buffered


class Kind(enum.IntEnum):
    HELLO = 1  # instance → gateway, once, after boot
    LOAD = 2  # gateway → instance: load a model
    LOADED = 3
    UNLOAD = 4
    UNLOADED = 5
    RUN = 6  # gateway → instance: run one batch
    RESULT = 7
    FAILURE = 8  # instance → gateway: the request failed (typed, with a message)
    STOP = 9  # gateway → instance: exit cleanly


class Where(enum.IntEnum):
    INLINE = 0  # bytes inside the frame's payload
    ARENA = 1  # bytes inside the shared-memory arena


@dataclass(frozen=True, slots=True)
class TensorRef:
    """Where one tensor's bytes are: the payload or the arena, at ``offset`` for ``nbytes``."""

    name: str
    dtype: str  # numpy dtype string, e.g. "<f4"
    shape: tuple[int, ...]
    where: Where
    offset: int
    nbytes: int

    def to_json(self) -> list[Any]:
        return [self.name, self.dtype, list(self.shape), int(self.where), self.offset, self.nbytes]

    @classmethod
    def from_json(cls, raw: list[Any]) -> TensorRef:
        name, dtype, shape, where, offset, nbytes = raw
        return cls(str(name), str(dtype), tuple(shape), Where(where), int(offset), int(nbytes))


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: its kind, request id, JSON meta and raw payload."""

    kind: Kind
    request_id: int
    meta: dict[str, Any]
    payload: bytes | memoryview = b""

    def to_bytes(self) -> bytes:
        meta = json.dumps(self.meta, separators=(",", ":")).encode()
        header = HEADER.pack(VERSION, int(self.kind), 0, self.request_id, len(meta))
        size = HEADER.size + len(meta) + len(self.payload)
        return b"".join((LENGTH.pack(size), header, meta, self.payload))

    @classmethod
    def from_bytes(cls, body: bytes | memoryview) -> Frame:
        """Decode a frame body (without its length prefix)."""
        if len(body) < HEADER.size:
            raise ProtocolError(f"frame of {len(body)} bytes is shorter than its header")
        version, kind, _, request_id, meta_len = HEADER.unpack_from(body)
        if version != VERSION:
            raise ProtocolError(f"frame version {version} is not supported (expected {VERSION})")
        end = HEADER.size + meta_len
        if end > len(body):
            raise ProtocolError("frame meta runs past the end of the frame")
        try:
            meta = json.loads(bytes(body[HEADER.size : end])) if meta_len else {}
            frame = cls(Kind(kind), request_id, meta, body[end:])
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: deep JSON
            raise ProtocolError(f"malformed frame of kind {kind}") from exc
        if not isinstance(meta, dict):
            raise ProtocolError(f"frame meta of kind {kind} is not a JSON object")
        return frame


def tensors_to_json(refs: tuple[TensorRef, ...]) -> list[list[Any]]:
    return [ref.to_json() for ref in refs]


def tensors_from_json(raw: list[list[Any]]) -> tuple[TensorRef, ...]:
    try:
        return tuple(TensorRef.from_json(item) for item in raw)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(1e999)
        raise ProtocolError("malformed tensor reference in frame") from exc
