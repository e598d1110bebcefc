"""Moving numpy tensors through frames: small ones inline, large ones via a shared-memory region."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sealfn.errors import InvalidInput, ProtocolError
from sealfn.ipc.frames import TensorRef, Where

_ALIGN = 64  # bytes; keeps arena tensors cache-line aligned for onnxruntime


class TensorWriter:
    """Packs tensors for one frame; large ones go into ``region`` (one slot's half of the arena)."""

    def __init__(self, region: memoryview | None, region_offset: int, inline_limit: int) -> None:
        self._region = region  # the slot's bytes; offsets in refs are arena-absolute
        self._region_offset = region_offset
        self._inline_limit = inline_limit
        self._used = 0
        self._chunks: list[bytes | memoryview] = []
        self._inline = 0

    def add(self, name: str, array: np.ndarray) -> TensorRef:
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise InvalidInput(
                f"tensor {name!r}: BYTES tensors cannot be served by onnxruntime yet"
            )
        nbytes = array.nbytes
        shape = tuple(int(d) for d in array.shape)
        start = -(-self._used // _ALIGN) * _ALIGN
        region = self._region
        if nbytes > self._inline_limit and region is not None and start + nbytes <= len(region):
            region[start : start + nbytes] = _raw(array)
            self._used = start + nbytes
            where, offset = Where.ARENA, self._region_offset + start
        else:
            self._chunks.append(_raw(array) if nbytes else b"")
            where, offset = Where.INLINE, self._inline
            self._inline += nbytes
        return TensorRef(name, array.dtype.str, shape, where, offset, nbytes)

    def payload(self) -> bytes:
        return b"".join(self._chunks)


def read_tensor(
    ref: TensorRef, payload: bytes | memoryview, arena: memoryview | None
) -> np.ndarray:
    """A zero-copy numpy view of the tensor ``ref`` points at; ProtocolError if out of range."""
    source = arena if ref.where is Where.ARENA else payload
    if source is None or ref.offset < 0 or ref.offset + ref.nbytes > len(source):
        raise ProtocolError(f"tensor {ref.name!r} points outside its buffer")
    dtype = _dtype(ref)
    shape = ref.shape
    if not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError(f"tensor {ref.name!r}: invalid shape {shape}")
    count = math.prod(shape)
    if count * dtype.itemsize != ref.nbytes:
        raise ProtocolError(f"tensor {ref.name!r}: {ref.nbytes} bytes do not fit shape {shape}")
    flat = np.frombuffer(source, dtype=dtype, count=count, offset=ref.offset)
    return flat.reshape(shape)


def _dtype(ref: TensorRef) -> np.dtype[Any]:
    """The ref's numpy dtype; only fixed-size numeric and boolean types travel as raw bytes."""
    try:
        dtype = np.dtype(ref.dtype)
    except (TypeError, ValueError, SyntaxError):  # numpy parses "4f<" and ",f8" as records
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise ProtocolError(f"tensor {ref.name!r}: dtype {ref.dtype!r} cannot travel as raw bytes")
    return dtype


def _raw(array: np.ndarray) -> memoryview:
    """The array's bytes, without a copy (the array is C-contiguous)."""
    return memoryview(array).cast("B")  # type: ignore[arg-type]  # numpy arrays are buffers
