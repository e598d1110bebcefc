"""The HTTP floor: a bare Starlette/uvicorn app (uvloop + httptools, as `sealfn serve` runs)
answering a POST of a small and of a ResNet-18-sized body, with the load generator's client.

Usage: .venv/bin/python benchmarks/http_floor.py [--rounds 8]  → benchmarks/results/http_floor.json
What sealfn's gateway costs beyond this floor is its own; below it, no gateway on this stack goes.

Two servers, measured in alternating blocks: glibc's allocator as it comes, and one told to keep
freed memory (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``). A process this small gives
the 600 KB body's buffers back to the kernel after every request and page-faults them in again
(~260 minor faults a request), which costs more than the HTTP itself; the gateway, whose heap
holds more, does not (under one fault a request: see ``minor_faults_per_request``). The second
server is the floor to compare the gateway with.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen import HttpConnection, http_request
from servers import free_port

RESULTS = Path(__file__).parent / "results"
HOST = "127.0.0.1"
SIZES = (64, 3 * 224 * 224 * 4 + 200)  # a tiny body, and a ResNet-18 input with its header
PER_BLOCK = 300
APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def echo(request):
    await request.body()
    return Response(b"x" * 4096)  # about a ResNet-18 reply (1000 FP32 logits)

app = Starlette(routes=[Route("/p", echo, methods=["POST"])])
"""
ALLOCATORS: dict[str, dict[str, str]] = {
    "glibc default": {},
    "glibc keeping freed memory": {
        "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
        "MALLOC_MMAP_THRESHOLD_": str(16 << 20),
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="alternating blocks per server")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sealfn-http-floor-"))
    (folder / "floorapp.py").write_text(APP)
    servers = {label: _start(folder, free_port(), env) for label, env in ALLOCATORS.items()}
    try:
        time.sleep(2.0)
        report = {str(size): _measure(servers, os.urandom(size), args.rounds) for size in SIZES}
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()
    for size, rows in report.items():
        for label, row in rows.items():
            print(
                f"{size:>8} B body, {label:27}: p50 {row['p50_ms']:.3f} ms, server CPU "
                f"{row['server_cpu_ms_per_request']:.3f} ms, "
                f"{row['minor_faults_per_request']:.0f} minor faults a request"
            )
    meta = {"command": " ".join(sys.argv), "loadavg_end": os.getloadavg(), "per_block": PER_BLOCK}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http_floor.json").write_text(json.dumps(meta | report, indent=2) + "\n")


def _start(folder: Path, port: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    command = [sys.executable, "-m", "uvicorn", "floorapp:app", "--port", str(port)]
    command += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
    command += ["--no-access-log"]
    return subprocess.Popen(command, cwd=folder, env={**os.environ, **env}), port


def _measure(
    servers: dict[str, tuple[subprocess.Popen[bytes], int]], body: bytes, rounds: int
) -> dict[str, Any]:
    """Alternating blocks per server, the order reversed every round: p50, CPU and faults."""
    calls = {}
    for label, (_, port) in servers.items():
        connection = HttpConnection(HOST, port)
        calls[label] = (connection, http_request(HOST, port, "/p", body, {}))
        for _ in range(50):
            connection.exchange(calls[label][1])
    times: dict[str, list[float]] = {label: [] for label in servers}
    cpu = dict.fromkeys(servers, 0.0)
    faults = dict.fromkeys(servers, 0)
    labels = list(servers)
    for round_ in range(rounds):
        for label in labels if round_ % 2 else labels[::-1]:
            connection, request = calls[label]
            before = _usage(servers[label][0].pid)
            for _ in range(PER_BLOCK):
                started = time.perf_counter()
                connection.exchange(request)
                times[label].append(time.perf_counter() - started)
            after = _usage(servers[label][0].pid)
            cpu[label] += after[0] - before[0]
            faults[label] += after[1] - before[1]
    count = rounds * PER_BLOCK
    return {
        label: {
            "p50_ms": statistics.median(times[label]) * 1e3,
            "server_cpu_ms_per_request": cpu[label] / count * 1e3,
            "minor_faults_per_request": faults[label] / count,
        }
        for label in servers
    }


def _usage(pid: int) -> tuple[float, int]:
    """A process's CPU seconds (user + system) and minor page faults, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, int(fields[7])


if __name__ == "__main__":
    main()
