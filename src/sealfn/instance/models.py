"""The models an instance keeps loaded: onnxruntime sessions, and batched execution over them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.errors import InvalidInput, ModelError, NotFound
from sealfn.instance import hostopt

log = logging.getLogger("sealfn.instance")


@dataclass
class LoadedModel:
    name: str
    session: Any  # onnxruntime.InferenceSession
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    load_s: float


class ModelHost:
    """Holds onnxruntime sessions by model name; one instance may keep several."""

    def __init__(
        self,
        intra_op_threads: int = 0,
        *,
        shared_pool: bool = False,
        share_weights: bool = False,
        host_optimized: bool = False,
    ) -> None:
        """``shared_pool``: one onnxruntime thread pool for every session (instances do this;
        it is process-wide, so every later session in the process must share it too), unless
        ``fix_thread_pool(own=True)`` comes before the first load.

        ``share_weights``: keep the weights of a model loaded from a path in the pages onnxruntime
        maps from its external data file (``sealfn.weights``), so every instance of the model on
        this host shares one copy. It turns off the rewrites that copy weights (see
        ``_KEEP_WEIGHTS_MAPPED``): less memory per instance, but slower convolutions.

        ``host_optimized``: load a model from a path through its host-optimized copy
        (`sealfn.instance.hostopt`, built beside it on first use): loads skip onnxruntime's
        rewrite and conv weights stay mapped and shared at full speed. A model that cannot be
        optimized loads as it is."""
        import onnxruntime as ort  # imported here: the gateway never loads onnxruntime sessions

        self._ort = ort
        self._threads = intra_op_threads
        self.models: dict[str, LoadedModel] = {}
        self._shared = shared_pool
        self._stop_spinning = False
        self._pool_fixed = False
        self._share_weights = share_weights
        self._host_optimized = host_optimized

    def fix_thread_pool(self, *, own: bool) -> None:
        """Decide, before the first session, how this host's sessions get their threads.

        ``own`` (an instance that serves one model): the session gets its own intra-op pool whose
        threads stop spinning as soon as a run returns. With the shared process-wide pool they
        cannot be told to stop (onnxruntime's Python API sets only its size) and one keeps
        spinning for milliseconds after every run: on a 2-core host, a core the gateway and the
        client need to deliver the reply. Otherwise (packed instances, several models) sessions
        share the process-wide pool, as ``shared_pool`` says. onnxruntime allows no mixing, so
        the first call (or the first load) decides and later calls change nothing."""
        if self._pool_fixed:
            return
        self._pool_fixed = True
        if not self._shared:
            return
        if own and not _POOL_SET:  # a pool set before (another host in this process) stays
            self._shared, self._stop_spinning = False, True
            # as many threads as the shared pool would have, said explicitly: onnxruntime pins
            # the threads it sizes itself (0) to cores, and on a 2-core host a pinned worker
            # waits for its core while the gateway or a neighbour holds it
            self._threads = self._threads or len(os.sched_getaffinity(0))
        else:
            _share_thread_pool(self._ort, self._threads)

    def load(self, name: str, source: Path | bytes) -> LoadedModel:
        """Load a model from a file, or from bytes (a sealed model decrypted in the enclave).

        Bytes are never shared: a sealed model's weights stay in this process's private memory."""
        self.fix_thread_pool(own=False)  # no-op when the caller decided first
        start = time.perf_counter()
        share = self._share_weights and not isinstance(source, bytes)
        session = None
        if self._host_optimized and not isinstance(source, bytes):
            session = self._load_optimized(name, Path(source), share)
        if session is None:
            session = self._session(name, source, self._options(share), share)

        model = LoadedModel(
            name,
            session,
            tuple(i.name for i in session.get_inputs()),
            tuple(o.name for o in session.get_outputs()),
            time.perf_counter() - start,
        )
        self.models[name] = model
        return model

    def _load_optimized(self, name: str, graph_file: Path, share: bool) -> Any:
        """A session on the model's host-optimized copy, or None when there can be none."""
        try:
            optimized = hostopt.optimized_graph(graph_file, self._ort, self._options(False))
            options = hostopt.options(self._ort, self._options(share))
            return self._session(name, optimized, options, share=False)
        except ModelError as exc:
            log.warning("model %r loads without host optimization: %s", name, exc.message)
            return None

    def _session(self, name: str, source: Path | bytes, options: Any, share: bool) -> Any:
        try:
            return self._ort.InferenceSession(
                source if isinstance(source, bytes) else str(source),
                sess_options=options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=list(_WEIGHT_COPYING_OPTIMIZERS) if share else None,
            )
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise ModelError(f"model {name!r} cannot be loaded: {exc}") from exc

    def _options(self, share_weights: bool) -> Any:
        options = self._ort.SessionOptions()
        if self._shared:
            options.use_per_session_threads = False  # every model here shares one pool
        else:
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
        if self._stop_spinning:  # spin inside a run (fast hand-offs), sleep between runs
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 3  # errors only: ORT warnings are noise in a server log
        if share_weights:
            for key, value in _KEEP_WEIGHTS_MAPPED.items():
                options.add_session_config_entry(key, value)
        return options

    def unload(self, name: str) -> None:
        self.models.pop(name, None)

    def run_batch(
        self, name: str, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> list[dict[str, np.ndarray]]:
        """Run several requests as one batch along dim 0 and split the outputs back per request."""
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not loaded on this instance")
        if len(requests) == 1:
            return [self._run(model, requests[0])]
        sizes = [_batch_size(request) for request in requests]
        try:
            feeds = {
                key: np.concatenate([request[key] for request in requests])
                for key in model.input_names
            }
        except ValueError as exc:  # shapes past dim 0 differ: the pool retries each alone
            raise InvalidInput(f"model {name!r}: requests cannot share a batch: {exc}") from exc
        outputs = self._run(model, feeds)
        bounds = np.cumsum(sizes)[:-1]
        split = {key: np.split(value, bounds) for key, value in outputs.items()}
        return [{key: parts[i] for key, parts in split.items()} for i in range(len(requests))]

    def _run(self, model: LoadedModel, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = model.session.run(None, dict(feeds))
        except Exception as exc:  # onnxruntime's own exception types, translated here
            raise InvalidInput(f"model {model.name!r} rejected the input: {exc}") from exc
        return dict(zip(model.output_names, values, strict=True))


# onnxruntime (1.31, CPU) maps external data files (``sealfn.weights``) and runs on the mapped
# pages, unless something rewrites a weight into its own heap buffer. Measured on ResNet-18 and on
# a 4x2048x2048 MatMul stack (benchmarks/shared_weights.py), two things do:
# - the NCHWc layout transformer (graph level ORT_ENABLE_ALL, x86) reorders every Conv weight into
#   blocked layout: no Conv weight stays mapped. Disabling it keeps them mapped, at a cost of about
#   +27% latency for ResNet-18 at batch 1 (17.9 -> 22.8 ms p50, one thread, AVX-512).
# - prepacking copies MatMul/Gemm weights into MLAS's packed layout. Disabling it keeps them
#   mapped; batch 1 (GEMV) was not slower, batch 16 was (6-7 -> 9-11 ms for the MatMul stack).
# Weights rewritten to NCHWc once and saved as external data keep both (the benchmark's arm d),
# but such a file only fits CPUs with the same vector width and the same onnxruntime.
_WEIGHT_COPYING_OPTIMIZERS = ("NchwcTransformer",)
_KEEP_WEIGHTS_MAPPED = {"session.disable_prepacking": "1"}

_POOL_SET = False


def _share_thread_pool(ort: Any, intra_op_threads: int) -> None:
    """One onnxruntime thread pool for all sessions of this process (set before the first)."""
    global _POOL_SET  # noqa: PLW0603 - onnxruntime's environment is process-wide, set once
    if _POOL_SET:
        return
    from onnxruntime.capi import _pybind_state

    threads = intra_op_threads or len(os.sched_getaffinity(0))
    _pybind_state.set_global_thread_pool_sizes(threads, 1)
    _POOL_SET = True


def _batch_size(request: Mapping[str, np.ndarray]) -> int:
    first = next(iter(request.values()))
    return int(first.shape[0]) if first.ndim else 1
