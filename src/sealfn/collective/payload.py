"""What travels between ranks: one numpy array or bytes, and bundles of them keyed by rank.

Wire format (little-endian)::

    payload = version u8 | kind u8 | len(dtype) u8 | dtype (ASCII) | ndim u8 | shape u64 * ndim
              | data
    bundle  = version u8 | count u32 | (rank u32 | length u64 | payload) * count

Bytes travel as kind BYTES with no dtype or shape. An array's data is its C-order buffer.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from sealfn.errors import ProtocolError

VERSION = 1
Value = np.ndarray[Any, Any] | bytes  # what a collective moves
Buffer = bytes | bytearray | memoryview

_HEAD = struct.Struct("<BBB")  # version, kind, len(dtype)
_NDIM = struct.Struct("<B")
_DIM = struct.Struct("<Q")
_BUNDLE_HEAD = struct.Struct("<BI")  # version, count
_ENTRY = struct.Struct("<IQ")  # rank, payload length


class Kind(enum.IntEnum):
    BYTES = 0
    ARRAY = 1


def encode(value: Value) -> bytes:
    """One value as a payload, in one buffer."""
    return b"".join(encode_parts(value))


def encode_parts(value: Value) -> tuple[bytes, Buffer]:
    """One value as a payload: a header and the value's own bytes (not copied)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _HEAD.pack(VERSION, Kind.BYTES, 0), value
    if not isinstance(value, np.ndarray):
        raise TypeError(f"a collective moves numpy arrays or bytes, not {type(value).__name__}")
    if value.dtype.hasobject:
        raise TypeError("object arrays cannot travel between ranks")
    dtype: bytes = value.dtype.str.encode("ascii")
    shape = b"".join(_DIM.pack(d) for d in value.shape)
    head: bytes = (
        _HEAD.pack(VERSION, Kind.ARRAY, len(dtype)) + dtype + _NDIM.pack(value.ndim) + shape
    )
    body = np.ascontiguousarray(value).reshape(-1).view(np.uint8).data
    return head, body


def decode(data: Buffer) -> Value:
    """The value a payload holds; an array shares ``data``'s memory if it is writable."""
    view = memoryview(data)
    try:
        version, kind, dtype_len = _HEAD.unpack_from(view)
        if version != VERSION:
            raise ProtocolError(f"collective payload version {version} (expected {VERSION})")
        at = _HEAD.size
        if kind == Kind.BYTES:
            return bytes(view[at:])
        if kind != Kind.ARRAY:
            raise ProtocolError(f"unknown collective payload kind {kind}")
        dtype = np.dtype(bytes(view[at : at + dtype_len]).decode("ascii"))
        at += dtype_len
        (ndim,) = _NDIM.unpack_from(view, at)
        at += _NDIM.size
        shape = tuple(_DIM.unpack_from(view, at + i * _DIM.size)[0] for i in range(ndim))
        at += ndim * _DIM.size
        array = np.frombuffer(view[at:], dtype=dtype).reshape(shape)
    except (struct.error, ValueError, TypeError, SyntaxError, UnicodeDecodeError) as exc:
        # SyntaxError: numpy parses a dtype string like ",f8" as a comma-separated record
        raise ProtocolError("malformed collective payload") from exc
    return array if array.flags.writeable else array.copy()


@dataclass(frozen=True)
class Bundle:
    """Several ranks' payloads in one message (gather and scatter move subtrees at once)."""

    parts: tuple[tuple[int, tuple[Buffer, ...]], ...]  # (rank, encoded payload's pieces)

    def to_bytes(self) -> bytes:
        return b"".join(self.to_parts())

    def to_parts(self) -> list[Buffer]:
        """The encoded bundle as buffers to send one after another (payloads are not copied)."""
        out: list[Buffer] = [_BUNDLE_HEAD.pack(VERSION, len(self.parts))]
        for rank, pieces in self.parts:
            out += [_ENTRY.pack(rank, sum(memoryview(p).nbytes for p in pieces)), *pieces]
        return out

    @classmethod
    def from_bytes(cls, data: Buffer) -> Bundle:
        """Payloads stay views into ``data`` (no copies)."""
        view = memoryview(data)
        try:
            version, count = _BUNDLE_HEAD.unpack_from(view)
            if version != VERSION:
                raise ProtocolError(f"collective bundle version {version} (expected {VERSION})")
            at = _BUNDLE_HEAD.size
            parts: list[tuple[int, tuple[Buffer, ...]]] = []
            for _ in range(count):
                rank, length = _ENTRY.unpack_from(view, at)
                at += _ENTRY.size
                if at + length > len(view):
                    raise ProtocolError("truncated collective bundle")
                parts.append((rank, (view[at : at + length],)))
                at += length
        except struct.error as exc:
            raise ProtocolError("malformed collective bundle") from exc
        return cls(tuple(parts))
