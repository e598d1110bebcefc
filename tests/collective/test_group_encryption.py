"""Frames between enclave ranks are sealed under the group key; the stage sees only ciphertext."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from sealfn.collective import (
    Communicator,
    DirectoryChannel,
    ReleasedModelGroupKey,
    SealedChannel,
    derive_group_key,
)
from sealfn.errors import AccessDenied, EnvelopeError

GROUP = "job-1/round-0"


def pair(stage: Path, keys: tuple[bytes, bytes]) -> tuple[SealedChannel, SealedChannel]:
    return tuple(  # type: ignore[return-value]
        SealedChannel(DirectoryChannel(stage, GROUP, rank, 2, timeout=5), keys[rank], GROUP)
        for rank in (0, 1)
    )


def staged(stage: Path) -> list[Path]:
    return sorted((stage / GROUP / "0-1").iterdir())


def test_the_stage_holds_ciphertext_only(tmp_path: Path) -> None:
    key = os.urandom(32)
    sender, receiver = pair(tmp_path, (key, key))
    secret = np.full(256, 7.25, dtype=np.float64)
    Communicator(sender).send(secret, 1)
    (frame,) = staged(tmp_path)
    assert secret.tobytes() not in frame.read_bytes()
    assert b"7.25" not in frame.read_bytes()
    np.testing.assert_array_equal(Communicator(receiver).recv(0), secret)


@pytest.mark.parametrize("where", [0, 5, 20, -1])
def test_a_flipped_bit_is_refused(tmp_path: Path, where: int) -> None:
    key = os.urandom(32)
    sender, receiver = pair(tmp_path, (key, key))
    sender.send(1, b"label=cat score=0.93")
    (frame,) = staged(tmp_path)
    data = bytearray(frame.read_bytes())
    data[where] ^= 0x01
    frame.write_bytes(bytes(data))
    with pytest.raises(EnvelopeError, match="cannot open a frame from rank 0"):
        receiver.recv(0)


def test_reordered_and_replayed_frames_are_refused(tmp_path: Path) -> None:
    key = os.urandom(32)
    sender, receiver = pair(tmp_path, (key, key))
    sender.send(1, b"first")
    sender.send(1, b"second")
    first, second = staged(tmp_path)
    swapped = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(swapped)
    with pytest.raises(EnvelopeError):
        receiver.recv(0)


def test_a_rank_without_the_group_key_cannot_read_or_forge(tmp_path: Path) -> None:
    sender, outsider = pair(tmp_path, (os.urandom(32), os.urandom(32)))
    sender.send(1, b"members only")
    with pytest.raises(EnvelopeError):
        outsider.recv(0)


def test_a_frame_from_another_group_is_refused(tmp_path: Path) -> None:
    key = os.urandom(32)
    other = SealedChannel(DirectoryChannel(tmp_path, GROUP, 0, 2, timeout=5), key, "job-2")
    receiver = SealedChannel(DirectoryChannel(tmp_path, GROUP, 1, 2, timeout=5), key, GROUP)
    other.send(1, b"wrong group")
    with pytest.raises(EnvelopeError):
        receiver.recv(0)


def test_collectives_run_sealed_end_to_end(tmp_path: Path) -> None:
    key = derive_group_key(os.urandom(32), GROUP)
    results: dict[int, object] = {}

    def rank_main(rank: int) -> None:
        channel = SealedChannel(DirectoryChannel(tmp_path, GROUP, rank, 3, timeout=5), key, GROUP)
        results[rank] = Communicator(channel).allreduce(np.array([rank + 1.0]))

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert {r: float(v[0]) for r, v in results.items()} == {0: 6.0, 1: 6.0, 2: 6.0}  # type: ignore[index]


class _Keys:
    def __init__(self, model_key: bytes) -> None:
        self.model_key = model_key


class _Lease:
    """The part of ``KeyLease`` the group key reads: released keys, or None once lapsed."""

    def __init__(self, released: dict[str, bytes]) -> None:
        self.released = released

    def model(self, model_id: str) -> _Keys | None:
        key = self.released.get(model_id)
        return None if key is None else _Keys(key)


def test_group_key_comes_from_the_released_model_key() -> None:
    model_key = os.urandom(32)
    member = ReleasedModelGroupKey(_Lease({"resnet": model_key}), "resnet")
    other_member = ReleasedModelGroupKey(_Lease({"resnet": model_key}), "resnet")
    assert member.group_key(GROUP) == other_member.group_key(GROUP)
    assert member.group_key(GROUP) != member.group_key("job-1/round-1")  # fresh key per round
    assert member.group_key(GROUP) != model_key
    assert len(member.group_key(GROUP)) == 32


def test_no_release_no_group_key() -> None:
    lapsed = ReleasedModelGroupKey(_Lease({}), "resnet")
    with pytest.raises(AccessDenied):
        lapsed.group_key(GROUP)


def test_group_key_known_answer() -> None:
    # Pinned so the derivation (HKDF-SHA256, no salt, label + group id) never silently changes.
    key = derive_group_key(bytes(range(32)), "g")
    assert key.hex() == "607c20c0c2728960df61681fa7ef904ed1e4dac1a09f501f05a5ae56478c6c3a"
