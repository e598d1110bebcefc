"""Sealed models: round trips, the documented layout, streaming, and every tamper we could find."""

from __future__ import annotations

import array
import io
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealfn.errors import EnvelopeError
from sealfn.sealed_model import (
    DEFAULT_CHUNK_SIZE,
    MAGIC,
    TAG_SIZE,
    SealedModelHeader,
    generate_model_key,
    iter_seal_model,
    open_model,
    read_header,
    seal_model,
    seal_model_file,
)

KEY = bytes(range(32))
MODEL = "resnet-18"
SMALL = 16  # bytes per chunk in the tamper tests: 40 bytes of model = chunks of 16, 16, 8
PLAINTEXT = bytes(range(40))


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    """Split a sealed model into its header and its sealed chunks (ciphertext | tag)."""
    header = read_header(sealed)
    head, rest = sealed[: header.header_size], sealed[header.header_size :]
    sizes = [min(header.chunk_size, header.plaintext_size - i * header.chunk_size) + TAG_SIZE
             for i in range(header.chunk_count)]  # fmt: skip
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(rest[pos : pos + size])
        pos += size
    return head, chunks


@pytest.mark.parametrize(
    ("size", "chunk_size"),
    [
        (0, DEFAULT_CHUNK_SIZE),
        (1, DEFAULT_CHUNK_SIZE),
        (1, 1),
        (0, SMALL),
        (4 * SMALL, SMALL),  # an exact multiple: no short last chunk
        (4 * SMALL + 1, SMALL),
        (10_000_000, 64 << 10),  # 10 MB in 153 chunks
    ],
)
def test_round_trip(size: int, chunk_size: int) -> None:
    plaintext = os.urandom(size)
    sealed = seal_model(plaintext, KEY, MODEL, chunk_size=chunk_size)
    header = read_header(sealed)
    assert (header.model_id, header.plaintext_size, header.chunk_size) == (MODEL, size, chunk_size)
    assert header.chunk_count == max(1, -(-size // chunk_size))
    assert len(sealed) == header.sealed_size
    assert open_model(sealed, KEY, MODEL) == plaintext
    assert open_model(memoryview(sealed), KEY, MODEL) == plaintext
    assert open_model(bytearray(sealed), KEY, MODEL) == plaintext


def test_bytes_like_inputs_are_sealed_as_their_bytes() -> None:
    floats = array.array("f", [1.0, 2.5, -3.0])
    sealed = seal_model(memoryview(floats), KEY, MODEL)
    assert open_model(sealed, KEY, MODEL) == floats.tobytes()
    assert open_model(seal_model(bytearray(b"abc"), KEY, MODEL), KEY, MODEL) == b"abc"


def test_layout_matches_the_documented_format() -> None:
    """Decrypt by hand from the module docstring's layout: a known-answer check of the format."""
    sealed = seal_model(PLAINTEXT, KEY, "m", chunk_size=SMALL)
    magic, version, id_size = struct.unpack_from(">8sBH", sealed)
    assert (magic, version, id_size) == (MAGIC, 1, 1)
    assert sealed[11:12] == b"m"
    chunk_size, prefix, size, count = struct.unpack_from(">I8sQI", sealed, 12)
    assert (chunk_size, size, count) == (SMALL, 40, 3)
    head, chunks = _chunks(sealed)
    assert len(head) == 36
    aead = AESGCM(KEY)
    opened = b""
    for i, chunk in enumerate(chunks):
        nonce = prefix + struct.pack(">I", i)
        aad = head + b"m" + struct.pack(">IB", i, i == count - 1)
        opened += aead.decrypt(nonce, chunk, aad)
    assert opened == PLAINTEXT
    assert SealedModelHeader.from_bytes(head).to_bytes() == head


def test_read_header_needs_only_the_header() -> None:
    sealed = seal_model(PLAINTEXT, KEY, MODEL, chunk_size=SMALL)
    header = read_header(sealed)
    assert read_header(sealed[: header.header_size]) == header
    assert len(header.nonce_prefix) == 8


@pytest.mark.parametrize("garbage", [b"", b"SFNMODEL", b"x" * 100, b"SFNMODEL\x02" + bytes(40)])
def test_read_header_rejects_garbage_opaquely(garbage: bytes) -> None:
    with pytest.raises(EnvelopeError, match=r"^cannot open envelope$"):
        read_header(garbage)


def test_stream_seal_equals_in_memory_seal() -> None:
    plaintext = os.urandom(100_000)
    from_stream = seal_model(io.BytesIO(plaintext), KEY, MODEL, chunk_size=4096)
    assert open_model(from_stream, KEY, MODEL) == plaintext
    assert len(from_stream) == len(seal_model(plaintext, KEY, MODEL, chunk_size=4096))


def test_iter_seal_model_yields_header_then_chunks_and_starts_at_the_stream_position() -> None:
    stream = io.BytesIO(b"skip" + PLAINTEXT)
    stream.seek(4)
    parts = list(iter_seal_model(stream, KEY, MODEL, chunk_size=SMALL))
    assert len(parts) == 1 + 3
    assert open_model(b"".join(parts), KEY, MODEL) == PLAINTEXT


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._data.readinto(buffer)


def test_unseekable_stream_needs_its_size() -> None:
    with pytest.raises(ValueError, match="size is required"):
        iter_seal_model(_Unseekable(PLAINTEXT), KEY, MODEL)  # type: ignore[arg-type]
    stream = io.BufferedReader(_Unseekable(PLAINTEXT))
    sealed = b"".join(iter_seal_model(stream, KEY, MODEL, size=len(PLAINTEXT), chunk_size=SMALL))
    assert open_model(sealed, KEY, MODEL) == PLAINTEXT


@pytest.mark.parametrize(("size", "match"), [(41, "ended at byte 40"), (39, "more than the 39")])
def test_a_stream_that_does_not_hold_size_bytes_fails(size: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        b"".join(iter_seal_model(io.BytesIO(PLAINTEXT), KEY, MODEL, size=size, chunk_size=SMALL))


def test_seal_model_file_streams_into_place(tmp_path: Path) -> None:
    plaintext = os.urandom(300_000)
    src, dst = tmp_path / "model.onnx", tmp_path / "out" / "model.sealed"
    src.write_bytes(plaintext)
    dst.parent.mkdir()
    seal_model_file(src, dst, KEY, MODEL, chunk_size=65536)
    sealed = dst.read_bytes()
    assert open_model(sealed, KEY, MODEL) == plaintext
    assert open_model(seal_model(plaintext, KEY, MODEL, chunk_size=65536), KEY, MODEL) == plaintext
    assert read_header(sealed).chunk_count == 5
    assert os.listdir(dst.parent) == ["model.sealed"]  # no temporary file left behind


def test_seal_model_file_fails_before_writing_on_bad_arguments(tmp_path: Path) -> None:
    src, dst = tmp_path / "model.onnx", tmp_path / "model.sealed"
    src.write_bytes(PLAINTEXT)
    with pytest.raises(ValueError, match="chunk_size"):
        seal_model_file(src, dst, KEY, MODEL, chunk_size=0)
    assert os.listdir(tmp_path) == ["model.onnx"]


# ---- tampering: every case is the same opaque EnvelopeError -------------------------------------

SEALED = seal_model(PLAINTEXT, KEY, MODEL, chunk_size=SMALL)
OTHER = seal_model(PLAINTEXT, KEY, "other-model", chunk_size=SMALL)
RESEALED = seal_model(PLAINTEXT, KEY, MODEL, chunk_size=SMALL)  # same key, id, text: new prefix


def _flip(data: bytes, index: int, bit: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _with_header(data: bytes, **changes: object) -> bytes:
    """Re-encode the header with some fields changed (consistently), keeping the chunks."""
    header = read_header(data)
    fields = {name: getattr(header, name) for name in header.__dataclass_fields__}
    fields.update(changes)
    return SealedModelHeader(**fields).to_bytes() + data[header.header_size :]


def _tampered() -> dict[str, tuple[bytes, bytes, str]]:
    """name -> (sealed, key, model id) that must not open."""
    head, chunks = _chunks(SEALED)
    _, other_chunks = _chunks(OTHER)
    _, resealed_chunks = _chunks(RESEALED)
    cases: dict[str, bytes] = {
        "drop chunk 0": head + chunks[1] + chunks[2],
        "drop chunk 1": head + chunks[0] + chunks[2],
        "drop the final chunk": head + chunks[0] + chunks[1],
        "swap chunks 0 and 1": head + chunks[1] + chunks[0] + chunks[2],
        "duplicate chunk 0": head + chunks[0] + chunks[0] + chunks[2],
        "append a byte": SEALED + b"\0",
        "append a chunk": SEALED + chunks[2],
        "chunk from another model, same key": head + chunks[0] + other_chunks[1] + chunks[2],
        "chunk from a re-seal, same key and id": head + chunks[0] + resealed_chunks[1] + chunks[2],
        "header from a re-seal": _chunks(RESEALED)[0] + b"".join(chunks),
        "header claims another model id": _with_header(SEALED, model_id="other-model"),
        "header claims 32 bytes, final chunk dropped": _with_header(
            head + chunks[0] + chunks[1], plaintext_size=32, chunk_count=2
        ),
        "header claims other chunking": _with_header(SEALED, chunk_size=20, chunk_count=2),
        "header claims version 2": _with_header(SEALED, version=2),
        "other model's blob": OTHER,
    }
    out = {name: (data, KEY, MODEL) for name, data in cases.items()}
    out["other key"] = (SEALED, generate_model_key(), MODEL)
    out["other model id"] = (SEALED, KEY, "other-model")
    out["header rewritten to another id, opened as it"] = (
        _with_header(SEALED, model_id="other-model"),
        KEY,
        "other-model",
    )
    out["other model's blob under its own id, wrong key"] = (OTHER, bytes(32), "other-model")
    for length in range(len(SEALED)):
        out[f"truncated to {length} bytes"] = (SEALED[:length], KEY, MODEL)
    for index in range(len(SEALED)):
        for bit in (0, 7):
            out[f"bit {bit} of byte {index} flipped"] = (_flip(SEALED, index, bit), KEY, MODEL)
    return out


TAMPERED = _tampered()


@pytest.mark.parametrize("name", list(TAMPERED))
def test_tampering_is_one_opaque_error(name: str) -> None:
    sealed, key, model_id = TAMPERED[name]
    with pytest.raises(EnvelopeError) as info:
        open_model(sealed, key, model_id)
    assert type(info.value) is EnvelopeError
    assert str(info.value) == "cannot open envelope"


def test_the_untampered_blob_opens() -> None:
    assert open_model(SEALED, KEY, MODEL) == PLAINTEXT
    assert open_model(OTHER, KEY, "other-model") == PLAINTEXT


def test_the_reason_goes_to_the_debug_log_without_key_or_plaintext(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = b"top-secret-weights" * 4
    sealed = _flip(seal_model(secret, KEY, MODEL, chunk_size=SMALL), -1, 0)
    with caplog.at_level(logging.DEBUG, logger="sealfn.sealed_model"), pytest.raises(EnvelopeError):
        open_model(sealed, KEY, MODEL)
    text = caplog.text
    assert "does not authenticate" in text
    assert KEY.hex() not in text and repr(KEY) not in text
    assert "top-secret" not in text


def test_nonce_prefixes_are_distinct_across_seals() -> None:
    prefixes = {read_header(seal_model(b"x", KEY, MODEL)).nonce_prefix for _ in range(10_000)}
    assert len(prefixes) == 10_000


def test_generate_model_key() -> None:
    keys = {generate_model_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(isinstance(k, bytes) and len(k) == 32 for k in keys)


# ---- bad arguments fail early ------------------------------------------------------------------

BAD_TYPES: list[tuple[str, Callable[[], object]]] = [
    ("str plaintext", lambda: seal_model("weights", KEY, MODEL)),  # type: ignore[arg-type]
    ("int plaintext", lambda: seal_model(3, KEY, MODEL)),  # type: ignore[arg-type]
    ("str key", lambda: seal_model(b"x", "k" * 32, MODEL)),  # type: ignore[arg-type]
    ("bytearray key", lambda: open_model(SEALED, bytearray(KEY), MODEL)),  # type: ignore[arg-type]
    ("bytes model id", lambda: seal_model(b"x", KEY, b"m")),  # type: ignore[arg-type]
    ("bytes model id on open", lambda: open_model(SEALED, KEY, b"m")),  # type: ignore[arg-type]
    ("float chunk size", lambda: seal_model(b"x", KEY, MODEL, chunk_size=1.5)),  # type: ignore[arg-type]
    ("bool chunk size", lambda: seal_model(b"x", KEY, MODEL, chunk_size=True)),
    ("str sealed", lambda: open_model("sealed", KEY, MODEL)),  # type: ignore[arg-type]
    ("int header", lambda: read_header(7)),  # type: ignore[arg-type]
    ("no stream", lambda: iter_seal_model(b"x", KEY, MODEL)),  # type: ignore[arg-type]
    ("str size", lambda: iter_seal_model(io.BytesIO(), KEY, MODEL, size="1")),  # type: ignore[arg-type]
    ("int path", lambda: seal_model_file(1, Path("x"), KEY, MODEL)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("call", [c for _, c in BAD_TYPES], ids=[n for n, _ in BAD_TYPES])
def test_bad_argument_types_raise_type_error(call: Callable[[], object]) -> None:
    with pytest.raises(TypeError):
        call()


BAD_VALUES: list[tuple[str, Callable[[], object]]] = [
    ("short key", lambda: seal_model(b"x", KEY[:16], MODEL)),
    ("short key on open", lambda: open_model(SEALED, KEY[:31], MODEL)),
    ("empty model id", lambda: seal_model(b"x", KEY, "")),
    ("long model id", lambda: seal_model(b"x", KEY, "m" * 256)),
    ("unencodable model id", lambda: seal_model(b"x", KEY, "\udc80")),
    ("zero chunk size", lambda: seal_model(b"x", KEY, MODEL, chunk_size=0)),
    ("huge chunk size", lambda: seal_model(b"x", KEY, MODEL, chunk_size=(1 << 30) + 1)),
    ("negative size", lambda: iter_seal_model(io.BytesIO(), KEY, MODEL, size=-1)),
    (
        "too many chunks",
        lambda: iter_seal_model(io.BytesIO(), KEY, MODEL, size=1 << 33, chunk_size=1),
    ),
]


@pytest.mark.parametrize("call", [c for _, c in BAD_VALUES], ids=[n for n, _ in BAD_VALUES])
def test_bad_argument_values_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()
