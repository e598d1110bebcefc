"""Arm (a), the floor: ``InferenceSession.run`` in the load generator's own process, no HTTP;
and the fresh-process load timings that cold starts are compared with."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadgen import Call
from measure import Context, log, median, point
from payloads import Workload

ARM = "ort"
CONFIG = "in-process"


def run(ctx: Context) -> None:
    log("[a] onnxruntime in-process")
    for workload in ctx.workloads.values():
        for clients in ctx.settings.clients:
            row = point(ctx, ARM, CONFIG, workload, factory=local_calls(workload), clients=clients)
            # in-process, the "server" is this process: its CPU is the client's CPU
            row["server_cpu_ms_per_req"] = row["client_cpu_ms_per_req"]


def local_calls(workload: Workload) -> Any:
    def factory(client: int) -> Call:
        return lambda: workload.run_local(client)

    return factory


def load_probes(ctx: Context) -> dict[str, Any]:
    """Per model: fresh-process import and load timings (median over reps) and memory."""
    log("[a] onnxruntime load time in fresh processes")
    probes: dict[str, Any] = {}
    for workload in ctx.workloads.values():
        reps = [_probe(ctx.root, workload) for _ in range(ctx.settings.probe_reps)]
        summary: dict[str, Any] = {"reps": reps}
        for key in ("import_s", "load_s", "import_load_s", "spawn_to_first_run_s", "first_run_s"):
            summary[key] = median([r[key] for r in reps])
        summary["pss_mb"] = median([r["pss_mb"] for r in reps])
        summary["rss_mb"] = median([r["rss_mb"] for r in reps])
        probes[workload.name] = summary
        log(
            f"  {workload.name}: load {summary['load_s'] * 1000:.1f} ms, import+load "
            f"{summary['import_load_s'] * 1000:.0f} ms, spawn..first run "
            f"{summary['spawn_to_first_run_s'] * 1000:.0f} ms, PSS {summary['pss_mb']:.0f} MB"
        )
    return probes


def _probe(root: Path, workload: Workload) -> dict[str, Any]:
    model = workload.model
    shape = ",".join(str(d) for d in model.input_shape)
    command = [sys.executable, str(root / "benchmarks" / "ort_load.py")]
    command += [str(model.path), model.input_name, shape]
    began = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        if process.stdout is None:
            raise RuntimeError("no stdout from ort_load.py")
        timings = json.loads(process.stdout.readline())
        # spawn + interpreter + import + load + first inference, seen from outside
        timings["spawn_to_first_run_s"] = time.perf_counter() - began
        timings |= json.loads(process.stdout.readline())
    if process.returncode != 0:
        raise RuntimeError(f"ort_load.py exited with {process.returncode}")
    result: dict[str, Any] = timings
    return result
