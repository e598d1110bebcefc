"""The trained model leaves the coordinator only as a sealed ONNX file, with evidence of origin.

The network is exported to ONNX (float32, input ``"input"`` (B, 64), output ``"output"`` (B, 10),
batch dimension dynamic), sealed with the sealed-inference tooling (AES-256-GCM under a fresh model
key; :mod:`sealfn.sealed_model`), and the coordinator's TEE produces evidence binding the sealed
file's SHA-256 to its measurement. Under the simulated TEE that evidence is marked simulated.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sealfn.sealed_model import generate_model_key, seal_model
from sealfn.tee import TeeBackend, report_data
from sealfn.torch_onnx import export_onnx

INPUT_NAME = "input"
OUTPUT_NAME = "output"


@dataclass(frozen=True)
class SealedOutput:
    """Where the sealed model and its key were written, and the sealed file's SHA-256."""

    sealed: Path
    key_file: Path
    sha256: str


def to_onnx(net: nn.Sequential, features: int) -> bytes:
    """The eval-mode float32 network as one self-contained ONNX model."""
    exported = copy.deepcopy(net).float().eval()
    return export_onnx(exported, (torch.zeros(2, features),), [INPUT_NAME], [OUTPUT_NAME])


def seal(onnx: bytes, out_dir: Path, model_id: str) -> SealedOutput:
    """Seal ``onnx`` under a fresh key into ``out_dir`` (key file mode 0600)."""
    key = generate_model_key()
    sealed = seal_model(onnx, key, model_id)
    sealed_path, key_path = out_dir / f"{model_id}.sealed", out_dir / f"{model_id}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    sealed_path.write_bytes(sealed)
    return SealedOutput(sealed_path, key_path, hashlib.sha256(sealed).hexdigest())


def attest(backend: TeeBackend, sealed_sha256: str) -> dict[str, Any]:
    """Evidence that this coordinator (its measurement) produced the sealed model."""
    nonce = os.urandom(32)
    evidence = backend.evidence(report_data(bytes.fromhex(sealed_sha256), nonce))
    return {
        "tee": backend.name,
        "simulated": backend.simulated,
        "note": "SIMULATED TEE: no isolation from the host" if backend.simulated else "",
        "measurement": backend.measurement().hex(),
        "report_data": "SHA-512(len-prefixed sealed-model SHA-256 || nonce)",
        "nonce": nonce.hex(),
        "evidence": base64.b64encode(evidence).decode("ascii"),
    }
