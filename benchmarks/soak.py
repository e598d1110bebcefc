"""Soak: plain, sealed, HE and batch work mixed, at the saturation point, for a bounded time.

Usage: ``.venv/bin/python benchmarks/soak.py [--minutes 10] [--mix plain,sealed,he,batch]``
(``make soak``; ``SOAK_MIX`` picks a smaller mix). First a short ramp of closed-loop clients
(1, 2, 4, 8, 16) on the plain and sealed MLP finds the saturation point: the fewest clients that
reach 95% of the best throughput. Then, for ``--minutes``, that many clients, split evenly between
a plain MLP and the same model sealed (simulated TEE, KeyService, HPKE), run with every reply
checked; beside them, an HE function (a tiny untrained network, CKKS N=8192) gets one encrypted
request every ``--he-interval-s`` seconds, each decrypted and compared with the plain network, and
every ``--batch-every-s`` seconds a ``sealfn batch run`` job over ``--batch-records`` records runs
on two instances of its own, its outputs compared with in-process onnxruntime. Each kind counts its
errors separately. Every ``--sample-s`` seconds: throughput, p50/p99 and the PSS of every process
(gateway, each instance by function, HE included, KeyService); each batch job's peak PSS. Verdicts:
0 unexpected errors; p99 stable (the last third's p99 over the first third's); memory flat (a
least-squares slope of each process's PSS after the first sample, in MiB per 10 minutes).
JSON + PNG in benchmarks/results (``--out`` elsewhere: short validation runs are not the figure).
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
KINDS = ("plain", "sealed", "he", "batch")
CLOSED_LOOP = ("plain", "sealed")  # the kinds the ramp saturates; HE and batch ride on top
HE_TOLERANCE = 1e-2  # max |HE logit - plain logit| (CKKS noise is ~1e-6 here)
_MIB = 1 << 20
_SETTINGS = {"keep_alive_s": 3600, "max_instances": 2}


class Stack:
    """A `sealfn serve` (simulated TEE) on loopback with the functions of the mix: a plain MLP,
    the same MLP sealed (and a KeyService for it), a tiny HE network."""

    def __init__(self, work: Path, model: ExampleModel, mix: frozenset[str]) -> None:
        self.work, self.model, self.mix = work, model, mix
        self.port, self.token = free_port(), secrets.token_urlsafe(32)
        plat = work / "platform"
        self.root = SimulatedPlatform.load_or_create(plat).root_public_key()
        env = {**os.environ, "SEALFN_TEE": "simulated", "SEALFN_TEE_PLATFORM_DIR": str(plat)}
        self.keyservice = self._start_keyservice(plat) if "sealed" in mix else None
        self.server = subprocess.Popen(
            [sys.executable, "-m", "sealfn.cli", "serve", f"--port={self.port}",
             f"--state-dir={work / 'state'}"],
            env={**env, "SEALFN_ADMIN_TOKEN": self.token})  # fmt: skip
        wait(f"{self.url}/v2/health/ready")
        self.admin = Client(self.url, admin_token=self.token)
        if "plain" in mix:
            self.admin.deploy("mlp", model.path, **_SETTINGS)
        if "sealed" in mix:
            self._deploy_sealed()
        if "he" in mix:
            self.he = HeFunction(self.admin, work, self.url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def closed_loop(self) -> list[str]:
        return [kind for kind in CLOSED_LOOP if kind in self.mix]

    def _start_keyservice(self, plat: Path) -> subprocess.Popen[bytes]:
        self.ks_port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sealfn.cli", "keyservice", f"--port={self.ks_port}",
             f"--db={self.work / 'ks.db'}", "--accept-simulated", f"--platform-dir={plat}",
             "--log-level=warning"])  # fmt: skip
        wait(f"http://127.0.0.1:{self.ks_port}/health")
        return proc

    def _deploy_sealed(self) -> None:
        ks_url = f"http://127.0.0.1:{self.ks_port}"
        policy = Policy(None, accept_simulated=True, trusted_simulated_roots=frozenset({self.root}))
        self.user = Principal.generate("soak-user", PrincipalKind.USER)
        owner = Principal.generate("soak-owner", PrincipalKind.OWNER)
        with KeyServiceClient(ks_url) as ks:
            ks.register(owner)
            ks.register(self.user)
            model_key = generate_model_key()
            ks.upload_model_key(owner, "mlp-sealed", model_key, ks.attest(policy))
            ks.grant(owner, "mlp-sealed", self.user.name, [enclave_measurement()])
            blob = self.work / "mlp-sealed.bin"
            blob.write_bytes(seal_model(self.model.path.read_bytes(), model_key, "mlp-sealed"))
            self.admin.deploy("mlp-sealed", blob, sealed=True, keyservice=ks_url, **_SETTINGS)
            self.key = ks.deployment_key("mlp-sealed", policy=policy)

    def caller(self, index: int) -> Caller:
        """Clients take the closed-loop kinds in turn: plain and sealed half and half."""
        if self.closed_loop[index % len(self.closed_loop)] == "plain":
            return Caller(self.port, "mlp", self.model, None)
        return Caller(self.port, "mlp-sealed", self.model, (self.key, self.user))

    def processes(self) -> dict[str, psutil.Process]:
        """Every serving process by role: gateway, KeyService, each instance as function:pid."""
        functions = {
            i["pid"]: f["name"]
            for f in self.admin.status()["functions"]
            for i in f["instance_list"]
        }
        roles: dict[str, psutil.Process] = {}
        for role, pid in self._top_pids().items():
            with contextlib.suppress(psutil.Error):  # a process that just exited
                proc = psutil.Process(pid)
                roles[role] = proc
                for child in proc.children(recursive=True):
                    roles[f"{functions.get(child.pid, 'instance')}:{child.pid}"] = child
        return roles

    def _top_pids(self) -> dict[str, int]:
        pids = {"gateway": self.server.pid}
        if self.keyservice is not None:
            pids["keyservice"] = self.keyservice.pid
        return pids

    def close(self) -> None:
        self.admin.close()
        for proc in (self.server, self.keyservice):  # enclaves first: their leases need the KS
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)


class HeFunction:
    """A tiny HE network (seeded, untrained: a 1-channel 3x3 stem conv and a linear head on 8x8
    images; depth 2, so CKKS N=8192, the smallest ring) deployed as ``digits-he``, with a user's
    keys uploaded once."""

    NAME = "digits-he"

    def __init__(self, admin: Client, work: Path, url: str) -> None:
        from sealfn.he.client import HeClient
        from sealfn.he.graph import tiny
        from sealfn.he.params import choose
        from sealfn.he.plan import compile_graph, cost
        from sealfn.he.tenseal_backend import TensealBackend

        graph = tiny(0)
        self.plan = compile_graph(graph)
        (work / "digits.he").write_bytes(graph.to_bytes())
        admin.deploy(self.NAME, work / "digits.he", he=True, keep_alive_s=3600, max_instances=1)
        self.keys = TensealBackend().keygen(choose(cost(self.plan).depth, self.plan.width))
        self.client = HeClient(url, timeout_s=120)
        self.needs = self.client.requirements(self.NAME)
        self.client.upload_keys(self.keys)

    def __call__(self, x: np.ndarray) -> None:
        """One encrypted inference; raises if the decrypted logits are not the plain network's."""
        got = self.client.infer(self.NAME, self.keys, x, self.needs)
        error = float(np.abs(got - self.plan.run_plain(x)).max())
        if not error < HE_TOLERANCE:
            raise RuntimeError(f"HE logits off by {error:.3g}")


class Load:
    """Closed-loop clients; each records (finished_at, latency_s) per request."""

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


class Periodic:
    """One thread doing ``work()`` every ``every_s`` seconds (from the start of the last one)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.began = time.perf_counter()  # the soak's start, for reporting
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def work(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                self.work()
            except Exception as exc:  # counted per kind, never swallowed
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            self._stop.wait(max(0.0, self.every_s - (time.perf_counter() - started)))


class HeLoad(Periodic):
    """Encrypted requests at a low, fixed rate; each reply decrypted and checked."""

    def __init__(self, function: HeFunction, every_s: float) -> None:
        super().__init__(every_s)
        self.function = function
        self.latencies: list[tuple[float, float]] = []  # (finished_at, seconds)
        self._rng = np.random.default_rng(5)

    def warm(self) -> None:
        self.function(self._rng.random((1, 8, 8)))  # the instance loads the plan and keys

    def work(self) -> None:
        started = time.perf_counter()
        self.function(self._rng.random((1, 8, 8)))  # (C, H, W) pixels in [0, 1)
        done = time.perf_counter()
        self.latencies.append((done, done - started))


class BatchJobs(Periodic):
    """`sealfn batch run` over the MLP every ``every_s`` s; outputs checked, peak PSS recorded."""

    def __init__(self, model: ExampleModel, work: Path, records: int, every_s: float) -> None:
        super().__init__(every_s)
        self.model, self.folder = model, work / "batch"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data = self.folder / "records.npy"
        x = model.sample(records, seed=11)
        np.save(self.data, x)
        self.expected = _in_process(model, x)
        self.jobs: list[dict[str, Any]] = []

    def work(self) -> None:
        out = self.folder / "out.npz"
        out.unlink(missing_ok=True)
        started = time.perf_counter()
        job = subprocess.Popen(
            [sys.executable, "-m", "sealfn.cli", "batch", "run", str(self.model.path),
             str(self.data), "--instances=2", "--partition-records=2048", "--no-progress",
             f"--output={out}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        peak = _peak_pss(job)
        stderr = job.stderr.read().decode(errors="replace") if job.stderr else ""
        record = {"start_s": started - self.began, "seconds": time.perf_counter() - started,
                  "rc": job.returncode, "peak_pss_mib": peak, "ok": False}  # fmt: skip
        self.jobs.append(record)
        if job.returncode != 0:
            raise RuntimeError(f"batch job exited {job.returncode}: {stderr[-200:]}")
        with np.load(out) as outputs:
            got = outputs[outputs.files[0]]
        if not np.array_equal(got, self.expected):
            raise RuntimeError("batch job outputs differ from in-process onnxruntime")
        record["ok"] = True


def _peak_pss(job: subprocess.Popen[bytes], every_s: float = 0.5) -> dict[str, float]:
    """Until ``job`` exits: the highest PSS of its root and of its largest instance, and of all."""
    peak = {"root": 0.0, "instance_max": 0.0, "total": 0.0}
    while job.poll() is None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(job.pid)
            children = [_pss(c) for c in root.children(recursive=True)]
            sizes = {"root": _pss(root), "instance_max": max(children, default=0.0)}
            sizes["total"] = sizes["root"] + sum(children)
            peak = {k: max(v, sizes[k]) for k, v in peak.items()}
        time.sleep(every_s)
    return peak


def _pss(proc: psutil.Process) -> float:
    try:
        return float(proc.memory_full_info().pss) / _MIB
    except psutil.Error:  # a process that just exited
        return 0.0


def _in_process(model: ExampleModel, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {model.input_name: x})[0])


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


def soak(stack: Stack, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    load = Load(stack, clients)
    side = _side_loads(stack, args)
    load.start()
    began = time.perf_counter()
    for job in side.values():
        job.began = began
        job.start()
    samples = _sample(stack, load, side, began, args)
    for job in side.values():
        job.stop()
    load.stop()
    total = time.perf_counter() - began
    thirds = [load.window(began + k * total / 3, began + (k + 1) * total / 3) for k in range(3)]
    return {
        "clients": clients,
        "closed_loop_kinds": stack.closed_loop,
        "seconds": total,
        "requests": sum(len(r) for r in load.records),
        "errors": len(load.errors),
        "error_examples": sorted(set(load.errors))[:10],
        "p99_ms_by_third": [_pct(t, 99) for t in thirds],
        **{kind: _side_report(kind, job) for kind, job in side.items()},
        "samples": samples,
    }


def _side_loads(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    side: dict[str, Any] = {}
    if "he" in stack.mix:
        side["he"] = HeLoad(stack.he, args.he_interval_s)
        side["he"].warm()
    if "batch" in stack.mix:
        side["batch"] = BatchJobs(stack.model, stack.work, args.batch_records, args.batch_every_s)
    return side


def _sample(
    stack: Stack, load: Load, side: dict[str, Any], began: float, args: argparse.Namespace
) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    end = began + args.minutes * 60
    while (now := time.perf_counter()) < end:
        time.sleep(min(args.sample_s, end - now))
        at = time.perf_counter()
        lat = load.window(at - args.sample_s, at)
        memory = {role: _pss(proc) for role, proc in stack.processes().items()}
        samples.append({
            "t_s": at - began,
            "req_per_s": len(lat) / args.sample_s,
            "p50_ms": _pct(lat, 50),
            "p99_ms": _pct(lat, 99),
            "errors_so_far": {"closed_loop": len(load.errors)}
            | {kind: len(job.errors) for kind, job in side.items()},
            "pss_mib": {role: mib for role, mib in memory.items() if mib},
        })  # fmt: skip
        s = samples[-1]
        line = f"{s['t_s']:6.0f} s  {s['req_per_s']:7.0f} req/s  p99 {s['p99_ms'] or 0:.2f} ms"
        print(
            f"  {line}  PSS {sum(memory.values()):.0f} MiB  errors {s['errors_so_far']}", flush=True
        )
    return samples


def _side_report(kind: str, job: Any) -> dict[str, Any]:
    report = {"every_s": job.every_s, "errors": len(job.errors),
              "error_examples": sorted(set(job.errors))[:10]}  # fmt: skip
    if kind == "he":
        lat = np.asarray([d for _, d in job.latencies])
        return report | {"requests": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}
    return report | {"jobs": job.jobs, "records": len(job.expected)}


def _pct(latencies: np.ndarray, q: float) -> float | None:
    return float(np.percentile(latencies, q) * 1e3) if len(latencies) else None


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    first, _, last = result["p99_ms_by_third"]
    slopes = {}
    samples = result["samples"][1:]  # the first sample includes warm-up growth
    for role in sorted({r for s in samples for r in s["pss_mib"]}):
        points = [(s["t_s"], s["pss_mib"][role]) for s in samples if role in s["pss_mib"]]
        if len(points) >= 3:
            t, m = np.asarray(points).T
            slopes[role] = float(np.polyfit(t, m, 1)[0] * 600)  # MiB per 10 minutes
    jobs = result.get("batch", {}).get("jobs", [])
    return {
        "unexpected_errors": result["errors"],
        "he_errors": result.get("he", {}).get("errors"),
        "batch_errors": result.get("batch", {}).get("errors"),
        "batch_jobs_ok": sum(j["ok"] for j in jobs),
        "batch_peak_pss_mib_first_last": [jobs[0]["peak_pss_mib"]["total"],
                                          jobs[-1]["peak_pss_mib"]["total"]] if jobs else None,
        "p99_last_over_first_third": last / first if first and last else None,
        "pss_slope_mib_per_10min": slopes,
        "max_pss_slope_mib_per_10min": max(slopes.values(), default=0.0),
    }  # fmt: skip


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["soak"]["samples"]
    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    axes[0].plot(t, [s["req_per_s"] for s in samples])
    axes[0].set_ylabel("req/s (plain + sealed)")
    for job in report["soak"].get("batch", {}).get("jobs", []):
        start = job["start_s"] / 60
        axes[0].axvspan(start, start + job["seconds"] / 60, color="tab:orange", alpha=0.2)
    axes[1].plot(t, [s["p50_ms"] for s in samples], label="p50")
    axes[1].plot(t, [s["p99_ms"] for s in samples], label="p99")
    axes[1].set_ylabel("latency (ms)")
    axes[1].legend()
    for role in sorted({r for s in samples for r in s["pss_mib"]}):
        axes[2].plot(t, [s["pss_mib"].get(role) for s in samples], label=role)
    axes[2].set_ylabel("PSS (MiB)")
    axes[2].set_xlabel("minutes (shaded: a batch job running)")
    axes[2].legend(fontsize=7)
    v = report["verdicts"]
    ratio = v["p99_last_over_first_third"]
    fig.suptitle(
        f"soak: {report['soak']['clients']} clients, mix {','.join(report['mix'])}; errors "
        f"{v['unexpected_errors']} / HE {v['he_errors']} / batch {v['batch_errors']}; "
        f"p99 last/first third {ratio:.2f}"
        if ratio
        else "",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--mix", default=",".join(KINDS), help="any of " + ",".join(KINDS))
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--ramp-s", type=float, default=5.0)
    parser.add_argument("--he-interval-s", type=float, default=2.0, help="one HE request per")
    parser.add_argument("--batch-every-s", type=float, default=120.0, help="one batch job per")
    parser.add_argument("--batch-records", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json", help="PNG beside it")
    args = parser.parse_args()
    args.mix = frozenset(k for k in args.mix.split(",") if k)
    if not args.mix or not args.mix <= set(KINDS):
        parser.error(f"--mix {','.join(sorted(args.mix))}: choose from {','.join(KINDS)}")
    return args


def _clients(stack: Stack, ramp_s: float) -> tuple[dict[int, float], int]:
    """The ramp's throughputs and the saturation point (0 clients: no closed-loop kind)."""
    if not stack.closed_loop:
        return {}, 0
    print("finding the saturation point", flush=True)
    throughput = ramp(stack, ramp_s)
    best = max(throughput.values())
    clients = min(c for c, r in throughput.items() if r >= 0.95 * best)
    kinds = len(stack.closed_loop)
    return throughput, -(-clients // kinds) * kinds  # a multiple: the mix stays even


def main() -> None:
    args = _args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model = build_examples(HERE / ".models")["mlp"]
    stack = Stack(Path(tempfile.mkdtemp(prefix="sealfn-soak-")), model, args.mix)
    try:
        throughput, clients = _clients(stack, args.ramp_s)
        print(f"soaking at {clients} clients for {args.minutes:g} min, mix "
              f"{','.join(k for k in KINDS if k in args.mix)}", flush=True)  # fmt: skip
        result = soak(stack, clients, args)
    finally:
        stack.close()
    report = {
        "mix": [k for k in KINDS if k in args.mix],
        "ramp_req_per_s": throughput,
        "soak": result,
        "verdicts": verdicts(result),
        "env": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tee": "simulated",
            "note": "load generator, gateway, instances, KeyService and batch jobs share this "
            "machine",
        },
    }
    args.out.write_text(json.dumps(report, indent=2))
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps(report["verdicts"], indent=2))


if __name__ == "__main__":
    main()
