"""A full state directory (a small tmpfs): deploys fail with a clean 507, nothing half-written,
earlier deployments keep serving and survive a restart. Needs root to mount; skipped otherwise."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from sealfn.errors import StorageError
from sealfn_testing import launch, stop_cleanly

if TYPE_CHECKING:
    from sealfn_testing import Models

X = np.ones((2, 16), dtype=np.float32)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: room for the small MLP, not for the 13 MB 'slow' model."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


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
