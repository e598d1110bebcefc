"""Property-based fuzzing of the sealed model format: any change is refused, nothing leaks.

``read_header`` either frames a header or raises ``EnvelopeError``; ``open_model`` on anything
but the exact sealed bytes raises the opaque ``EnvelopeError`` and never returns plaintext.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealfn.errors import EnvelopeError
from sealfn.sealed_model import generate_model_key, open_model, read_header, seal_model

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = generate_model_key()


@FUZZ
@given(raw=st.binary(max_size=512))
def test_header_is_framed_or_refused(raw: bytes) -> None:
    try:
        header = read_header(raw)
    except EnvelopeError:
        return
    assert header.sealed_size >= len(header.model_id)


@FUZZ
@given(
    model=st.binary(min_size=0, max_size=2000),
    chunk=st.sampled_from([64, 256, 4096]),
    at=st.integers(min_value=0),
    xor=st.integers(1, 255),
)
def test_a_flipped_byte_anywhere_is_refused(model: bytes, chunk: int, at: int, xor: int) -> None:
    sealed = bytearray(seal_model(model, KEY, "m", chunk_size=chunk))
    assert open_model(bytes(sealed), KEY, "m") == model
    sealed[at % len(sealed)] ^= xor
    with pytest.raises(EnvelopeError):
        open_model(bytes(sealed), KEY, "m")


@FUZZ
@given(
    model=st.binary(min_size=1, max_size=2000),
    cut=st.integers(min_value=0),
    tail=st.binary(max_size=16),
)
def test_truncated_or_extended_models_are_refused(model: bytes, cut: int, tail: bytes) -> None:
    sealed = seal_model(model, KEY, "m", chunk_size=256)
    for changed in (sealed[: cut % len(sealed)], sealed + tail if tail else sealed[:-1]):
        with pytest.raises(EnvelopeError):
            open_model(changed, KEY, "m")


@FUZZ
@given(raw=st.binary(max_size=1024))
def test_arbitrary_bytes_never_open(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        open_model(raw, KEY, "m")
