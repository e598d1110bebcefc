"""Soak: plain and sealed requests mixed, at the saturation point, for a bounded time (issue 8).

Usage: ``.venv/bin/python benchmarks/soak.py [--minutes 10] [--sample-s 10]`` (``make soak``).
First a short ramp of closed-loop clients (1, 2, 4, 8, 16) finds the saturation point: the fewest
clients that reach 95% of the best throughput. Then that many clients run for ``--minutes``, half
of them on a plain MLP and half on the same model sealed (simulated TEE, KeyService, HPKE), every
reply checked. Every ``--sample-s`` seconds: throughput, p50/p99 and the PSS of every process
(gateway, each instance, KeyService). Verdicts: 0 unexpected errors; p99 stable (the last third's
p99 over the first third's); memory flat (a least-squares slope of each process's PSS over the
run after the first sample, reported in MiB per 10 minutes). JSON + PNG in benchmarks/results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from sealed import Caller, free_port, wait
from sealfn.attestation import Policy
from sealfn.client import Client
from sealfn.instance.sealed import enclave_measurement
from sealfn.keyservice.client import KeyServiceClient
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.sealed_model import generate_model_key, seal_model
from sealfn.tee.simulated import SimulatedPlatform
from sealfn.workloads.models import ExampleModel, build_examples

HERE = Path(__file__).parent
RESULTS = HERE / "results"
RAMP = (1, 2, 4, 8, 16)
_MIB = 1 << 20


class Stack:
    """A KeyService and a `sealfn serve` (simulated TEE) on loopback, with plain + sealed MLP."""

    def __init__(self, work: Path, model: ExampleModel) -> None:
        plat = work / "platform"
        root = SimulatedPlatform.load_or_create(plat).root_public_key()
        self.ks_port, self.port = free_port(), free_port()
        token = secrets.token_urlsafe(32)
        env = {**os.environ, "SEALFN_TEE": "simulated", "SEALFN_TEE_PLATFORM_DIR": str(plat)}
        self.keyservice = subprocess.Popen(
            [sys.executable, "-m", "sealfn.cli", "keyservice", f"--port={self.ks_port}",
             f"--db={work / 'ks.db'}", "--accept-simulated", f"--platform-dir={plat}",
             "--log-level=warning"])  # fmt: skip
        self.server = subprocess.Popen(
            [sys.executable, "-m", "sealfn.cli", "serve", f"--port={self.port}",
             f"--state-dir={work / 'state'}"],
            env={**env, "SEALFN_ADMIN_TOKEN": token})  # fmt: skip
        ks_url = f"http://127.0.0.1:{self.ks_port}"
        wait(f"{ks_url}/health")
        wait(f"http://127.0.0.1:{self.port}/v2/health/ready")
        policy = Policy(None, accept_simulated=True, trusted_simulated_roots=frozenset({root}))
        self.user = Principal.generate("soak-user", PrincipalKind.USER)
        owner = Principal.generate("soak-owner", PrincipalKind.OWNER)
        settings = {"keep_alive_s": 3600, "max_instances": 2}
        with KeyServiceClient(ks_url) as ks, Client(self.url, admin_token=token) as client:
            ks.register(owner)
            ks.register(self.user)
            model_key = generate_model_key()
            ks.upload_model_key(owner, "mlp-sealed", model_key, ks.attest(policy))
            ks.grant(owner, "mlp-sealed", self.user.name, [enclave_measurement()])
            blob = work / "mlp-sealed.bin"
            blob.write_bytes(seal_model(model.path.read_bytes(), model_key, "mlp-sealed"))
            client.deploy("mlp", model.path, **settings)
            client.deploy("mlp-sealed", blob, sealed=True, keyservice=ks_url, **settings)
            self.key = ks.deployment_key("mlp-sealed", policy=policy)
        self.model = model

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def caller(self, index: int) -> Caller:
        """Even clients plain, odd clients sealed: the mix is half and half."""
        if index % 2 == 0:
            return Caller(self.port, "mlp", self.model, None)
        return Caller(self.port, "mlp-sealed", self.model, (self.key, self.user))

    def processes(self) -> dict[str, psutil.Process]:
        """Every process by role: the gateway, each instance (by pid), the KeyService."""
        roles: dict[str, psutil.Process] = {}
        for pid, role in ((self.server.pid, "gateway"), (self.keyservice.pid, "keyservice")):
            with contextlib.suppress(psutil.Error):  # a process that just exited
                proc = psutil.Process(pid)
                roles[role] = proc
                for child in proc.children(recursive=True):
                    roles[f"instance-{child.pid}"] = child
        return roles

    def close(self) -> None:
        for proc in (self.server, self.keyservice):  # enclaves first: their leases need the KS
            proc.send_signal(signal.SIGINT)
            proc.wait(30)


class Load:
    """Closed-loop clients; each records (finished_at, latency_s, ok, error) per request."""

    def __init__(self, stack: Stack, clients: int) -> None:
        self.callers = [stack.caller(i) for i in range(clients)]
        self.records: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def start(self) -> None:
        for caller in self.callers:
            caller()  # warm: cold starts are not part of the soak
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, i: int) -> None:
        call, out = self.callers[i], self.records[i]
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                call()
            except Exception as exc:  # every failure is counted and kept, never swallowed
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            done = time.perf_counter()
            out.append((done, done - started))

    def window(self, since: float, until: float) -> np.ndarray:
        lat = [d for rec in self.records for (t, d) in rec if since <= t < until]
        return np.asarray(lat)


def ramp(stack: Stack, seconds: float) -> dict[int, float]:
    throughput = {}
    for clients in RAMP:
        load = Load(stack, clients)
        load.start()
        began = time.perf_counter()
        time.sleep(seconds)
        load.stop()
        done = load.window(began, began + seconds)
        throughput[clients] = len(done) / seconds
        print(f"  ramp {clients:2d} clients: {throughput[clients]:7.0f} req/s", flush=True)
    return throughput


def soak(stack: Stack, clients: int, minutes: float, sample_s: float) -> dict[str, Any]:
    load = Load(stack, clients)
    load.start()
    began = time.perf_counter()
    samples: list[dict[str, Any]] = []
    end = began + minutes * 60
    while (now := time.perf_counter()) < end:
        time.sleep(min(sample_s, end - now))
        at = time.perf_counter()
        lat = load.window(at - sample_s, at)
        memory = {}
        for role, proc in stack.processes().items():
            with contextlib.suppress(psutil.Error):  # a process that just exited
                memory[role] = proc.memory_full_info().pss / _MIB
        samples.append({
            "t_s": at - began,
            "req_per_s": len(lat) / sample_s,
            "p50_ms": float(np.percentile(lat, 50) * 1e3) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99) * 1e3) if len(lat) else None,
            "errors_so_far": len(load.errors),
            "pss_mib": memory,
        })  # fmt: skip
        s = samples[-1]
        total_pss = sum(memory.values())
        print(f"  {s['t_s']:6.0f} s  {s['req_per_s']:7.0f} req/s  p99 {s['p99_ms']:.2f} ms  "
              f"PSS {total_pss:.0f} MiB  errors {len(load.errors)}", flush=True)  # fmt: skip
    load.stop()
    total = time.perf_counter() - began
    thirds = [load.window(began + k * total / 3, began + (k + 1) * total / 3) for k in range(3)]
    return {
        "clients": clients,
        "seconds": total,
        "requests": sum(len(r) for r in load.records),
        "errors": len(load.errors),
        "error_examples": sorted(set(load.errors))[:10],
        "p99_ms_by_third": [float(np.percentile(t, 99) * 1e3) for t in thirds],
        "samples": samples,
    }


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    first, _, last = result["p99_ms_by_third"]
    slopes = {}
    samples = result["samples"][1:]  # the first sample includes warm-up growth
    for role in sorted({r for s in samples for r in s["pss_mib"]}):
        points = [(s["t_s"], s["pss_mib"][role]) for s in samples if role in s["pss_mib"]]
        if len(points) >= 3:
            t, m = np.asarray(points).T
            slopes[role] = float(np.polyfit(t, m, 1)[0] * 600)  # MiB per 10 minutes
    return {
        "unexpected_errors": result["errors"],
        "p99_last_over_first_third": last / first,
        "pss_slope_mib_per_10min": slopes,
        "max_pss_slope_mib_per_10min": max(slopes.values(), default=0.0),
    }


def plot(report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["soak"]["samples"]
    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    axes[0].plot(t, [s["req_per_s"] for s in samples])
    axes[0].set_ylabel("req/s")
    axes[1].plot(t, [s["p50_ms"] for s in samples], label="p50")
    axes[1].plot(t, [s["p99_ms"] for s in samples], label="p99")
    axes[1].set_ylabel("latency (ms)")
    axes[1].legend()
    for role in sorted({r for s in samples for r in s["pss_mib"]}):
        axes[2].plot(t, [s["pss_mib"].get(role) for s in samples], label=role)
    axes[2].set_ylabel("PSS (MiB)")
    axes[2].set_xlabel("minutes")
    axes[2].legend(fontsize=7)
    v = report["verdicts"]
    fig.suptitle(
        f"soak: {report['soak']['clients']} clients, plain+sealed MLP; "
        f"{v['unexpected_errors']} errors, "
        f"p99 last/first third {v['p99_last_over_first_third']:.2f}"
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "soak.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--ramp-s", type=float, default=5.0)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    model = build_examples(HERE / ".models")["mlp"]
    stack = Stack(Path(tempfile.mkdtemp(prefix="sealfn-soak-")), model)
    try:
        print("finding the saturation point", flush=True)
        throughput = ramp(stack, args.ramp_s)
        best = max(throughput.values())
        clients = min(c for c, r in throughput.items() if r >= 0.95 * best)
        clients += clients % 2  # an even count keeps the plain/sealed mix half and half
        print(f"soaking at {clients} clients for {args.minutes:g} min", flush=True)
        result = soak(stack, clients, args.minutes, args.sample_s)
    finally:
        stack.close()
    report = {
        "ramp_req_per_s": throughput,
        "soak": result,
        "verdicts": verdicts(result),
        "env": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tee": "simulated",
            "note": "load generator, gateway, instances and KeyService share this machine",
        },
    }
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2))
    plot(report)
    print(json.dumps(report["verdicts"], indent=2))


if __name__ == "__main__":
    main()
