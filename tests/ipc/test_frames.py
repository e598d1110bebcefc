"""Frames: round trips, and every malformed body is a ProtocolError, never a crash."""

from __future__ import annotations

import json

import pytest

from sealfn.errors import ProtocolError
from sealfn.ipc.frames import (
    HEADER,
    LENGTH,
    VERSION,
    Frame,
    Kind,
    TensorRef,
    Where,
    tensors_from_json,
    tensors_to_json,
)


def _body(frame: Frame) -> bytes:
    """The frame's bytes without the length prefix, checking the prefix on the way."""
    wire = frame.to_bytes()
    (size,) = LENGTH.unpack_from(wire)
    assert size == len(wire) - LENGTH.size
    return wire[LENGTH.size :]


def _raw(meta: bytes, *, version: int = VERSION, kind: int = Kind.RUN, meta_len: int = -1) -> bytes:
    length = len(meta) if meta_len < 0 else meta_len
    return HEADER.pack(version, kind, 0, 7, length) + meta


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize(
    ("meta", "payload"),
    [
        ({}, b""),
        ({"model": "mlp", "slot": 3, "requests": [[["x", "<f4", [2], 0, 0, 8]]]}, b"\x00" * 8),
        ({"message": "ünïcode ✓"}, bytes(range(256)) * 4),
    ],
)
def test_round_trip(kind: Kind, meta: dict[str, object], payload: bytes) -> None:
    frame = Frame(kind, 2**64 - 1, meta, payload)
    decoded = Frame.from_bytes(_body(frame))
    assert decoded.kind is kind
    assert decoded.request_id == 2**64 - 1
    assert decoded.meta == meta
    assert bytes(decoded.payload) == payload


def test_from_memoryview_keeps_payload_zero_copy() -> None:
    body = memoryview(_body(Frame(Kind.RESULT, 1, {"a": 1}, b"abcdef")))
    decoded = Frame.from_bytes(body)
    assert isinstance(decoded.payload, memoryview)
    assert bytes(decoded.payload) == b"abcdef"


def test_empty_meta_takes_no_bytes() -> None:
    body = _body(Frame(Kind.STOP, 0, {}))
    assert len(body) == HEADER.size + 2  # "{}"
    assert Frame.from_bytes(_raw(b"", kind=Kind.STOP)).meta == {}


MALFORMED = {
    "empty": (b"", "shorter than its header"),
    "short-header": (_raw(b"{}")[: HEADER.size - 1], "shorter than its header"),
    "future-version": (_raw(b"{}", version=VERSION + 1), f"version {VERSION + 1} is not supported"),
    "version-0": (_raw(b"{}", version=0), "version 0 is not supported"),
    "meta-length-too-long": (_raw(b"{}", meta_len=3), "meta runs past the end"),
    "meta-truncated": (_raw(b'{"a": 1}')[:-1], "meta runs past the end"),
    "meta-not-json": (_raw(b"{not json"), "malformed frame"),
    "meta-not-utf8": (_raw(b"\xff\xfe\x00"), "malformed frame"),
    "unknown-kind": (_raw(b"{}", kind=99), "malformed frame of kind 99"),
    "meta-list": (_raw(b"[1, 2]"), "not a JSON object"),
    "meta-string": (_raw(b'"text"'), "not a JSON object"),
}


@pytest.mark.parametrize(("body", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_is_protocol_error(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        Frame.from_bytes(body)


def test_truncated_anywhere_never_decodes_to_garbage() -> None:
    body = _body(Frame(Kind.LOAD, 5, {"model": "m", "path": "/x"}))
    for cut in range(len(body)):
        try:
            frame = Frame.from_bytes(body[:cut])
        except ProtocolError:
            continue
        # Only the payload may be cut silently (the length prefix guards it on the wire).
        assert frame.meta == {"model": "m", "path": "/x"}


def test_tensor_refs_round_trip_through_json() -> None:
    refs = (
        TensorRef("input", "<f4", (2, 16), Where.INLINE, 0, 128),
        TensorRef("mask", "|b1", (), Where.ARENA, 4096, 1),
    )
    raw = json.loads(json.dumps(tensors_to_json(refs)))
    assert tensors_from_json(raw) == refs


@pytest.mark.parametrize(
    "raw",
    [
        [["x", "<f4", [2], 0, 0]],  # a field short
        [["x", "<f4", [2], 0, 0, 8, 9]],  # a field long
        [["x", "<f4", [2], 5, 0, 8]],  # no such Where
        [["x", "<f4", [2], 0, "zero", 8]],
        [None],
        [7],
    ],
)
def test_malformed_tensor_refs_are_protocol_errors(raw: list[list[object]]) -> None:
    with pytest.raises(ProtocolError, match="malformed tensor reference"):
        tensors_from_json(raw)
