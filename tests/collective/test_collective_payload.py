from __future__ import annotations

import numpy as np
import pytest

from sealfn.collective.payload import Bundle, decode, encode
from sealfn.errors import ProtocolError


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x00bytes",
        np.array(3.5, dtype=np.float32),
        np.zeros((0, 4), dtype=np.int16),
        np.arange(24, dtype=">i4").reshape(2, 3, 4),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    ],
)
def test_payload_round_trip(value: np.ndarray | bytes) -> None:
    back = decode(encode(value))
    if isinstance(value, bytes):
        assert back == value
    else:
        assert isinstance(back, np.ndarray)
        assert back.dtype == value.dtype
        np.testing.assert_array_equal(back, value)
        assert back.flags.writeable


def test_bundle_round_trip() -> None:
    bundle = Bundle(((3, (b"abc",)), (0, (b"",)), (7, (encode(np.ones(2)),))))
    assert Bundle.from_bytes(bundle.to_bytes()) == bundle


@pytest.mark.parametrize("data", [b"", b"\x02\x00\x00", b"\x01\x07\x00"])
def test_malformed_payloads_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


def test_truncated_bundle_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Bundle.from_bytes(Bundle(((1, (b"abc", b"def")),)).to_bytes()[:-2])


def test_only_arrays_and_bytes_travel() -> None:
    with pytest.raises(TypeError):
        encode([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode(np.array([object()]))
