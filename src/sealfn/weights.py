"""Weights as a separate, page-aligned file (ONNX external data), so instances can map and share it.

A model file that embeds its weights is parsed into each process's private heap: N instances of one
model hold N copies. :func:`externalize` rewrites it as a small graph file plus one weights file
whose tensors start on page boundaries; onnxruntime maps such a file read-only, and the kernel keeps
one copy of its pages for every process that maps it (the Photons/Tetris idea, at the OS level).
Sealed models never come here: their plaintext stays inside the enclave and is loaded from bytes.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealfn.errors import ModelError

__all__ = [
    "GRAPH_FILE",
    "WEIGHTS_FILE",
    "Residency",
    "external_tensors",
    "externalize",
    "residency",
]

GRAPH_FILE = "model.onnx"
WEIGHTS_FILE = "model.weights"  # the name the graph refers to, relative to the graph file
MIN_EXTERNAL_BYTES = 1024  # smaller tensors (biases, shapes) stay inline: not worth a page each
PAGE = max(mmap.PAGESIZE, 4096)  # bytes; each external tensor starts on a page of this host


def externalize(
    src: Path, dst_dir: Path, *, min_bytes: int = MIN_EXTERNAL_BYTES, align: int = PAGE
) -> Path:
    """Write ``src`` as ``dst_dir/{model.onnx, model.weights}`` and return the graph file's path.

    Every initializer of ``min_bytes`` or more moves to the weights file at an offset that is a
    multiple of ``align``, in graph order, so the same model always gives the same bytes. The
    files are written to a temporary folder beside ``dst_dir`` and renamed into place: ``dst_dir``
    either does not exist yet (or is empty) or ends up complete; one that holds files is refused.
    """
    if align <= 0 or align & (align - 1):
        raise ValueError(f"align must be a power of two, got {align}")
    dst_dir = Path(dst_dir)
    if dst_dir.exists() and any(dst_dir.iterdir()):
        raise FileExistsError(f"{str(dst_dir)!r} is not empty")
    model = _read(Path(src))
    dst_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst_dir.name}.", dir=dst_dir.parent))
    try:
        _write(model, staging, min_bytes, align)
        os.replace(staging, dst_dir)  # fails if dst_dir holds files: never mixes two models
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dst_dir / GRAPH_FILE


def external_tensors(graph_file: Path) -> dict[str, tuple[int, int]]:
    """``{tensor name: (offset, length)}`` in bytes for every tensor stored outside the graph."""
    from onnx.external_data_helper import uses_external_data

    model = _read_graph(Path(graph_file))
    found = {}
    for tensor in _initializers(model.graph):
        if uses_external_data(tensor):
            entries = {entry.key: entry.value for entry in tensor.external_data}
            found[tensor.name] = (int(entries.get("offset", 0)), int(entries["length"]))
    return found


@dataclass(frozen=True)
class Residency:
    """A process's share of one mapped file, in bytes (from Linux ``/proc/PID/smaps``)."""

    rss: int  # the file's pages resident in the process's mappings
    pss: int  # its proportional share: each page divided by the number of processes mapping it


def residency(pid: int, path: Path) -> Residency:
    """How much of the file at ``path`` process ``pid`` has mapped and resident (Linux only)."""
    name = str(Path(path).resolve())
    rss = pss = 0
    inside = False
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's header: "start-end perms ... path"
                inside = len(fields) >= 6 and " ".join(fields[5:]) == name
            elif inside and fields[0] == "Rss:":
                rss += int(fields[1]) * 1024  # smaps counts kB
            elif inside and fields[0] == "Pss:":
                pss += int(fields[1]) * 1024
    return Residency(rss, pss)


# --- reading --------------------------------------------------------------------------------


def _read(src: Path) -> Any:
    """The model with every initializer's bytes in memory, wherever ``src`` kept them."""
    from onnx.external_data_helper import load_external_data_for_model

    model = _read_graph(src)
    try:
        load_external_data_for_model(model, str(src.parent))
    except Exception as exc:  # OSError, onnx's ValidationError: the model's data is unreadable
        raise ModelError(f"cannot read the weights of {str(src)!r}: {exc}") from exc
    return model


def _read_graph(path: Path) -> Any:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # OSError, protobuf's DecodeError, ...: any failure to read it
        raise ModelError(f"cannot read ONNX model {str(path)!r}: {exc}") from exc
    if model.ir_version <= 0 or not model.graph.output:
        raise ModelError(f"{str(path)!r} is not an ONNX model (no IR version or no outputs)")
    return model


def _initializers(graph: Any) -> Iterator[Any]:
    """Every initializer of ``graph`` and of the subgraphs in its nodes (If, Loop, Scan)."""
    from onnx import AttributeProto

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                yield from _initializers(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _initializers(subgraph)


# --- writing --------------------------------------------------------------------------------


def _write(model: Any, folder: Path, min_bytes: int, align: int) -> None:
    """Move the large tensors out (in graph order, so offsets are stable), then write the graph."""
    with (folder / WEIGHTS_FILE).open("wb") as weights:
        for tensor in _initializers(model.graph):
            data = _raw_bytes(tensor)
            if data is None or len(data) < min_bytes:
                continue
            _move_out(tensor, data, weights, align)
        weights.flush()
        os.fsync(weights.fileno())
    graph = model.SerializeToString(deterministic=True)
    with (folder / GRAPH_FILE).open("wb") as handle:
        handle.write(graph)
        handle.flush()
        os.fsync(handle.fileno())


def _raw_bytes(tensor: Any) -> bytes | None:
    """The tensor's little-endian bytes, or None for a tensor that cannot live outside (strings)."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_type == TensorProto.STRING:
        return None
    if tensor.HasField("raw_data"):
        return bytes(tensor.raw_data)
    array = numpy_helper.to_array(tensor)  # typed fields (float_data, ...) into one buffer
    return bytes(numpy_helper.from_array(array, tensor.name).raw_data)


def _move_out(tensor: Any, data: bytes, weights: Any, align: int) -> None:
    """Append ``data`` at the next ``align`` boundary and point ``tensor`` at it."""
    from onnx.external_data_helper import set_external_data

    offset = -(-weights.tell() // align) * align  # round up to the boundary
    weights.write(b"\0" * (offset - weights.tell()))
    weights.write(data)
    for field in _TYPED_FIELDS:
        tensor.ClearField(field)
    tensor.raw_data = data  # set_external_data insists on raw_data, then it is dropped
    set_external_data(tensor, WEIGHTS_FILE, offset, len(data))
    tensor.ClearField("raw_data")


_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")
