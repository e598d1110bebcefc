"""`make demo`: the runtime end to end on the embedded default, narrated."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sealfn.client import Client
from sealfn.report import status_table, table
from sealfn.workloads.models import ExampleModel, build_examples

KEEP_ALIVE_S = 4.0
_STEP_NAMES = {
    "tee_s": "TEE init + measure",
    "attest_release_s": "attest + key release",
    "fetch_s": "fetch sealed model",
    "decrypt_s": "decrypt model",
    "load_s": "onnxruntime load",
}


def run_demo(workdir: Path, requests: int = 200) -> int:
    """Build models, start `sealfn serve`, deploy, exercise every path, print a report, stop."""
    print("sealfn demo: serverless inference on this machine (embedded default: local processes)")
    models = _step(
        "building example models (PyTorch → ONNX, seeded, offline)",
        build_examples,
        workdir / "models",
    )
    for model in models.values():
        print(
            f"    {model.name}: {model.path.stat().st_size / 1e6:.1f} MB, input {model.input_shape}"
        )
    state, platform = workdir / "state", workdir / "platform"
    for folder in (state, workdir / "keyservice"):
        shutil.rmtree(folder, ignore_errors=True)
    port, ks_port = _free_port(), _free_port()
    keyservice = _start_keyservice(ks_port, workdir / "keyservice", platform)
    token = secrets.token_urlsafe(32)  # the admin API's bearer token, handed to the server
    server = _start_server(port, state, platform, token)
    try:
        with Client(f"http://127.0.0.1:{port}", admin_token=token) as client:
            _wait_live(client)
            _exercise(client, models, requests)
            _sealed(client, models["mlp"], f"http://127.0.0.1:{ks_port}", platform, requests)
        _batch_job(models["mlp"], workdir / "batch")
        return 0
    finally:
        for process in (server, keyservice):
            process.send_signal(signal.SIGINT)
        code = server.wait(timeout=30)
        keyservice.wait(timeout=30)
        print(f"\nsealfn serve stopped cleanly (exit status {code}); all instances gone")


def _exercise(client: Client, models: dict[str, ExampleModel], requests: int) -> int:
    mlp, cnn = models["mlp"], models["resnet18"]
    for model, batch in ((mlp, 8), (cnn, 8)):
        client.deploy(
            model.name,
            model.path,
            keep_alive_s=KEEP_ALIVE_S,
            max_batch=batch,
            max_instances=2,
            memory_mb=256 if model is mlp else 1024,
        )
    print(f"\n[1] deployed {mlp.name} and {cnn.name} — both at zero instances:")
    print(status_table(client.status()["functions"]))

    rows: list[list[Any]] = []
    for model in (mlp, cnn):
        x = model.sample(1, seed=1)
        started = time.perf_counter()
        client.infer(model.name, {model.input_name: x})
        cold = time.perf_counter() - started
        rows.append([model.name, cold * 1000])
    print("\n[2] cold start: first request scales each function from zero (spawn + load + run)")
    print(table(("function", "first reply ms"), rows))

    print(f"\n[3] warm path: {requests} sequential requests per function")
    warm = {m.name: _sequential(client, m, requests) for m in (mlp, cnn)}
    print(
        table(
            ("function", "p50 ms", "p99 ms"),
            [
                [n, np.percentile(v, 50) * 1000, np.percentile(v, 99) * 1000]
                for n, v in warm.items()
            ],
        )
    )

    print("\n[4] batching under concurrency: 8 clients at once on resnet18")
    before = _batches(client, cnn.name)
    elapsed, done = _burst(client, cnn, clients=8, total=requests)
    after = _batches(client, cnn.name)
    batches = after[1] - before[1]
    mean_batch = (after[0] - before[0]) / batches if batches else 0.0
    print(
        f"    {done} requests in {elapsed:.2f} s = {done / elapsed:.0f} req/s; "
        f"{batches:.0f} batches, mean batch size {mean_batch:.2f}"
    )
    print(status_table(client.status()["functions"]))

    print(f"\n[5] scale to zero: no traffic for the keep-alive ({KEEP_ALIVE_S:g} s)")
    _wait_for_zero(client)
    print(status_table(client.status()["functions"]))
    return 0


def _sealed(client: Client, mlp: ExampleModel, url: str, platform: Path, requests: int) -> None:
    """Owner seals the MLP, the KeyService holds its key, a user calls it through an enclave."""
    from sealfn.attestation import Policy
    from sealfn.instance.sealed import enclave_measurement
    from sealfn.keyservice.client import KeyServiceClient
    from sealfn.keyservice.principal import Principal, PrincipalKind
    from sealfn.sealed_model import generate_model_key, seal_model
    from sealfn.tee.simulated import SimulatedPlatform

    print("\n[6] sealed inference (SIMULATED TEE: same protocol, no hardware isolation)")
    _wait_url(f"{url}/health")
    root = SimulatedPlatform.load_or_create(platform).root_public_key()
    policy = Policy(None, accept_simulated=True, trusted_simulated_roots=frozenset({root}))
    owner = Principal.generate("acme", PrincipalKind.OWNER)
    user = Principal.generate("alice", PrincipalKind.USER)
    name = "mlp-sealed"
    with KeyServiceClient(url) as keyservice:
        for principal in (owner, user):
            keyservice.register(principal)
        model_key = generate_model_key()
        keyservice.upload_model_key(owner, name, model_key, keyservice.attest(policy))
        keyservice.grant(owner, name, user.name, [enclave_measurement()])
        sealed = mlp.path.with_name(f"{name}.sealed")
        sealed.write_bytes(seal_model(mlp.path.read_bytes(), model_key, name))
        client.deploy(name, sealed, sealed=True, keyservice=url, keep_alive_s=60)
        key = keyservice.deployment_key(name, policy=policy)
        print(
            f"    owner sealed {mlp.name} → {name}; KeyService attested; alice granted on "
            f"enclave {enclave_measurement().hex()[:16]}…"
        )
        x = mlp.sample(1, seed=4)
        started = time.perf_counter()
        out = client.infer_sealed(name, {mlp.input_name: x}, key=key, signer=user)
        cold = time.perf_counter() - started
        plain = client.infer(mlp.name, {mlp.input_name: x})
        same = bool(np.allclose(out["output"], plain["output"]))
        print(f"    first sealed reply in {cold * 1000:.0f} ms; equals the plain model: {same}")
        breakdown = next(f for f in client.status()["functions"] if f["name"] == name)
        steps = dict(breakdown["last_cold_start"])
        total = steps.pop("spawn_to_ready_s")
        rows = [[_STEP_NAMES.get(step, step), seconds * 1000] for step, seconds in steps.items()]
        rows.append(["spawn → ready (total, incl. process start)", total * 1000])
        print(table(("cold start step", "ms"), rows))
        timings: dict[str, list[float]] = {"plain": [], "sealed": []}
        for _ in tqdm(range(requests), desc="    sealed vs plain", leave=False):
            for kind in ("plain", "sealed"):
                started = time.perf_counter()
                if kind == "sealed":
                    client.infer_sealed(name, {mlp.input_name: x}, key=key, signer=user)
                else:
                    client.infer(mlp.name, {mlp.input_name: x})
                timings[kind].append(time.perf_counter() - started)
        stats = keyservice.stats()
    print(
        table(
            ("warm path", "p50 ms", "p99 ms"),
            [
                [k, np.percentile(v, 50) * 1000, np.percentile(v, 99) * 1000]
                for k, v in timings.items()
            ],
        )
    )
    print(f"    KeyService calls so far: {stats} (none per warm request; renewals are timed)")


def _batch_job(mlp: ExampleModel, folder: Path) -> None:
    """A dataset fanned out over instances, results gathered by collectives, one killed."""
    from sealfn.batch.fleet import LocalFleet
    from sealfn.batch.job import JobConfig, run_job
    from sealfn.batch.messages import Event, EventKind, WorkerSpec

    records = 50_000
    print(f"\n[7] batch job: {records:,} records over 2 instances; one is killed mid-job")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = folder / "records.npy"
    np.save(data, mlp.sample(records, seed=11))
    fleet = LocalFleet(WorkerSpec(mlp.path, data, folder / "checkpoints", batch_size=256))
    killed: list[str] = []

    def kill_one(event: Event) -> None:
        if event.kind is EventKind.PARTITION and not killed:
            killed.append(event.instance)
            fleet.kill(event.instance)

    result = run_job(fleet, records, JobConfig(instances=2, partition_records=2048), kill_one)
    outputs = result.outputs[next(iter(result.outputs))]
    expected = _in_process(mlp, np.load(data))
    loads = {name: log.loads for name, log in result.instances.items()}
    print(
        f"    {records / result.wall_s:,.0f} records/s in {result.rounds} rounds; killed "
        f"{killed[0]}: a replacement did what it had not finished (its checkpoints were kept); "
        f"model loads per instance {loads}"
    )
    print(f"    {len(outputs):,} results, equal to in-process onnxruntime: "
          f"{bool(np.array_equal(outputs, expected))}")  # fmt: skip


def _in_process(model: ExampleModel, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {model.input_name: x})[0])


def _sequential(client: Client, model: ExampleModel, n: int) -> list[float]:
    x = model.sample(1, seed=2)
    latencies = []
    for _ in tqdm(range(n), desc=f"    {model.name}", leave=False):
        started = time.perf_counter()
        client.infer(model.name, {model.input_name: x})
        latencies.append(time.perf_counter() - started)
    return latencies


def _burst(client: Client, model: ExampleModel, clients: int, total: int) -> tuple[float, int]:
    x = model.sample(1, seed=3)
    bar = tqdm(total=total, desc="    burst", leave=False)

    def worker(count: int) -> int:
        with Client(client.url) as own:
            for _ in range(count):
                own.infer(model.name, {model.input_name: x})
                bar.update(1)
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        shares = [total // clients + (i < total % clients) for i in range(clients)]
        done = sum(pool.map(worker, shares))
    bar.close()
    return time.perf_counter() - started, done


def _batches(client: Client, name: str) -> tuple[float, float]:
    """(sum of batch sizes, batch count) from the Prometheus endpoint."""
    text = client._http.get("/metrics").text
    total = count = 0.0
    for line in text.splitlines():
        match = re.match(rf'sealfn_batch_size_(sum|count)\{{function="{name}"\}} (\S+)', line)
        if match:
            value = float(match.group(2))
            total, count = (value, count) if match.group(1) == "sum" else (total, value)
    return total, count


def _wait_for_zero(client: Client) -> None:
    deadline = time.monotonic() + KEEP_ALIVE_S + 30
    with tqdm(desc="    waiting", unit="s", leave=False) as bar:
        while time.monotonic() < deadline:
            functions = client.status()["functions"]
            if all(sum(f["instances"].values()) == 0 for f in functions):
                return
            time.sleep(0.5)
            bar.update(0.5)
    print("    (instances still alive after the wait)")


def _step(label: str, fn: Any, *args: Any) -> Any:
    print(f"  {label} ...", flush=True)
    started = time.perf_counter()
    result = fn(*args)
    print(f"    done in {time.perf_counter() - started:.1f} s")
    return result


def _start_keyservice(port: int, folder: Path, platform: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "sealfn.cli",
        "keyservice",
        f"--port={port}",
        f"--db={folder / 'keyservice.db'}",
        "--accept-simulated",
        f"--platform-dir={platform}",
        "--log-level=warning",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    print(f"  starting: sealfn keyservice --port {port} --accept-simulated (simulated TEE)")
    return subprocess.Popen(command)


def _wait_url(url: str) -> None:
    import httpx

    for _ in range(200):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _start_server(port: int, state: Path, platform: Path, token: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "sealfn.cli",
        "serve",
        f"--port={port}",
        f"--state-dir={state}",
        "--log-level=info",
    ]
    print(f"  starting: sealfn serve --port {port} --state-dir {state}")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SEALFN_TEE": "simulated",
        "SEALFN_TEE_PLATFORM_DIR": str(platform),
        "SEALFN_ADMIN_TOKEN": token,
    }
    return subprocess.Popen(command, env=env)


def _wait_live(client: Client) -> None:
    for _ in range(200):
        if client.live():
            return
        time.sleep(0.05)
    raise RuntimeError("sealfn serve did not come up")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
