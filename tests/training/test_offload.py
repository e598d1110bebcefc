"""Receiving results: copies for tensors that outlive their frame, views for ones only read."""

from __future__ import annotations

import numpy as np

from sealfn.training.offload import borrow, to_tensor


def _received(values: np.ndarray) -> np.ndarray:
    """An array as a worker's reply arrives: a view into a frame buffer, at an odd offset."""
    frame = bytearray(3 + values.nbytes)
    frame[3:] = values.tobytes()
    return np.frombuffer(memoryview(frame)[3:], dtype=values.dtype).reshape(values.shape)


def test_a_kept_result_is_a_copy_and_a_borrowed_one_a_view() -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    received = _received(values)
    kept, borrowed = to_tensor(received), borrow(received)
    assert np.array_equal(kept.numpy(), values) and np.array_equal(borrowed.numpy(), values)
    received[0, 0] = 99.0  # the frame buffer changes: only the view sees it
    assert float(kept[0, 0]) == 0.0
    assert float(borrowed[0, 0]) == 99.0


def test_a_read_only_result_is_copied_rather_than_wrapped() -> None:
    values = np.arange(6, dtype=np.float64)
    values.flags.writeable = False
    borrowed = borrow(values)  # no warning (pytest turns warnings into errors)
    assert not np.shares_memory(borrowed.numpy(), values)
    assert np.array_equal(borrowed.numpy(), values)
