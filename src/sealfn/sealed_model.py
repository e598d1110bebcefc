"""Models sealed by their owner: the platform stores and moves them but can never read them.

A sealed model is AES-256-GCM in fixed-size chunks, so it can be sealed from a stream and opened
without Python-level copies. Layout (all integers big-endian)::

    header  = b"SFNMODEL" | version u8 | len(model_id) u16 | model_id (UTF-8) | chunk_size u32
              | nonce_prefix (8 random bytes) | plaintext_size u64 | chunk_count u32
    chunk i = AES-256-GCM(key, nonce = nonce_prefix | i u32,
                               aad = header | model_id | i u32 | final u8)
            = ciphertext (chunk_size bytes; the last chunk holds the rest) | tag (16 bytes)

An empty model is one empty chunk, so even it carries a tag. A fresh random prefix per seal and the
chunk index keep nonces from repeating under one key: two of n seals share a prefix with chance
about n^2 / 2^65, negligible for the few versions one model key seals. The whole header is
authenticated (it is in every chunk's AAD), and the index and final flag stop truncation,
reordering and splicing chunks between models. Every failure to open is the same opaque
`EnvelopeError`; the reason goes to the debug log, never the key or any plaintext.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealfn.errors import EnvelopeError
from sealfn.modelstore import write_atomic

log = logging.getLogger("sealfn.sealed_model")

MAGIC = b"SFNMODEL"
VERSION = 1
KEY_SIZE = 32  # bytes: AES-256
TAG_SIZE = 16  # bytes: the GCM tag after each chunk
NONCE_PREFIX_SIZE = 8  # bytes; the chunk index fills the other 4 of GCM's 12
DEFAULT_CHUNK_SIZE = 4 << 20  # bytes of plaintext per chunk
MAX_CHUNK_SIZE = 1 << 30  # bytes; keeps a sealed chunk well inside u32 and memory
MAX_MODEL_ID_SIZE = 255  # bytes of UTF-8
MAX_CHUNKS = (1 << 32) - 1  # the chunk index is a u32 inside the nonce

_FIXED_HEAD = struct.Struct(">8sBH")  # magic, version, len(model_id)
_FIXED_TAIL = struct.Struct(">I8sQI")  # chunk_size, nonce_prefix, plaintext_size, chunk_count
_CHUNK_INDEX = struct.Struct(">I")
_CHUNK_TRAILER = struct.Struct(">IB")  # chunk index, final flag: the end of each chunk's AAD


@dataclass(frozen=True)
class SealedModelHeader:
    """The public, unauthenticated metadata of a sealed model: what the untrusted store may know."""

    model_id: str
    chunk_size: int  # bytes of plaintext per chunk (the last may hold fewer)
    nonce_prefix: bytes  # 8 random bytes, fresh per seal
    plaintext_size: int  # bytes
    chunk_count: int
    version: int = VERSION

    @property
    def header_size(self) -> int:
        """Bytes of the encoded header."""
        return _FIXED_HEAD.size + len(self.model_id.encode()) + _FIXED_TAIL.size

    @property
    def sealed_size(self) -> int:
        """Bytes of the whole sealed model: header, ciphertext and one tag per chunk."""
        return self.header_size + self.plaintext_size + self.chunk_count * TAG_SIZE

    def to_bytes(self) -> bytes:
        model_id = self.model_id.encode()
        head = _FIXED_HEAD.pack(MAGIC, self.version, len(model_id))
        tail = _FIXED_TAIL.pack(
            self.chunk_size, self.nonce_prefix, self.plaintext_size, self.chunk_count
        )
        return head + model_id + tail

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> SealedModelHeader:
        """Parse the header at the start of ``data`` (ignoring the rest); `EnvelopeError` if bad."""
        view = _byte_view(data, "sealed")
        try:
            return cls._parse(view)
        except (ValueError, struct.error) as exc:  # UnicodeDecodeError is a ValueError
            log.debug("cannot read sealed model header: %s", exc)
            raise EnvelopeError() from None

    @classmethod
    def _parse(cls, view: memoryview) -> SealedModelHeader:
        magic, version, id_size = _FIXED_HEAD.unpack_from(view)
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"not a version-{VERSION} sealed model")
        id_end = _FIXED_HEAD.size + id_size
        model_id = bytes(view[_FIXED_HEAD.size : id_end]).decode("utf-8", errors="strict")
        chunk_size, prefix, size, count = _FIXED_TAIL.unpack_from(view, id_end)
        header = cls(model_id, chunk_size, prefix, size, count, version)
        _check_layout(header)
        return header


def generate_model_key() -> bytes:
    """A fresh random AES-256 key for one model."""
    return AESGCM.generate_key(bit_length=KEY_SIZE * 8)


def read_header(sealed: bytes | bytearray | memoryview) -> SealedModelHeader:
    """The public metadata of a sealed model (unauthenticated until `open_model` succeeds)."""
    return SealedModelHeader.from_bytes(sealed)


def seal_model(
    plaintext: bytes | bytearray | memoryview | BinaryIO,
    key: bytes,
    model_id: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Seal a model held in memory, or read from a binary stream, into one sealed blob."""
    if isinstance(plaintext, bytes | bytearray | memoryview):
        return _seal_buffer(_byte_view(plaintext, "plaintext"), key, model_id, chunk_size)
    if callable(getattr(plaintext, "read", None)):
        return b"".join(iter_seal_model(plaintext, key, model_id, chunk_size=chunk_size))
    raise TypeError(f"plaintext must be bytes-like or a binary stream, not {type(plaintext)}")


def iter_seal_model(
    src: BinaryIO,
    key: bytes,
    model_id: str,
    *,
    size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """Seal ``size`` bytes read from ``src``, yielding the header, then one sealed chunk at a time.

    ``size`` defaults to what is left of a seekable ``src``. A stream that ends early or holds
    more than ``size`` bytes raises `ValueError` (the source changed while it was being sealed).
    """
    if not callable(getattr(src, "read", None)):
        raise TypeError(f"src must be a binary stream, not {type(src)}")
    if size is None:
        size = _remaining(src)
    header = _new_header(model_id, chunk_size, _check_size(size))
    return _sealed_chunks(src, AESGCM(_check_key(key)), header)


def seal_model_file(
    src: Path, dst: Path, key: bytes, model_id: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> None:
    """Seal the file ``src`` into ``dst`` chunk by chunk; ``dst`` appears whole or not at all."""
    src, dst = _check_path(src, "src"), _check_path(dst, "dst")
    with src.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        write_atomic(dst, iter_seal_model(stream, key, model_id, size=size, chunk_size=chunk_size))


def open_model(sealed: bytes | bytearray | memoryview, key: bytes, model_id: str) -> bytes:
    """Verify and decrypt every chunk of a sealed model; any failure is the one `EnvelopeError`."""
    view = _byte_view(sealed, "sealed")
    aead = AESGCM(_check_key(key))
    if not isinstance(model_id, str):
        raise TypeError(f"model_id must be str, not {type(model_id)}")
    header = SealedModelHeader.from_bytes(view)
    if header.model_id != model_id:
        _fail(model_id, f"sealed for model id {header.model_id!r}")
    if len(view) != header.sealed_size:  # checked before allocating plaintext_size bytes
        _fail(model_id, f"{len(view)} bytes where the header implies {header.sealed_size}")
    return _decrypt_chunks(view, aead, header)


def _decrypt_chunks(view: memoryview, aead: AESGCM, header: SealedModelHeader) -> bytes:
    head = view[: header.header_size].tobytes()

    def fill(dest: memoryview) -> None:
        for chunk in _chunks(header, head):
            try:
                aead.decrypt_into(chunk.nonce, view[chunk.sealed], chunk.aad, dest[chunk.plain])
            except InvalidTag:
                _fail(header.model_id, f"chunk {chunk.index} does not authenticate")

    return _filled_bytes(header.plaintext_size, fill)


def _seal_buffer(plaintext: memoryview, key: bytes, model_id: str, chunk_size: int) -> bytes:
    header = _new_header(model_id, chunk_size, len(plaintext))
    aead = AESGCM(_check_key(key))
    head = header.to_bytes()

    def fill(dest: memoryview) -> None:
        dest[: len(head)] = head
        for chunk in _chunks(header, head):
            aead.encrypt_into(chunk.nonce, plaintext[chunk.plain], chunk.aad, dest[chunk.sealed])

    return _filled_bytes(header.sealed_size, fill)


def _sealed_chunks(src: BinaryIO, aead: AESGCM, header: SealedModelHeader) -> Iterator[bytes]:
    head = header.to_bytes()
    yield head
    for chunk in _chunks(header, head):
        size = chunk.plain.stop - chunk.plain.start
        data = src.read(size)
        if len(data) != size:  # a short read mid-file: the source shrank
            ended = chunk.plain.start + len(data)
            raise ValueError(f"source ended at byte {ended} of {header.plaintext_size}")
        yield aead.encrypt(chunk.nonce, data, chunk.aad)
    if src.read(1):
        raise ValueError(f"source holds more than the {header.plaintext_size} bytes being sealed")


@dataclass(frozen=True)
class _Chunk:
    index: int
    plain: slice  # of the plaintext
    sealed: slice  # of the sealed model: ciphertext | tag
    nonce: bytes
    aad: bytes


def _chunks(header: SealedModelHeader, head: bytes) -> Iterator[_Chunk]:
    """Where each chunk lies and what it is sealed with; an empty model is one empty chunk."""
    aad_prefix = head + header.model_id.encode()
    sealed_start = len(head)
    for index in range(header.chunk_count):
        start = index * header.chunk_size
        stop = min(start + header.chunk_size, header.plaintext_size)
        sealed_stop = sealed_start + (stop - start) + TAG_SIZE
        final = index == header.chunk_count - 1
        nonce = header.nonce_prefix + _CHUNK_INDEX.pack(index)
        aad = aad_prefix + _CHUNK_TRAILER.pack(index, final)
        yield _Chunk(index, slice(start, stop), slice(sealed_start, sealed_stop), nonce, aad)
        sealed_start = sealed_stop


def _filled_bytes(size: int, fill: Callable[[memoryview], None]) -> bytes:
    """A new ``size``-byte object written in place by ``fill``: one allocation, no copy.

    io.BytesIO lends its buffer through getbuffer() and (in CPython) returns that very buffer from
    getvalue(). A bytearray would need bytes(out) at the end: a second allocation and a full copy,
    which measured ~0.8 GB/s against ~2.1 GB/s for this on a 50 MB model (page faults dominate).
    """
    stream = io.BytesIO(bytes(size))
    with stream.getbuffer() as view:
        fill(view)
    return stream.getvalue()


def _new_header(model_id: str, chunk_size: int, size: int) -> SealedModelHeader:
    if not isinstance(model_id, str):
        raise TypeError(f"model_id must be str, not {type(model_id)}")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool):
        raise TypeError(f"chunk_size must be int, not {type(chunk_size)}")
    count = _chunk_count(size, chunk_size)
    header = SealedModelHeader(model_id, chunk_size, os.urandom(NONCE_PREFIX_SIZE), size, count)
    _check_layout(header)
    return header


def _chunk_count(size: int, chunk_size: int) -> int:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in [1, {MAX_CHUNK_SIZE}] bytes, not {chunk_size}")
    return max(1, -(-size // chunk_size))


def _check_layout(header: SealedModelHeader) -> None:
    """Raise `ValueError` unless the header's fields are within limits and agree with each other."""
    id_size = len(header.model_id.encode())
    if not 1 <= id_size <= MAX_MODEL_ID_SIZE:
        raise ValueError(f"model id must be 1 to {MAX_MODEL_ID_SIZE} bytes of UTF-8, not {id_size}")
    if header.chunk_count != _chunk_count(header.plaintext_size, header.chunk_size):
        raise ValueError(f"chunk count {header.chunk_count} does not match the sizes")
    if header.chunk_count > MAX_CHUNKS:
        raise ValueError(f"{header.chunk_count} chunks is over the limit of {MAX_CHUNKS}")


def _fail(model_id: str, reason: str) -> NoReturn:
    log.debug("cannot open sealed model %r: %s", model_id, reason)
    raise EnvelopeError()


def _byte_view(data: object, name: str) -> memoryview:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes-like, not {type(data)}")
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _check_key(key: object) -> bytes:
    if not isinstance(key, bytes):
        raise TypeError(f"key must be bytes, not {type(key)}")
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes, not {len(key)}")
    return key


def _check_size(size: object) -> int:
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError(f"size must be int, not {type(size)}")
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    return size


def _check_path(path: object, name: str) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a path, not {type(path)}")
    return Path(path)


def _remaining(src: BinaryIO) -> int:
    if not src.seekable():
        raise ValueError("size is required for a stream that cannot seek")
    here = src.tell()
    end = src.seek(0, os.SEEK_END)
    src.seek(here)
    return end - here
