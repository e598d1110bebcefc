"""HE request bodies reach the gateway from anyone: the gateway's one look (the key id) and the
instance's parse either succeed or refuse with InvalidInput, whatever the bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealfn.errors import InvalidInput
from sealfn.he.protocol import HeMessage, Kind, peek_key_id

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY_ID = "ab" * 32


@FUZZ
@given(data=st.binary(max_size=200), kind=st.sampled_from(list(Kind)))
def test_arbitrary_bodies_are_parsed_or_refused(data: bytes, kind: Kind) -> None:
    for parse in (lambda: peek_key_id(data), lambda: HeMessage.from_bytes(data, kind)):
        try:
            parse()
        except InvalidInput as exc:
            assert exc.message


@FUZZ
@given(ciphertext=st.binary(min_size=1, max_size=64), cut=st.integers(min_value=0))
def test_messages_round_trip_and_truncations_are_refused(ciphertext: bytes, cut: int) -> None:
    raw = HeMessage(Kind.REQUEST, KEY_ID, ciphertext).to_bytes()
    assert HeMessage.from_bytes(raw, Kind.REQUEST) == HeMessage(Kind.REQUEST, KEY_ID, ciphertext)
    assert peek_key_id(raw) == KEY_ID
    header = len(raw) - len(ciphertext)
    short = raw[: cut % (header + 1)]  # the header cut short, or nothing after it
    try:
        HeMessage.from_bytes(short, Kind.REQUEST)
    except InvalidInput:
        return
    raise AssertionError("a message without a whole header and a ciphertext parsed")
