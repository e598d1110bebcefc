"""Models optimized once per host: onnxruntime's full graph rewrite, saved beside the model.

At its highest level onnxruntime rewrites a model when it loads it: fusions, and on x86 the NCHWc
transformer that reorders every Conv weight into a blocked layout for the CPU's vector width. Done
at every load, that costs a ResNet-18 ~100 ms and leaves the reordered weights in each process's
private heap. Done once and saved (graph + page-aligned weights, `sealfn.weights`), later loads
skip it (~5 ms) and run on weights mapped from the file at full speed: every instance of the model
on this host shares one copy of its conv weights (PSS), and each holds ~50 MB less of its own.

onnxruntime warns that such a file fits only "the same environment the model was optimized in",
so it lives in ``host-<key>/`` beside the model, the key covering the onnxruntime version, the
machine, the CPU's instruction-set flags and the model file itself; another host (or an upgrade,
or a new model file) builds its own. Only plain models loaded from a path come here: a sealed
model's plaintext stays in its enclave's memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sealfn.errors import ModelError
from sealfn.weights import GRAPH_FILE, WEIGHTS_FILE, externalize

log = logging.getLogger("sealfn.instance")

PREFIX = "host-"
STALE_S = 600.0  # a staging folder untouched this long belongs to a builder that died
_RAW_WEIGHTS = "raw.weights"  # onnxruntime's own (unaligned) external data, before `externalize`


def fingerprint(ort: Any) -> str:
    """What an optimized file depends on: onnxruntime's version, the machine, the CPU's flags."""
    parts = [ort.__version__, platform.machine(), _cpu_flags()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def optimized_graph(graph_file: Path, ort: Any, options: Any) -> Path:
    """The host-optimized graph file of the model at ``graph_file``, built on first use with
    ``options`` (fresh session options, threads set as the caller's sessions have them).

    Building runs onnxruntime's full rewrite once and saves the result page-aligned into
    ``host-<key>/`` (made in a temporary folder, renamed into place: a reader sees it
    whole or not at all; a concurrent builder's copy wins and this one is dropped). Raises
    `ModelError` when the model cannot be optimized; the caller loads the original instead.
    """
    target = graph_file.parent / f"{PREFIX}{_key(graph_file, ort)}"
    built = target / GRAPH_FILE
    if _complete(target):
        return built
    _remove_stale(graph_file.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=graph_file.parent))
    try:
        raw = staging / "raw" / GRAPH_FILE
        raw.parent.mkdir()
        _rewrite(graph_file, raw, ort, options)
        externalize(raw, target)
    except OSError as exc:
        if _complete(target):  # another instance built it meanwhile: use theirs
            return built
        raise ModelError(f"cannot save the host-optimized model: {exc.strerror}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return built


def _key(graph_file: Path, ort: Any) -> str:
    """The optimized copy's folder key: the host's fingerprint and this model file's identity
    (name, size and modification time of the graph and of its weights file, if any), so two
    models in one folder, or a model replaced in place, never share a copy."""
    parts = [fingerprint(ort), graph_file.name]
    for path in (graph_file, graph_file.with_name(WEIGHTS_FILE)):
        if path.exists():
            info = path.stat()
            parts += [path.name, str(info.st_size), str(info.st_mtime_ns)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def options(ort: Any, base: Any) -> Any:
    """``base`` session options set for loading an optimized graph: no second rewrite."""
    base.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return base


def _rewrite(graph_file: Path, raw: Path, ort: Any, opts: Any) -> None:
    """Let onnxruntime optimize ``graph_file`` fully and save the result at ``raw``."""
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(raw)
    opts.log_severity_level = 3  # its "hardware specific" warning is this module's premise
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", _RAW_WEIGHTS
    )
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    try:
        ort.InferenceSession(str(graph_file), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelError(f"onnxruntime cannot optimize the model: {exc}") from exc
    if not raw.exists():
        raise ModelError("onnxruntime saved no optimized model")


def _remove_stale(folder: Path) -> None:
    """Remove staging folders a builder killed mid-way left behind (older than STALE_S)."""
    cutoff = time.time() - STALE_S
    for path in folder.glob(f".{PREFIX}*"):
        with contextlib.suppress(OSError):
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)


def _complete(target: Path) -> bool:
    """Whether ``target`` holds a built model (it appears whole: `externalize` renames it in)."""
    return (target / GRAPH_FILE).exists() and (target / WEIGHTS_FILE).exists()


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); the processor name elsewhere."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return platform.processor() or os.uname().machine
