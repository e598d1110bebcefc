"""`sealfn he train | deploy | keygen | infer` against a real served gateway."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from sealfn.cli import main
from sealfn.client import Client
from sealfn.he.graph import NetGraph
from sealfn_testing import Server


def test_train_deploy_keygen_infer(
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SEALFN_ADMIN_TOKEN", server.admin_token)
    model, onnx, keys = tmp_path / "net.he", tmp_path / "net.onnx", tmp_path / "keys.sk"
    train = ["he", "train", "--channels", "2", "--epochs", "2", "--out", str(model)]
    assert main([*train, "--onnx", str(onnx)]) == 0
    assert "depth 6" in capsys.readouterr().out
    assert NetGraph.from_bytes(model.read_bytes()).kind == "he" and onnx.stat().st_size > 0

    url = ["--url", server.url]
    assert main(["he", "deploy", "cli-he", str(model), *url]) == 0
    try:
        assert main(["he", "keygen", "--out", str(keys), "--function", "cli-he", *url]) == 0
        assert stat.S_IMODE(keys.stat().st_mode) == 0o600
        assert "N=8192" in capsys.readouterr().out
        assert main(["he", "keygen", "--out", str(keys), "--depth", "2"]) == 1  # exists: no --force

        out = tmp_path / "logits.npy"
        args = ["he", "infer", "cli-he", "--keys", str(keys), "--digits", "3", "--output", str(out)]
        assert main([*args, *url]) == 0
        printed = capsys.readouterr().out
        assert "predicted:" in printed and "accuracy on 3 test digits" in printed
        assert np.load(out).shape == (3, 10)

        keys.chmod(0o644)
        assert main([*args, *url]) == 1
        assert "open to other users" in capsys.readouterr().err
    finally:
        with Client(server.url, admin_token=server.admin_token) as client:
            client.undeploy("cli-he")
