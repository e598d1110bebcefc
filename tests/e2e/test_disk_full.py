"""A full state directory (a small tmpfs): deploys fail with a clean 507, nothing half-written,
earlier deployments keep serving and survive a restart. Needs root to mount; skipped otherwise."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from sealfn.errors import StorageError
from sealfn_testing import launch, stop_cleanly

if TYPE_CHECKING:
    from collections.abc import Callable

    from sealfn_testing import Models

    Reference = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]

X = np.ones((2, 16), dtype=np.float32)


@contextlib.contextmanager
def _tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: room for the small MLP, not for the 13 MB 'slow' model."""
    with _tmpfs(tmp_path, "8m") as mount:
        yield mount


@pytest.fixture
def snug_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs: room to deploy the 13 MB 'slow' model, not for a host-optimized copy too."""
    with _tmpfs(tmp_path, "32m") as mount:
        yield mount


def test_full_disk_refuses_cleanly_and_loses_nothing(small_disk: Path, models: Models) -> None:
    state = small_disk / "state"
    server = launch(state)
    try:
        server.client.deploy("kept", models.mlp)
        assert server.client.infer("kept", {"input": X})["output"].shape == (2, 4)
        with pytest.raises(StorageError, match="cannot store function 'big'"):
            server.client.deploy("big", models.slow)
        with pytest.raises(StorageError, match="cannot store function 'kept'"):
            server.client.deploy("kept", models.slow)  # a failed redeploy keeps the old model
        names = [f["name"] for f in server.client.status()["functions"]]
        assert names == ["kept"]
        assert server.client.infer("kept", {"input": X})["output"].shape == (2, 4)
        leftovers = [p.name for p in (state / "functions").iterdir() if p.name != "kept"]
        assert leftovers == []  # no staging folder or partial file left behind
    finally:
        stop_cleanly(server)
    server = launch(state)  # the deployment that succeeded survives a restart
    try:
        assert server.client.infer("kept", {"input": X})["output"].shape == (2, 4)
    finally:
        stop_cleanly(server)


def test_no_room_for_the_host_optimized_copy_still_serves(
    snug_disk: Path, models: Models, reference: Reference
) -> None:
    """The first load of a deployed model saves its host-optimized copy beside it; on a full
    disk that fails, the instance loads the model as it is, and nothing half-written stays."""
    state = snug_disk / "state"
    server = launch(state)
    try:
        server.client.deploy("slow", models.slow)
        x = np.random.default_rng(2).standard_normal((2, 256)).astype(np.float32)
        out = server.client.infer("slow", {"input": x})["output"]
        np.testing.assert_allclose(out, reference(models.slow, {"input": x})["output"], rtol=1e-4)
        folder = state / "functions" / "slow"
        assert not [p.name for p in folder.iterdir() if "host-" in p.name]
    finally:
        stop_cleanly(server)
