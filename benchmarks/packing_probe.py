"""Real instance processes for the packing benchmark: what starting one costs, what one model
costs it (load, batch-1 exec, RSS growth), and the PSS of instances holding given models.
Models load through their host-optimized copies, as sealfn instances load them by default.

Each measurement runs in fresh subprocesses (``python packing_probe.py cost|hold ...``) that load
models through ``ModelHost`` as a sealfn instance does (one onnxruntime thread, shared pool).
"""

from __future__ import annotations

import json
import os
import selectors
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

MiB = 1 << 20
THREADS = 1  # onnxruntime intra-op threads per instance: a 1-vCPU function
WARMUP = 5  # untimed runs before the timed ones (first-run allocations)
EXEC_REPS = 30  # timed batch-1 runs per measurement
HOLD_TIMEOUT_S = 120.0  # every held instance must have loaded its models by then


# ---- parent side -----------------------------------------------------------------------------


def start_times(reps: int) -> list[float]:
    """Seconds to spawn ``python -c "import onnxruntime, numpy"`` and see it exit, ``reps`` times
    after one untimed run (which warms the page cache, as a platform's image cache would)."""
    command = [sys.executable, "-c", "import onnxruntime, numpy"]
    subprocess.run(command, check=True)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run(command, check=True)
        times.append(time.perf_counter() - started)
    return times


def model_costs(path: Path, reps: int) -> list[dict[str, float]]:
    """``reps`` fresh processes each load ``path`` and time it: one report per process. The
    model's host-optimized copy is built first, in a process of its own, as the first instance
    to load a deployed model on a host does once (`sealfn.instance.hostopt`)."""
    _check_output([sys.executable, __file__, "prepare", str(path)])
    command = [sys.executable, __file__, "cost", str(path)]
    return [json.loads(_check_output(command)) for _ in range(reps)]


def held_pss(placement: Sequence[Sequence[Path]]) -> list[dict[str, float]]:
    """Start one process per instance of ``placement`` (the model files it holds), load and run
    each model once, then read every process's PSS and RSS (MiB) while all are alive."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "hold", *map(str, models)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for models in placement
    ]
    try:
        _wait_ready(procs, HOLD_TIMEOUT_S)
        return [_memory(proc.pid) for proc in procs]
    finally:
        for proc in procs:
            proc.communicate(timeout=30)  # closes stdin: the child exits


def _check_output(command: Sequence[str]) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def _wait_ready(procs: Sequence[subprocess.Popen[str]], timeout_s: float) -> None:
    """Block until every process printed its ready line; raise if one dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        for proc in procs:
            if proc.stdout is not None:
                selector.register(proc.stdout, selectors.EVENT_READ, proc)
        waiting = len(procs)
        while waiting:
            left = deadline - time.monotonic()
            events = selector.select(timeout=max(0.0, left)) if left > 0 else []
            if not events:
                raise TimeoutError(f"{waiting} held instances not ready after {timeout_s:g}s")
            for key, _ in events:
                if not key.fileobj.readline():  # type: ignore[union-attr]
                    raise RuntimeError(f"held instance {key.data.pid} exited early")
                selector.unregister(key.fileobj)
                waiting -= 1


def _memory(pid: int) -> dict[str, float]:
    info = psutil.Process(pid).memory_full_info()
    return {"pss_mib": info.pss / MiB, "rss_mib": info.rss / MiB}


# ---- child side ------------------------------------------------------------------------------


def _host() -> Any:
    from sealfn.instance.models import ModelHost

    # as `python -m sealfn.instance` builds it (Config.host_optimized is on by default)
    return ModelHost(THREADS, shared_pool=True, host_optimized=True)


def _feeds(host: Any, name: str) -> list[dict[str, np.ndarray]]:
    """One batch-1 request for the model's single input (dynamic dims taken as 1)."""
    node = host.models[name].session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in node.shape]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    return [{node.name: x}]


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / MiB


def child_cost(path: str) -> None:
    """Print the runtime floor (RSS before loading), the load time, the median batch-1 exec
    time, the RSS growth from loading and running the model, and the growth from loading a
    second copy (the marginal cost: the first session also pays onnxruntime's own setup)."""
    host = _host()
    before = _rss_mib()
    loaded = host.load("m", Path(path))
    feeds = _feeds(host, "m")
    started = time.perf_counter()
    host.run_batch("m", feeds)
    first_s = time.perf_counter() - started  # mapped weights fault in on the first run
    for _ in range(WARMUP - 1):
        host.run_batch("m", feeds)
    times = []
    for _ in range(EXEC_REPS):
        started = time.perf_counter()
        host.run_batch("m", feeds)
        times.append(time.perf_counter() - started)
    first = _rss_mib()
    host.load("m2", Path(path))
    for _ in range(WARMUP):
        host.run_batch("m2", feeds)
    exec_s = statistics.median(times)
    report = {
        "base_mb": before,
        "load_s": loaded.load_s + max(0.0, first_s - exec_s),  # ready to run at full speed
        "exec_s": exec_s,
        "growth_mb": first - before,
        "marginal_mb": _rss_mib() - first,
    }
    print(json.dumps(report), flush=True)


def child_hold(paths: Sequence[str]) -> None:
    """Load every model (each under its own name, as distinct models), run each once, say
    ready, and wait until stdin closes."""
    host = _host()
    for index, path in enumerate(paths):
        name = f"m{index}"
        host.load(name, Path(path))
        host.run_batch(name, _feeds(host, name))
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    mode, *args = sys.argv[1:]
    if mode == "prepare":
        _host().load("m", Path(args[0]))
    elif mode == "cost":
        child_cost(args[0])
    elif mode == "hold":
        child_hold(args)
    else:
        raise SystemExit(f"unknown mode {mode!r}: cost | hold")
