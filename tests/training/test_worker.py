"""The accelerator worker: imports no model code, caches operands, and is a real process."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sealfn.training
from sealfn.errors import InstanceFailed, IntegrityError, ProtocolError
from sealfn.training import freivalds
from sealfn.training.keys import csprng
from sealfn.training.pool import WorkerOptions, WorkerPool
from sealfn.training.wire import Product, WorkReply, WorkRequest, operand_id
from sealfn.training.worker import TAMPERING, OperandCache, Worker

# Everything a worker process may load from sealfn: IPC frames, the product kernels, errors.
WORKER_MAY_IMPORT = {
    "sealfn",
    "sealfn.config",
    "sealfn.errors",
    "sealfn.types",
    "sealfn.ipc",
    "sealfn.ipc.frames",
    "sealfn.ipc.tensors",
    "sealfn.training",
    "sealfn.training.kernels",
    "sealfn.training.wire",
    "sealfn.training.worker",
}
WORKER_FILES = ("worker.py", "wire.py", "kernels.py")


def test_a_worker_process_loads_no_model_or_key_code() -> None:
    code = (
        "import json, sys, sealfn.training.worker; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sealfn'))))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    assert "sealfn.training.worker" in loaded
    assert loaded <= WORKER_MAY_IMPORT, loaded - WORKER_MAY_IMPORT


def test_worker_sources_import_nothing_from_the_coordinator() -> None:
    folder = Path(sealfn.training.__file__).parent
    for name in WORKER_FILES:
        tree = ast.parse((folder / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module in WORKER_MAY_IMPORT or not node.module.startswith("sealfn")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("sealfn") or alias.name in WORKER_MAY_IMPORT


def test_work_messages_round_trip_through_frames() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    request = WorkRequest((("a", a),), (Product("a", "a", transpose_right=True),), ("a",))
    again = WorkRequest.from_frame(request.to_frame(7))
    assert again.products == request.products and again.drop == ("a",)
    assert np.array_equal(again.store[0][1], a)
    reply = WorkReply((a,), 0.5)
    back = WorkReply.from_frame(reply.to_frame(7))
    assert np.array_equal(back.results[0], a) and back.seconds == 0.5
    assert len({operand_id() for _ in range(1000)}) == 1000  # fresh names, never repeated


def test_a_worker_process_multiplies_and_reuses_cached_operands() -> None:
    rng = np.random.default_rng(0)
    x, w, dy = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    with WorkerPool(1, WorkerOptions(threads=1)) as pool:
        worker = pool[0]
        (y,) = worker.run(WorkRequest((("x", x), ("w", w)), (Product("x", "w"),))).results
        # backward: only dY travels, X and W come from the cache
        dx, dw = worker.run(
            WorkRequest(
                (("dy", dy),),
                (Product("dy", "w", transpose_right=True), Product("x", "dy", transpose_left=True)),
                ("x", "w", "dy"),
            )
        ).results
        assert np.allclose(y, x @ w) and np.allclose(dx, dy @ w.T) and np.allclose(dw, x.T @ dy)
        with pytest.raises(InstanceFailed, match="not in the worker's cache"):
            worker.run(WorkRequest((), (Product("x", "w"),)))  # dropped after the backward
        with pytest.raises(InstanceFailed, match="cannot multiply"):
            worker.run(WorkRequest((("x", x),), (Product("x", "x"),)))


@pytest.mark.parametrize("kind", TAMPERING)
def test_every_tampering_kind_fails_verification(kind: str) -> None:
    rng = csprng()
    worker = Worker(torch.device("cpu"), tamper=kind)
    for step in range(3):  # "stale" needs an earlier result of the same shape
        a, b = rng.standard_normal((8, 6)), rng.standard_normal((6, 4))
        (c,) = worker.handle(WorkRequest((("a", a), ("b", b)), (Product("a", "b"),))).results
        if kind == "stale" and step == 0:
            continue
        with pytest.raises(IntegrityError):
            freivalds.check(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c), rng)


def test_the_operand_cache_counts_references_and_evicts_the_least_recent() -> None:
    cache = OperandCache(limit=3 * 8 * 4)  # three 8-element float32 operands
    shared = torch.zeros(8)
    cache.put("a", shared)
    cache.put("a", shared)  # a second product brought the same content
    cache.drop("a")
    assert torch.equal(cache.get("a"), shared)  # still held by the other product
    cache.drop("a")
    with pytest.raises(ProtocolError):
        cache.get("a")
    for name in "bcd":
        cache.put(name, torch.zeros(8))
    cache.get("b")  # b is now the most recently used
    cache.put("e", torch.zeros(8))
    assert len(cache) == 3 and cache.bytes == 3 * 8 * 4
    with pytest.raises(ProtocolError):
        cache.get("c")
    cache.drop("unknown")  # dropping twice, or what was evicted, is harmless
