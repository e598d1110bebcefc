"""A full state directory during an evaluation-key upload (the 8 MiB tmpfs of the e2e disk-full
test): a clean 507, no partial key set, the keys already stored intact, the server serving and
its keys surviving a restart. Needs root to mount; skipped otherwise."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from e2e.test_disk_full import small_disk
from sealfn.errors import StorageError
from sealfn.he.client import HeClient
from sealfn.he.keystore import KEYS_DIR
from sealfn.he.protocol import KEYS_PATH
from sealfn_testing import launch, stop_cleanly

if TYPE_CHECKING:
    from sealfn_testing import Models

__all__ = ["small_disk"]  # the fixture, reused from tests/e2e
X = np.ones((2, 16), dtype=np.float32)


@dataclass(frozen=True)
class _Upload:
    """Just what ``HeClient.upload_keys`` sends: bytes and their id (the gateway never parses
    evaluation keys; the instance does)."""

    data: bytes
    backend = "tenseal"

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def evaluation_keys(self) -> bytes:
        return self.data


def _random(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes()


def _chunked(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 1 << 16):
        yield data[start : start + (1 << 16)]


def test_full_disk_during_a_key_upload(small_disk: Path, models: Models) -> None:
    state = small_disk / "state"
    kept = _random(2 << 20, seed=1)
    kept_id = hashlib.sha256(kept).hexdigest()
    server = launch(state)
    try:
        server.client.deploy("kept", models.mlp)
        url = server.url + KEYS_PATH
        assert httpx.put(url, content=kept, timeout=60).json() == {"key_id": kept_id}
        too_big = _random(8 << 20, seed=2)  # fits the quota, not the disk
        for body in (too_big, _chunked(too_big)):  # declared length, then chunked
            reply = httpx.put(url, content=body, timeout=60)
            assert reply.status_code == 507, reply.text
            assert reply.json()["error"].startswith("cannot store evaluation keys: No space left")
        with HeClient(server.url) as client, pytest.raises(StorageError, match="No space left"):
            client.upload_keys(_Upload(too_big))  # type: ignore[arg-type]
        keys = state / KEYS_DIR
        assert [p.name for p in keys.iterdir()] == [kept_id]  # no partial upload left behind
        assert hashlib.sha256((keys / kept_id).read_bytes()).hexdigest() == kept_id
        assert httpx.get(f"{url}/{kept_id}").json() == {"key_id": kept_id, "bytes": len(kept)}
        assert server.client.infer("kept", {"input": X})["output"].shape == (2, 4)
        small = _random(1 << 20, seed=3)  # the failed uploads' space was given back
        assert httpx.put(url, content=small, timeout=60).status_code == 201
    finally:
        stop_cleanly(server)
    server = launch(state)
    try:
        assert httpx.get(f"{server.url}{KEYS_PATH}/{kept_id}").status_code == 200
    finally:
        stop_cleanly(server)
