"""Sealed vs plain inference, side by side in one run (simulated TEE; same models, same client).

Usage: .venv/bin/python benchmarks/sealed.py [--quick]
Writes benchmarks/results/sealed.json and sealed.png. Figures (issue 3): warm p50/p99 ratio
sealed/plain at 1 client, throughput ratio at 8 clients, the cold-start breakdown (spawn,
attestation + key release, model fetch + decrypt, session load), and the crypto cost per request
split into client and enclave parts.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealfn import admintoken, oip
from sealfn.attestation import Policy
from sealfn.client import Client
from sealfn.instance.sealed import enclave_measurement
from sealfn.keyservice.client import KeyServiceClient
from sealfn.keyservice.keys import DeploymentKey
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.sealed_model import generate_model_key, seal_model
from sealfn.sealed_request import (
    CONTENT_TYPE,
    open_inference_reply,
    seal_in_session,
    seal_inference,
    start_session,
)
from sealfn.tee.simulated import SimulatedPlatform
from sealfn.workloads.models import ExampleModel, build_examples

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(url: str) -> None:
    for _ in range(400):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class Caller:
    """One client with its own keep-alive connection; plain or sealed, same code path.

    Sealed callers either seal every request with its own HPKE exchange and signature, or (with
    ``session``) start one sealed session, as ``sealfn.Client`` does by default, and seal each
    request with its AES-GCM key."""

    def __init__(
        self, port: int, name: str, model: ExampleModel, sealed: Any | None, session: bool = False
    ) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.name, self.model, self.sealed = name, model, sealed
        self.session = None
        if sealed is not None and session:
            key, user = sealed
            self.session = start_session(
                public_key=key.public_key, model_id=name, signer=user, suite=key.suite
            )
        x = model.sample(1, seed=7)
        self.body, headers = oip.encode_request([oip.Tensor(model.input_name, "FP32", x.shape, x)])
        self.length = int(headers["Inference-Header-Content-Length"])
        self.headers = headers

    def __call__(self) -> None:
        if self.sealed is None:
            self.conn.request("POST", f"/v2/models/{self.name}/infer", self.body, self.headers)
            reply = self.conn.getresponse()
            content = reply.read()
            if reply.status != 200:
                raise RuntimeError(content[:200])
            oip.decode_response(content, int(reply.headers["Inference-Header-Content-Length"]))
            return
        key, user = self.sealed
        if self.session is not None:
            sealed, reply_key = seal_in_session(self.session, self.body, header_length=self.length)
        else:
            sealed, reply_key = seal_inference(
                self.body, header_length=self.length, public_key=key.public_key,
                model_id=self.name, signer=user, suite=key.suite,
            )  # fmt: skip
        self.conn.request("POST", f"/v2/models/{self.name}/infer", sealed,
                          {"content-type": CONTENT_TYPE})  # fmt: skip
        reply = self.conn.getresponse()
        content = reply.read()
        opened = open_inference_reply(reply_key, content)
        if opened.status != 200:
            raise RuntimeError(opened.body[:200])
        oip.decode_response(opened.body, opened.header_length)


def batch_sizes(port: int) -> dict[str, float]:
    """Mean batch size per function so far, from the gateway's Prometheus metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    sums: dict[str, dict[str, float]] = {}
    for kind, name, value in re.findall(
        r'sealfn_batch_size_(sum|count)\{function="([^"]+)"\} (\S+)', text
    ):
        sums.setdefault(name, {})[kind] = float(value)
    return {n: v["sum"] / v["count"] for n, v in sums.items() if v.get("count")}


def latencies(call: Callable[[], None], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def throughput(make: Callable[[], Caller], clients: int, seconds: float) -> float:
    callers = [make() for _ in range(clients)]
    for c in callers:
        c()
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        while time.perf_counter() < stop:
            callers[i]()
            done[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_small, n_big, rounds, tput_s = (200, 20, 3, 3.0) if args.quick else (1000, 60, 5, 8.0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    models = build_examples(HERE / ".models")
    work = Path(tempfile.mkdtemp(prefix="sealfn-sealed-bench-"))
    plat = work / "platform"
    root = SimulatedPlatform.load_or_create(plat).root_public_key()
    ks_port, port = free_port(), free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "sealfn.cli", "keyservice", f"--port={ks_port}",
                          f"--db={work / 'ks.db'}", "--accept-simulated",
                          f"--platform-dir={plat}", "--log-level=warning"]),
        subprocess.Popen([sys.executable, "-m", "sealfn.cli", "serve", f"--port={port}",
                          f"--state-dir={work / 'state'}"],
                         env={**os.environ, "SEALFN_TEE": "simulated",
                              "SEALFN_TEE_PLATFORM_DIR": str(plat)}),
    ]  # fmt: skip
    ks_url = f"http://127.0.0.1:{ks_port}"
    try:
        wait(f"{ks_url}/health")
        wait(f"http://127.0.0.1:{port}/v2/health/ready")
        report = run(models, ks_url, port, root, work, n_small, n_big, rounds, tput_s)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(30)
    report["env"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "tee": "simulated",
        "note": "client and server share this 2-core machine; compare ratios",
    }
    (RESULTS / "sealed.json").write_text(json.dumps(report, indent=2))
    plot(report)
    print(json.dumps(report["figures"], indent=2))


def run(  # noqa: PLR0917 - one benchmark run's settings, passed once from main
    models: dict[str, ExampleModel], ks_url: str, port: int, root: bytes, work: Path,
    n_small: int, n_big: int, rounds: int, tput_s: float,
) -> dict[str, Any]:  # fmt: skip
    policy = Policy(None, accept_simulated=True, trusted_simulated_roots=frozenset({root}))
    owner = Principal.generate("owner", PrincipalKind.OWNER)
    user = Principal.generate("user", PrincipalKind.USER)
    token = admintoken.read(work / "state" / admintoken.TOKEN_FILE)  # made by `sealfn serve`
    client = Client(f"http://127.0.0.1:{port}", admin_token=token)
    keys: dict[str, DeploymentKey] = {}
    cold: dict[str, Any] = {}
    with KeyServiceClient(ks_url) as ks:
        ks.register(owner)
        ks.register(user)
        service_key = ks.attest(policy)
        for model in models.values():
            sealed_name = f"{model.name}-sealed"
            model_key = generate_model_key()
            ks.upload_model_key(owner, sealed_name, model_key, service_key)
            ks.grant(owner, sealed_name, user.name, [enclave_measurement()])
            blob = work / f"{sealed_name}.bin"
            blob.write_bytes(seal_model(model.path.read_bytes(), model_key, sealed_name))
            settings = {"keep_alive_s": 600, "max_instances": 1}
            client.deploy(model.name, model.path, **settings)
            client.deploy(sealed_name, blob, sealed=True, keyservice=ks_url, **settings)
            keys[sealed_name] = ks.deployment_key(sealed_name, policy=policy)
            for name, sealed in ((model.name, None), (sealed_name, (keys[sealed_name], user))):
                started = time.perf_counter()
                Caller(port, name, model, sealed)()
                first = time.perf_counter() - started
                status = next(f for f in client.status()["functions"] if f["name"] == name)
                cold[name] = {"first_reply_s": first, **status["last_cold_start"]}
        before = ks.stats()
        points: dict[str, Any] = {}
        for model in models.values():
            sealed_name = f"{model.name}-sealed"
            creds = (keys[sealed_name], user)
            callers = {
                "plain": Caller(port, model.name, model, None),
                "sealed": Caller(port, sealed_name, model, creds),
                "session": Caller(port, sealed_name, model, creds, session=True),
            }
            n = n_small if model.name == "mlp" else n_big
            series: dict[str, list[float]] = {kind: [] for kind in callers}
            for _ in range(rounds):  # interleaved rounds: noise hits every arm alike
                for kind, caller in callers.items():
                    series[kind] += latencies(caller, n // rounds)
            makers = {
                "plain": lambda m=model: Caller(port, m.name, m, None),
                "sealed": lambda m=model, s=sealed_name, c=creds: Caller(port, s, m, c),
                "session": lambda m=model, s=sealed_name, c=creds: Caller(
                    port, s, m, c, session=True
                ),
            }
            tput = {kind: throughput(make, 8, tput_s) for kind, make in makers.items()}
            batch = batch_sizes(port)
            points[model.name] = {
                kind: {
                    "p50_ms": float(np.percentile(v, 50) * 1e3),
                    "p99_ms": float(np.percentile(v, 99) * 1e3),
                    "throughput_8_clients": tput[kind],
                }
                for kind, v in series.items()
            }
            for kind, name in (("plain", model.name), ("sealed", sealed_name)):
                points[model.name][kind]["mean_batch_size"] = batch.get(name)
            points[model.name]["session"]["mean_batch_size"] = None  # shares sealed's function
        after = ks.stats()
    client.close()
    crypto = crypto_costs(models["mlp"], keys["mlp-sealed"], user)
    figures = {}
    for name, point in points.items():
        plain = point["plain"]
        figures[name] = {
            f"{kind}_{figure}": value
            for kind in ("sealed", "session")
            for figure, value in (
                ("p50_ratio_over_plain", point[kind]["p50_ms"] / plain["p50_ms"]),
                ("p50_added_ms", point[kind]["p50_ms"] - plain["p50_ms"]),
                ("p99_ratio", point[kind]["p99_ms"] / plain["p99_ms"]),
                ("throughput_ratio", point[kind]["throughput_8_clients"]
                 / plain["throughput_8_clients"]),
            )
        }  # fmt: skip
    figures["attest_plus_key_release_ms"] = {
        n: c["attest_release_s"] * 1e3 for n, c in cold.items() if "attest_release_s" in c
    }
    figures["keyservice_calls_during_warm_load"] = {
        k: after.get(k, 0) - before.get(k, 0) for k in after
    }
    return {"points": points, "cold_start": cold, "crypto_us": crypto, "figures": figures}


def crypto_costs(model: ExampleModel, key: DeploymentKey, user: Principal) -> dict[str, float]:
    """Per-request crypto split: what the client pays and what the enclave pays (µs, median)."""
    from sealfn.envelope import KeyPair, ReplayGuard, generate_keypair
    from sealfn.sealed_request import open_inference

    x = model.sample(1)
    body, headers = oip.encode_request([oip.Tensor(model.input_name, "FP32", x.shape, x)])
    length = int(headers["Inference-Header-Content-Length"])
    pair: KeyPair = generate_keypair(key.suite)
    public = Ed25519PublicKey.from_public_bytes(user.public_key)  # what the enclave verifies with
    guard = ReplayGuard()
    seal, open_, reply, open_reply = [], [], [], []
    for _ in range(2000):
        t = time.perf_counter()
        sealed, reply_key = seal_inference(body, header_length=length, public_key=pair.public_key,
                                           model_id="m", signer=user, suite=pair.suite)  # fmt: skip
        seal.append(time.perf_counter() - t)
        t = time.perf_counter()
        request = open_inference(sealed, pair, model_id="m", user_key=lambda _: public,
                                 replay=guard)  # fmt: skip
        open_.append(time.perf_counter() - t)
        t = time.perf_counter()
        answer = request.seal_reply(200, b"x" * 64)
        reply.append(time.perf_counter() - t)
        t = time.perf_counter()
        open_inference_reply(reply_key, answer)
        open_reply.append(time.perf_counter() - t)
    med = lambda v: float(np.median(v) * 1e6)  # noqa: E731
    return {
        "client_seal_and_sign": med(seal),
        "enclave_open_and_verify": med(open_),
        "enclave_seal_reply": med(reply),
        "client_open_reply": med(open_reply),
    }


def plot(report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    names = list(report["points"])
    labels = {"plain": "plain", "sealed": "sealed, HPKE per request", "session": "sealed session"}
    for i, kind in enumerate(labels):
        axes[0].bar(
            [j + i * 0.27 for j in range(len(names))],
            [report["points"][n][kind]["p50_ms"] for n in names],
            0.27,
            label=labels[kind],
        )
        axes[1].bar([j + i * 0.27 for j in range(len(names))],
                    [report["points"][n][kind]["throughput_8_clients"] for n in names], 0.27,
                    label=labels[kind])  # fmt: skip
    axes[0].set_yscale("log")
    for ax, title in ((axes[0], "warm p50 at 1 client (ms)"), (axes[1], "req/s at 8 clients")):
        ax.set_xticks([j + 0.27 for j in range(len(names))], names)
        ax.set_title(title)
        ax.legend()
    sealed = next(n for n in report["cold_start"] if n.endswith("-sealed"))
    steps = {k: v * 1e3 for k, v in report["cold_start"][sealed].items() if k.endswith("_s")}
    axes[2].barh(list(steps), list(steps.values()))
    axes[2].set_title(f"cold start of {sealed} (ms)")
    fig.tight_layout()
    fig.savefig(RESULTS / "sealed.png", dpi=110)


if __name__ == "__main__":
    main()
