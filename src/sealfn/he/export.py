"""Export a trained network, Dirac convolutions folded, to ONNX (plaintext serving, checks)."""

from __future__ import annotations

import torch

from sealfn.he.networks import Net
from sealfn.torch_onnx import export_onnx

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def to_onnx(net: Net) -> bytes:
    """The folded network (plain Conv2d only, no Dirac parameters) as one ONNX model."""
    folded = net.folded().eval()
    example = (torch.zeros((1, *net.config.image)),)
    return export_onnx(folded, example, [INPUT_NAME], [OUTPUT_NAME])
