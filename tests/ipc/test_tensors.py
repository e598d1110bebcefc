"""TensorWriter and read_tensor: small tensors inline, large ones in the arena, refs checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sealfn.errors import InvalidInput, ProtocolError
from sealfn.ipc.frames import TensorRef, Where
from sealfn.ipc.tensors import TensorWriter, read_tensor

INLINE = 1024  # bytes; the tests' inline limit
REGION_OFFSET = 4096  # where the writer's region starts inside the (fake) arena

SAMPLES: list[np.ndarray[Any, Any]] = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array([[True, False]]),
    np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    np.array([0, 255], dtype=np.uint8),
    np.float64(3.5) * np.ones(()),  # a scalar: shape ()
    np.zeros((0, 5), dtype=np.float16),  # empty
    np.arange(20, dtype=np.int32).reshape(4, 5).T,  # not C-contiguous
]


def _arena(size: int = 1 << 16) -> tuple[memoryview, memoryview]:
    """A whole fake arena and the writer's region inside it (from REGION_OFFSET on)."""
    whole = memoryview(bytearray(REGION_OFFSET + size))
    return whole, whole[REGION_OFFSET:]


@pytest.mark.parametrize("array", SAMPLES, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_inline_round_trip(array: np.ndarray) -> None:
    writer = TensorWriter(None, 0, INLINE)
    ref = writer.add("t", array)
    assert ref.where is Where.INLINE
    assert ref.nbytes == array.nbytes
    got = read_tensor(ref, writer.payload(), None)
    assert got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)


def test_many_inline_tensors_share_one_payload() -> None:
    writer = TensorWriter(None, 0, INLINE)
    refs = [writer.add(f"t{i}", a) for i, a in enumerate(SAMPLES)]
    payload = writer.payload()
    assert len(payload) == sum(a.nbytes for a in SAMPLES)
    for ref, array in zip(refs, SAMPLES, strict=True):
        np.testing.assert_array_equal(read_tensor(ref, payload, None), array)


def test_large_tensors_go_to_the_arena_aligned() -> None:
    whole, region = _arena()
    writer = TensorWriter(region, REGION_OFFSET, INLINE)
    big = np.arange(300, dtype=np.float64)  # 2400 bytes > INLINE
    odd = np.arange(1001, dtype=np.uint8)  # under the limit: inline
    bigger = np.arange(777, dtype=np.float32).reshape(7, 111)  # 3108 bytes
    refs = [writer.add("big", big), writer.add("odd", odd), writer.add("bigger", bigger)]
    assert [r.where for r in refs] == [Where.ARENA, Where.INLINE, Where.ARENA]
    assert refs[0].offset == REGION_OFFSET
    assert refs[2].offset % 64 == 0
    assert refs[2].offset >= refs[0].offset + big.nbytes  # no overlap
    payload = writer.payload()
    assert len(payload) == odd.nbytes  # the big ones are not copied into the frame
    for ref, array in zip(refs, [big, odd, bigger], strict=True):
        np.testing.assert_array_equal(read_tensor(ref, payload, whole), array)


def test_arena_reads_are_zero_copy_views() -> None:
    whole, region = _arena()
    writer = TensorWriter(region, REGION_OFFSET, 0)
    ref = writer.add("x", np.ones(16, dtype=np.float32))
    view = read_tensor(ref, b"", whole)
    whole[REGION_OFFSET : REGION_OFFSET + 4] = np.float32(7).tobytes()
    assert view[0] == 7  # the caller copies when the slot is to be reused


def test_a_full_region_falls_back_to_inline() -> None:
    whole, region = _arena(4096)
    writer = TensorWriter(region, REGION_OFFSET, INLINE)
    first = writer.add("a", np.ones(800, dtype=np.float32))  # 3200 bytes: fits
    second = writer.add("b", np.full(800, 2, dtype=np.float32))  # would run past the region
    assert (first.where, second.where) == (Where.ARENA, Where.INLINE)
    np.testing.assert_array_equal(read_tensor(second, writer.payload(), whole), np.full(800, 2))
    np.testing.assert_array_equal(read_tensor(first, writer.payload(), whole), np.ones(800))


def test_object_tensors_are_refused() -> None:
    writer = TensorWriter(None, 0, INLINE)
    with pytest.raises(InvalidInput, match="tensor 'text'"):
        writer.add("text", np.array([b"a", b"bc"], dtype=object))


@pytest.mark.parametrize(
    "ref",
    [
        TensorRef("x", "<f4", (4,), Where.INLINE, 4, 16),  # runs past the payload
        TensorRef("x", "<f4", (1,), Where.INLINE, -4, 4),  # before it
        TensorRef("x", "<f4", (1,), Where.INLINE, 16, 4),  # starts at its end
        TensorRef("x", "<f4", (2,), Where.ARENA, 0, 8),  # no arena to point into
        TensorRef("x", "<f4", (3,), Where.INLINE, 0, 8),  # bytes do not fit the shape
        TensorRef("x", "<f4", (2,), Where.INLINE, 0, 10),  # nor here: 10 is not 2 x 4
        TensorRef("x", "<f4", (-1, -2), Where.INLINE, 0, 8),  # negative dims
        TensorRef("x", "<f4", ("2",), Where.INLINE, 0, 8),  # type: ignore[arg-type]
        TensorRef("x", "no-such-dtype", (2,), Where.INLINE, 0, 8),
        TensorRef("x", "|O", (2,), Where.INLINE, 0, 16),  # objects are pointers, not bytes
        TensorRef("x", "|S0", (2,), Where.INLINE, 0, 0),
    ],
)
def test_bad_refs_are_protocol_errors(ref: TensorRef) -> None:
    with pytest.raises(ProtocolError, match="tensor 'x'"):
        read_tensor(ref, bytes(16), None)


def test_out_of_range_arena_ref_is_refused() -> None:
    whole, _ = _arena(1024)
    ref = TensorRef("x", "<f4", (256,), Where.ARENA, REGION_OFFSET + 4, 1024)
    with pytest.raises(ProtocolError, match="outside its buffer"):
        read_tensor(ref, b"", whole)
