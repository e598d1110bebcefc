"""Gateway↔instance IPC cost: round trip of one RUN frame, small and large, arena vs inline.

Usage: .venv/bin/python benchmarks/ipc.py [--n 5000]   → benchmarks/results/ipc.json + ipc.png
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import uvloop
from onnx import TensorProto, helper

from sealfn.ipc.frames import Kind
from sealfn.runtime.executors.base import LaunchSpec
from sealfn.runtime.executors.local import LocalExecutor
from sealfn.runtime.handle import InstanceHandle, check_reply

RESULTS = Path(__file__).parent / "results"


def identity_model(path: Path) -> Path:
    """Identity over [batch, n] float32: the instance does (almost) nothing but move bytes."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


async def measure(elements: int, arena: bool, n: int, model: Path) -> dict[str, Any]:
    inline_limit = 64 << 10 if arena else 1 << 40
    spec = LaunchSpec("bench", slots=1, slot_bytes=8 << 20, threads=1, inline_bytes=inline_limit)
    worker = await LocalExecutor().launch(spec)
    handle = InstanceHandle("bench", 1, 128, time.monotonic())
    handle.worker = worker
    check_reply(await worker.channel.inbox.get(), Kind.HELLO)
    await handle.load("m", str(model))
    x = np.random.default_rng(0).standard_normal((1, elements)).astype(np.float32)
    for _ in range(50):
        await handle.run("m", [{"input": x}], inline_limit)
    times, execs = [], []
    for _ in range(n):
        started = time.perf_counter()
        outputs, exec_s = await handle.run("m", [{"input": x}], inline_limit)
        times.append(time.perf_counter() - started)
        execs.append(exec_s)
    if not np.array_equal(outputs[0].outputs["output"], x):
        raise RuntimeError("identity round trip changed the tensor")
    worker.channel.send(Kind.STOP, {})
    await worker.wait()
    worker.close()
    rtt = np.array(times) * 1e6
    inside = np.array(execs) * 1e6
    return {
        "bytes": x.nbytes,
        "path": "arena" if arena and x.nbytes > inline_limit else "inline",
        "round_trip_us_p50": float(np.percentile(rtt, 50)),
        "round_trip_us_p99": float(np.percentile(rtt, 99)),
        "instance_exec_us_p50": float(np.percentile(inside, 50)),
        "ipc_overhead_us_p50": float(np.percentile(rtt - inside, 50)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    model = identity_model(RESULTS / "identity.onnx.tmp")
    cases = [(16, True), (16 * 1024, True), (3 * 224 * 224, True), (3 * 224 * 224, False)]
    rows = []
    for elements, arena in cases:
        n = args.n if elements < 100_000 else max(200, args.n // 10)
        row = uvloop.run(measure(elements, arena, n, model))  # the event loop `serve` uses
        rows.append(row)
        print(
            f"{row['bytes']:>9} B {row['path']:>6}: round trip p50 "
            f"{row['round_trip_us_p50']:7.1f} µs (p99 {row['round_trip_us_p99']:7.1f}), "
            "IPC overhead p50 "
            f"{row['ipc_overhead_us_p50']:7.1f} µs"
        )
    model.unlink()
    report = {"machine": platform.processor() or platform.machine(), "cases": rows}
    (RESULTS / "ipc.json").write_text(json.dumps(report, indent=2))
    plot(rows)


def plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['bytes'] / 1024:.0f} KiB\n{r['path']}" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(labels, [r["ipc_overhead_us_p50"] for r in rows], color="tab:blue")
    ax.axhline(100, color="tab:red", linestyle="--", label="target: 100 µs (small request)")
    ax.set_ylabel("IPC overhead per request, p50 (µs)")
    ax.set_title("gateway ↔ instance round trip minus instance execution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "ipc.png", dpi=120)


if __name__ == "__main__":
    main()
