"""What every arm shares: settings, the result log, one measured point, one timed first reply."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import loadgen
import resources
from loadgen import CallFactory, HttpConnection, Load, Reply
from payloads import Workload

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    warmup_s: float  # load before each window
    duration_s: float  # each measurement window
    settle_s: float  # extra warmup where instances may scale up under load
    clients: tuple[int, ...]  # concurrency levels
    interleave_rounds: int  # rounds of alternating blocks (in-process ORT and sealfn configs)
    interleave_block_s: float
    cold_reps: int  # cold starts per model
    probe_reps: int  # fresh-process onnxruntime load timings per model
    cold_after_idle: bool  # also wait for scale-to-zero and time a second cold request
    quiet_max_s: float  # before each point, wait up to this long for the machine to go quiet

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Settings(
    warmup_s=2.0,
    duration_s=5.0,
    settle_s=4.0,
    clients=(1, 8),
    interleave_rounds=6,
    interleave_block_s=1.5,
    cold_reps=3,
    probe_reps=3,
    cold_after_idle=True,
    quiet_max_s=10.0,
)
QUICK = Settings(
    warmup_s=0.1,
    duration_s=0.5,
    settle_s=0.3,
    clients=(1, 8),
    interleave_rounds=1,
    interleave_block_s=0.3,
    cold_reps=1,
    probe_reps=1,
    cold_after_idle=False,
    quiet_max_s=0.0,
)


@dataclass
class Context:
    settings: Settings
    workloads: dict[str, Workload]
    root: Path  # repository root
    tmp: Path  # state dirs and server logs
    points: list[dict[str, Any]] = field(default_factory=list)


def log(message: str) -> None:
    print(message, flush=True)


def point(
    ctx: Context,
    arm: str,
    config: str,
    workload: Workload,
    *,
    factory: CallFactory,
    clients: int,
    window: loadgen.Window | None = None,
    settle: bool = False,
    after: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run one closed-loop point, check the replies, append and return its row."""
    s = ctx.settings
    quiet = resources.wait_quiet(s.quiet_max_s)
    load = Load(clients, s.warmup_s + (s.settle_s if settle else 0.0), s.duration_s)
    windows = _Windows(window, resources.SystemWindow())
    measured = loadgen.run(factory, load, windows)
    row: dict[str, Any] = {"arm": arm, "model": workload.name, "config": config}
    row |= measured.summary() | quiet
    cpu = row.pop("server_cpu_s", None)
    row["server_cpu_ms_per_req"] = (
        cpu * 1000.0 / measured.completed if cpu is not None and measured.completed else None
    )
    # CPU the machine spent on neither this server nor the load generator: a noisy neighbour
    foreign = row["machine_busy_cpu_s"] - measured.client_cpu_s - (cpu or 0.0)
    row["foreign_cpus"] = foreign / measured.window_s
    try:
        row["verified_clients"] = workload.check(measured.last_replies)
    except ValueError as exc:
        row["verify_error"] = str(exc)
    if after is not None:
        row |= after()
    ctx.points.append(row)
    log(
        f"  {arm:7} {workload.name:9} {config:14} c={clients}: p50 {row['p50_ms']:.3f} ms, "
        f"p99 {row['p99_ms']:.3f} ms, {row['throughput_rps']:.0f} req/s, errors {row['errors']}, "
        f"others {row['foreign_cpus']:.2f} CPUs"
    )
    return row


class _Windows:
    """Several windows as one: opened in order, closed in reverse (the innermost is tightest)."""

    def __init__(self, *windows: loadgen.Window | None) -> None:
        self.windows = [w for w in windows if w is not None]

    def start(self) -> None:
        for window in self.windows:
            window.start()

    def stop(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for window in reversed(self.windows):
            merged |= window.stop()
        return merged


def interleave(
    ctx: Context, arms: dict[str, tuple[CallFactory, int | None]], clients: int, what: str
) -> dict[str, Any]:
    """Short blocks of each arm in turn at ``clients``, the order rotating every round.

    ``arms`` maps a label to its call factory and its server's pid (``None``: in-process).
    Drift and neighbours hit every arm alike, so ratios between arms are trustworthy even when
    the absolute numbers move; the per-round lists show how much they move. Each arm first runs
    one unrecorded block (``settle_s``) so that autoscaling has settled before the rounds.
    """
    s = ctx.settings
    labels = list(arms)
    blocks: dict[str, list[loadgen.Measurement]] = {label: [] for label in labels}
    foreign: list[float] = []
    for label in labels:
        loadgen.run(arms[label][0], Load(clients, 0.0, s.settle_s))
    for round_ in range(s.interleave_rounds):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            factory, pid = arms[label]
            server = resources.CpuWindow(pid) if pid is not None else None
            window = _Windows(server, resources.SystemWindow())
            measured = loadgen.run(factory, Load(clients, 0.2, s.interleave_block_s), window)
            busy = measured.window["machine_busy_cpu_s"] - measured.client_cpu_s
            foreign.append((busy - measured.window.get("server_cpu_s", 0.0)) / measured.window_s)
            blocks[label].append(measured)
    result: dict[str, Any] = {
        "what": what,
        "clients": clients,
        "rounds": s.interleave_rounds,
        "block_s": s.interleave_block_s,
        "foreign_cpus_mean": float(np.mean(foreign)),
        "arms": {label: _pooled(blocks[label]) for label in labels},
    }
    log(
        f"  interleaved {what}, {clients} client(s): "
        + ", ".join(
            f"{label} p50 {arm['p50_ms']:.3f} ms {arm['throughput_rps']:.0f}/s"
            for label, arm in result["arms"].items()
        )
    )
    return result


def _pooled(blocks: list[loadgen.Measurement]) -> dict[str, Any]:
    latencies = [b.latencies_s for b in blocks]
    return {
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "throughput_rps": sum(b.completed for b in blocks) / sum(b.window_s for b in blocks),
        "requests": sum(b.completed for b in blocks),
        "errors": sum(b.errors for b in blocks),
        "round_p50_ms": [percentile_ms([b.latencies_s], 50) for b in blocks],
        "round_throughput_rps": [b.throughput_rps for b in blocks],
    }


def timed_first_reply(
    workload: Workload, port: int, path: str, retry_s: float = 0.0
) -> tuple[float, Reply]:
    """Seconds from sending client 0's request to its 200 reply on a connection made beforehand.

    With ``retry_s`` > 0 a non-200 reply (a route not yet known to a proxy) is retried until
    that many seconds have passed; the clock keeps running.
    """
    request = workload.request(0, HOST, port, path)
    conn = HttpConnection(HOST, port)
    try:
        started = time.perf_counter()
        deadline = started + retry_s
        while True:
            reply = conn.exchange(request)
            if reply.status == 200 or time.perf_counter() > deadline:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    if reply.status != 200:
        raise RuntimeError(f"first request got HTTP {reply.status}: {reply.body[:200]!r}")
    workload.check([reply])
    return elapsed, reply


def percentile_ms(latencies_s: list[np.ndarray], q: float) -> float:
    merged = np.concatenate(latencies_s) if latencies_s else np.empty(0)
    return float(np.percentile(merged, q) * 1000.0) if merged.size else float("nan")


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
