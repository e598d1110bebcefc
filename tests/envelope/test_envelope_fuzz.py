"""Property-based fuzzing of sealed requests and replies.

Any change to a sealed message (a flipped byte, a cut, bytes appended, arbitrary bytes) yields
the one opaque ``EnvelopeError``: never another exception, never a plaintext.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealfn.envelope import (
    KeyPair,
    ReplayGuard,
    Suite,
    generate_keypair,
    open_request,
    peek_header,
    seal_request,
)
from sealfn.errors import EnvelopeError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_800_000_000.0
MODEL = "digits"

mutations = st.tuples(
    st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=0, max_size=3),
    st.none() | st.integers(min_value=0),  # cut at
    st.binary(max_size=8),  # appended
).filter(lambda m: bool(m[0]) or m[1] is not None or bool(m[2]))


def _mutate(raw: bytes, mutation: tuple[list[tuple[int, int]], int | None, bytes]) -> bytes:
    flips, cut, tail = mutation
    out = bytearray(raw)
    flipped = {at % len(out): xor for at, xor in flips}  # one xor per byte: none cancel out
    for at, xor in flipped.items():
        out[at] ^= xor  # xor != 0: the byte really changes
    if cut is not None:
        del out[cut % len(out) :]
    return bytes(out) + tail


@pytest.fixture(scope="module", params=list(Suite), ids=lambda s: s.name)
def keypair(request: pytest.FixtureRequest) -> KeyPair:
    return generate_keypair(request.param)


@FUZZ
@given(body=st.binary(max_size=64), mutation=mutations)
def test_any_change_to_a_sealed_request_is_the_opaque_error(
    keypair: KeyPair, body: bytes, mutation: tuple[list[tuple[int, int]], int | None, bytes]
) -> None:
    sealed, _ = seal_request(
        body, keypair.public_key, model_id=MODEL, user_id="alice", suite=keypair.suite, now=NOW
    )
    with pytest.raises(EnvelopeError) as refused:
        open_request(
            _mutate(sealed, mutation),
            keypair,
            expected_model_id=MODEL,
            replay=ReplayGuard(),
            now=NOW,
        )
    assert refused.value.message == "cannot open envelope"  # the same words for every failure


@FUZZ
@given(raw=st.binary(max_size=2048))
def test_arbitrary_bytes_never_open(keypair: KeyPair, raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        open_request(raw, keypair, expected_model_id=None, replay=ReplayGuard(), now=NOW)


@FUZZ
@given(raw=st.binary(max_size=512))
def test_peek_header_frames_or_refuses(raw: bytes) -> None:
    try:
        header = peek_header(raw)
    except EnvelopeError:
        return
    assert 1 <= len(header.model_id) <= 256 and 1 <= len(header.user_id) <= 256


@FUZZ
@given(body=st.binary(max_size=300), mutation=mutations)
def test_any_change_to_a_sealed_reply_is_the_opaque_error(
    keypair: KeyPair, body: bytes, mutation: tuple[list[tuple[int, int]], int | None, bytes]
) -> None:
    sealed, client_key = seal_request(
        b"q", keypair.public_key, model_id=MODEL, user_id="alice", suite=keypair.suite, now=NOW
    )
    opened = open_request(sealed, keypair, expected_model_id=MODEL, replay=ReplayGuard(), now=NOW)
    reply = opened.seal_reply(body)
    assert client_key.open_reply(reply) == body
    with pytest.raises(EnvelopeError):
        client_key.open_reply(_mutate(reply, mutation))
