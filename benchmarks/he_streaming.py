"""What the gateway holds while large HE requests queue: the OIP infer route vs the HE route.

Usage: .venv/bin/python benchmarks/he_streaming.py [--clients 16] [--mib 6]
Writes benchmarks/results/he_streaming.json.

A fresh ``sealfn serve`` per path, one instance of an HE function, ``--clients`` concurrent
requests of ``--mib`` MiB each (a valid HE head, then bytes the instance refuses once it tries
the keys: the gateway's side of a request is the same for a real ciphertext). Measured: the
gateway's peak RSS growth (``VmHWM`` before and after, from /proc) and the wall time. The HE
route (arm "streamed") spools past ``he_spool_memory_bytes`` (2 MiB) to unlinked temp files. The
OIP route (arm "buffered") read each body whole into the gateway's heap until the gateway sent HE
functions down the same spooling path; the arm is kept to show that both routes now hold the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from sealfn.he.protocol import CONTENT_TYPE, INFER_PATH, KEYS_PATH, HeMessage, Kind
from servers import SealfnServer

RESULTS = Path(__file__).parent / "results"


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def _network(folder: Path) -> Path:
    from sealfn.he.networks import Net, NetConfig

    path = folder / "net.he"
    path.write_bytes(Net(NetConfig()).graph().to_bytes())  # untrained: only its shape matters
    return path


def run(path: str, clients: int, size: int, folder: Path) -> dict[str, Any]:
    server = SealfnServer(sys.executable, folder / f"state-{path}", folder / f"{path}.log")
    try:
        server.wait_ready()
        server.deploy("he", _network(folder), he=True, max_instances=1)
        key_id = httpx.put(server.url + KEYS_PATH, content=b"k" * 1024).json()["key_id"]
        body = HeMessage(Kind.REQUEST, key_id, b"\x01" * size).to_bytes()
        url = server.url + (
            INFER_PATH.format(name="he") if path == "streamed" else "/v2/models/he/infer"
        )
        headers = {"content-type": CONTENT_TYPE}
        httpx.post(url, content=body[:1000], headers=headers, timeout=300)  # instance started
        before = _hwm_kib(server.pid)
        started = time.perf_counter()

        def send(_: int) -> str:
            reply = httpx.post(url, content=body, headers=headers, timeout=300)
            return f"{reply.status_code} {reply.json().get('error', '')}"

        with ThreadPoolExecutor(clients) as pool:
            replies = list(pool.map(send, range(clients)))
        wall = time.perf_counter() - started
        return {
            "path": path,
            "clients": clients,
            "body_mib": size / 2**20,
            "gateway_peak_growth_mib": (_hwm_kib(server.pid) - before) / 1024,
            "wall_s": wall,
            "replies": sorted(set(replies)),  # the instance's refusal of the keys: expected
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--mib", type=float, default=6.0)
    args = parser.parse_args()
    os.environ.setdefault("SEALFN_MAX_BODY_BYTES", str(64 << 20))
    size = int(args.mib * 2**20)
    with tempfile.TemporaryDirectory() as folder:
        results = [run(p, args.clients, size, Path(folder)) for p in ("buffered", "streamed")]
    RESULTS.mkdir(exist_ok=True)
    report = {"command": " ".join(sys.argv), "results": results}
    (RESULTS / "he_streaming.json").write_text(json.dumps(report, indent=2) + "\n")
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
