"""`sealfn train` end to end: trains through a worker, plots, exports ONNX, seals, attests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sealfn.attestation import Policy, verify
from sealfn.cli import main
from sealfn.sealed_model import open_model
from sealfn.tee.simulated import SimulatedPlatform
from sealfn.training.data import digits


@pytest.mark.parametrize(
    ("model", "conv"), [("mlp", "im2col"), ("cnn", "im2col"), ("cnn", "channel")]
)
def test_sealfn_train_writes_a_sealed_model_that_serves_and_evidence_that_verifies(
    tmp_path: Path, model: str, conv: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, platform = tmp_path / "run", tmp_path / "platform"
    argv = ["train", "--model", model, "--epochs", "2", "--mode", "obfuscated", "--workers", "1"]
    argv += ["--conv", conv]
    argv += ["--out", str(out), "--tee", "simulated", "--platform-dir", str(platform)]
    argv += ["--no-progress", "--worker-threads", "1", "--model-id", f"digits-{model}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "epoch 2: loss" in printed and "SIMULATED" in printed

    report = json.loads((out / "report.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert report["config"]["conv"] == conv
    assert report["ops"]["checks"] == report["ops"]["products"] > 0
    assert report["aborted_steps"] == 0 and report["incidents"] == []
    assert (out / "training.png").stat().st_size > 1000

    # The sealed model opens with its key and serves with the accuracy the report claims.
    key = bytes.fromhex((out / f"digits-{model}.key").read_text().strip())
    assert (out / f"digits-{model}.key").stat().st_mode & 0o077 == 0
    onnx = open_model((out / f"digits-{model}.sealed").read_bytes(), key, f"digits-{model}")
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    data = digits()
    logits = session.run(None, {"input": data.test_x.numpy()})[0]
    served = 100.0 * float(np.mean(logits.argmax(axis=1) == data.test_y.numpy()))
    assert served == pytest.approx(report["epochs"][-1]["test_accuracy"], abs=0.25)

    # The evidence binds the sealed file's hash to the coordinator's (simulated) measurement.
    tee = report["attestation"]
    assert tee["simulated"] is True
    root = SimulatedPlatform.load_or_create(platform).root_public_key()
    policy = Policy(None, accept_simulated=True, trusted_simulated_roots=frozenset({root}))
    claims = verify(
        base64.b64decode(tee["evidence"]),
        nonce=bytes.fromhex(tee["nonce"]),
        public_key=bytes.fromhex(report["sealed_sha256"]),
        policy=policy,
    )
    assert claims.measurement.hex() == tee["measurement"]


def test_sealfn_train_rejects_a_bad_setting(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--mode", "fast", "--out", str(tmp_path)])
