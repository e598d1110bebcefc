"""Export a trained network, Dirac convolutions folded, to ONNX (plaintext serving, checks) and
to the ``NetGraph`` file the HE function serves."""

from __future__ import annotations

import torch

from sealfn.errors import ModelError
from sealfn.he.networks import Net
from sealfn.workloads.models import _quiet_exporter  # the exporter's noise, kept off terminals

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def to_onnx(net: Net) -> bytes:
    """The folded network (plain Conv2d only, no Dirac parameters) as one ONNX model."""
    folded = net.folded().eval()
    example = (torch.zeros((1, *net.config.image)),)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            folded,
            example,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    if program is None:
        raise ModelError("torch.onnx.export returned no program")
    return bytes(program.model_proto.SerializeToString())
