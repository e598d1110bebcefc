"""One partition's outputs, as they travel to the root and sit in a checkpoint.

Wire format (little-endian)::

    version u8 | partition u32 | count u16 | (len(name) u16 | name (UTF-8) | length u64
    | collective payload) * count
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from sealfn.collective.payload import decode, encode
from sealfn.errors import ProtocolError

VERSION = 1
Array = np.ndarray[Any, Any]
_HEAD = struct.Struct("<BIH")
_NAME = struct.Struct("<H")
_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True)
class PartitionResult:
    partition: int
    outputs: tuple[tuple[str, Array], ...]  # (output name, records x ...), in model order

    def to_bytes(self) -> bytes:
        out = [_HEAD.pack(VERSION, self.partition, len(self.outputs))]
        for name, array in self.outputs:
            raw, payload = name.encode(), encode(array)
            out += [_NAME.pack(len(raw)), raw, _LENGTH.pack(len(payload)), payload]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> PartitionResult:
        view = memoryview(data)
        try:
            version, partition, count = _HEAD.unpack_from(view)
            if version != VERSION:
                raise ProtocolError(f"partition result version {version} (expected {VERSION})")
            at, outputs = _HEAD.size, []
            for _ in range(count):
                (size,) = _NAME.unpack_from(view, at)
                name = bytes(view[at + _NAME.size : at + _NAME.size + size]).decode()
                at += _NAME.size + size
                (length,) = _LENGTH.unpack_from(view, at)
                at += _LENGTH.size
                if at + length > len(view):  # a lying length would move ``at`` past any buffer
                    raise ProtocolError("truncated partition result")
                value = decode(view[at : at + length])
                at += length
                if not isinstance(value, np.ndarray):
                    raise ProtocolError(f"output {name!r} is not an array")
                outputs.append((name, value))
        except (struct.error, UnicodeDecodeError) as exc:
            raise ProtocolError("malformed partition result") from exc
        return cls(partition, tuple(outputs))
