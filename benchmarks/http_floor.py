"""The HTTP floor: a bare Starlette/uvicorn app (uvloop + httptools, as `sealfn serve` runs)
answering a POST of a small and of a ResNet-18-sized body, with the same lean client.

Usage: .venv/bin/python benchmarks/http_floor.py   → benchmarks/results/http_floor.json
What sealfn's gateway costs beyond this floor is its own; below it, no gateway on this stack goes.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def echo(request):
    await request.body()
    return Response(b"x" * 4096)  # about a ResNet-18 reply (1000 FP32 logits)

app = Starlette(routes=[Route("/p", echo, methods=["POST"])])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="sealfn-http-floor-"))
    (folder / "floorapp.py").write_text(APP)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "floorapp:app", "--port", str(port), "--loop", "uvloop",
         "--http", "httptools", "--log-level", "warning", "--no-access-log"],
        cwd=folder,
    )  # fmt: skip
    try:
        time.sleep(2.0)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        report = {}
        for size in (64, 3 * 224 * 224 * 4 + 200):
            body = os.urandom(size)
            for _ in range(50):
                conn.request("POST", "/p", body=body)
                conn.getresponse().read()
            times = []
            for _ in range(1000):
                started = time.perf_counter()
                conn.request("POST", "/p", body=body)
                conn.getresponse().read()
                times.append(time.perf_counter() - started)
            report[str(size)] = {"p50_ms": float(np.median(times) * 1e3)}
            print(f"{size:>8} B body: p50 {report[str(size)]['p50_ms']:.3f} ms")
    finally:
        server.terminate()
        server.wait()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http_floor.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
