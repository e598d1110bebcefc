"""The README's sealed-inference commands, run as a user would, against real processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from sealfn_testing import SEALFN, Models, free_port, launch, stop_cleanly, wait_until


def sealfn(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEALFN, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def keyservice(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    platform = tmp_path / "platform"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sealfn.cli", "keyservice", f"--port={port}",
         f"--db={tmp_path / 'ks.db'}", "--accept-simulated", f"--platform-dir={platform}",
         "--log-level=warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        return False

    wait_until(up, 30, "the KeyService")
    yield url, platform
    process.terminate()
    process.wait(10)


def test_owner_and_user_round_trip(
    keyservice: tuple[str, Path], tmp_path: Path, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, platform = keyservice
    trust = ["--keyservice", url, "--accept-simulated", "--platform-dir", platform]
    owner, user = tmp_path / "acme.json", tmp_path / "alice.json"
    for name, kind, path in (("acme", "owner", owner), ("alice", "user", user)):
        result = sealfn("principal", "register", name, "--kind", kind, "--file", path,
                        "--keyservice", url)  # fmt: skip
        assert result.returncode == 0, result.stderr
    sealed = tmp_path / "mlp.sealed"
    result = sealfn("model", "seal", models.mlp, "--model-id", "smlp", "--out", sealed)
    assert result.returncode == 0, result.stderr
    key_file = sealed.with_suffix(".key")
    assert key_file.stat().st_mode & 0o077 == 0
    assert models.mlp.read_bytes()[-64:] not in sealed.read_bytes()
    result = sealfn("model", "upload", "smlp", "--key-file", key_file, "--as", owner, *trust)
    assert result.returncode == 0, result.stderr
    result = sealfn("model", "grant", "smlp", "alice", "--as", owner, "--keyservice", url)
    assert result.returncode == 0, result.stderr

    server = launch(
        tmp_path / "state", {"SEALFN_TEE": "simulated", "SEALFN_TEE_PLATFORM_DIR": str(platform)}
    )
    try:
        monkeypatch.setenv("SEALFN_STATE_DIR", str(server.state_dir))  # the CLI finds the token
        result = sealfn("deploy", "smlp", sealed, "--sealed", "--keyservice", url,
                        "--url", server.url)  # fmt: skip
        assert result.returncode == 0, result.stderr
        x = np.ones((1, 16), np.float32)
        np.save(tmp_path / "x.npy", x)
        out = tmp_path / "y.npy"
        result = sealfn("invoke", "smlp", "--sealed", "--as", user, "--input", tmp_path / "x.npy",
                        "--output", out, "--url", server.url, *trust)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert np.load(out).shape == (1, 4)
        result = sealfn("model", "revoke", "smlp", "alice", "--as", owner, "--keyservice", url)
        assert result.returncode == 0, result.stderr
        # without --accept-simulated the client refuses to trust a simulated KeyService
        result = sealfn("invoke", "smlp", "--sealed", "--as", user, "--input", tmp_path / "x.npy",
                        "--url", server.url, "--keyservice", url)  # fmt: skip
        assert result.returncode == 1
        assert "attestation failed" in result.stderr
    finally:
        stop_cleanly(server)
