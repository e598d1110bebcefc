"""PyTorch → one self-contained ONNX model in memory (every initializer inline), with the
exporter's prints, warnings and log lines kept off the caller's terminal."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from sealfn.errors import ModelError


def export_onnx(
    net: Any, example: tuple[Any, ...], input_names: Sequence[str], output_names: Sequence[str]
) -> bytes:
    """``net`` (a torch.nn.Module) exported with ``example`` inputs; dim 0 of every input is a
    dynamic batch. The bytes are one self-contained ONNX file (exporting straight to a path
    would spill large weights into ``<file>.data``)."""
    import torch

    batch = torch.export.Dim("batch")
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            net,
            example,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=tuple({0: batch} for _ in example),
            verbose=False,
        )
    if program is None:
        raise ModelError("torch.onnx.export returned no program")
    return bytes(program.model_proto.SerializeToString())


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Keep the exporter's noise (e.g. "torchvision is not installed") off the terminal, so a
    CLI's output stays clean and ``filterwarnings=error`` holds."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
