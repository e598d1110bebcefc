"""Arm (b): `sealfn serve` as a subprocess, KServe v2 binary tensors over loopback HTTP."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import ort_arm
import resources
from loadgen import Call, CallFactory, HttpCall
from measure import HOST, Context, interleave, log, median, point, timed_first_reply
from payloads import Workload
from sealfn.config import FunctionSpec
from servers import SealfnServer

ARM = "sealfn"
BATCH_ON = 8
COLD_KEEP_ALIVE_S = 1.0  # cold-start functions go back to zero this soon after their reply


@dataclass(frozen=True)
class Config:
    max_batch: int
    max_instances: int
    default: bool  # every other setting at its default (min_instances=1 to start warm)

    @property
    def label(self) -> str:
        return f"b{self.max_batch}-i{self.max_instances}" + ("-default" if self.default else "")

    def settings(self) -> dict[str, Any]:
        if self.default:
            return {"min_instances": 1}
        return {
            "min_instances": 1,
            "max_batch": self.max_batch,
            "max_instances": self.max_instances,
        }


def configs() -> list[Config]:
    """Batching off/on with one instance (isolates batching), then with the default maximum."""
    spec = FunctionSpec("defaults")
    found = [
        Config(1, 1, False),
        Config(BATCH_ON, 1, False),
        Config(1, spec.max_instances, False),
    ]
    if spec.max_batch == BATCH_ON:
        found.append(Config(BATCH_ON, spec.max_instances, True))
    else:
        found += [Config(BATCH_ON, spec.max_instances, False)]
        found += [Config(spec.max_batch, spec.max_instances, True)]
    return found


def run(ctx: Context) -> dict[str, Any]:
    log("[b] sealfn")
    server = SealfnServer(sys.executable, ctx.tmp / "sealfn-state", ctx.tmp / "sealfn-serve.log")
    result: dict[str, Any] = {"log": str(ctx.tmp / "sealfn-serve.log")}
    try:
        result["spawn_to_ready_s"] = server.wait_ready()
        result["idle_memory"] = resources.memory(server.pid)
        result["interleaved"], result["cold"], result["errors"] = {}, {}, []
        for workload in ctx.workloads.values():
            steps: list[tuple[str, Callable[[], Any]]] = [
                (config.label, partial(_measure_config, ctx, server, workload, config))
                for config in configs()
            ]
            steps.append(("interleaved", partial(_interleave, ctx, server, workload)))
            steps.append(("cold", partial(_cold, ctx, server, workload)))
            for step, run_step in steps:
                try:
                    found = run_step()
                except Exception as exc:  # record it and go on: one failure must not sink the run
                    message = f"{workload.name} {step}: {type(exc).__name__}: {exc}"
                    log(f"  FAILED {message}")
                    result["errors"].append(message)
                    continue
                if step in ("interleaved", "cold"):
                    result[step][workload.name] = found
    finally:
        result["exit_code"] = server.stop()
    return result


def http_calls(workload: Workload, port: int, path: str) -> CallFactory:
    def factory(client: int) -> Call:
        return HttpCall(HOST, port, workload.request(client, HOST, port, path))

    return factory


def _measure_config(ctx: Context, server: SealfnServer, workload: Workload, config: Config) -> None:
    """Deploy one config alone (so CPU and memory are its own), measure each concurrency."""
    name = f"{workload.name}-{config.label}"
    server.deploy(name, workload.model.path, **config.settings())
    try:
        if not server.wait_instances(name, 1):
            raise RuntimeError(f"{name}: no warm instance after deploy")
        factory = http_calls(workload, server.port, f"/v2/models/{name}/infer")
        for clients in ctx.settings.clients:
            point(
                ctx,
                ARM,
                config.label,
                workload,
                factory=factory,
                clients=clients,
                window=_Window(server, name),
                settle=config.max_instances > 1 and clients > 1,
                after=lambda: _memory(server.pid),
            )
    finally:
        server.undeploy(name)


def _interleave(ctx: Context, server: SealfnServer, workload: Workload) -> dict[str, Any]:
    """Every config deployed at once, and in-process ORT: alternating blocks per concurrency."""
    names = {config.label: f"{workload.name}-ab-{config.label}" for config in configs()}
    for config in configs():
        server.deploy(names[config.label], workload.model.path, **config.settings())
    try:
        for name in names.values():
            if not server.wait_instances(name, 1):
                raise RuntimeError(f"{name}: no warm instance after deploy")
        arms: dict[str, tuple[CallFactory, int | None]] = {
            "ort": (ort_arm.local_calls(workload), None)
        }
        for label, name in names.items():
            path = f"/v2/models/{name}/infer"
            arms[f"sealfn-{label}"] = (http_calls(workload, server.port, path), server.pid)
        results = {}
        for clients in ctx.settings.clients:
            resources.wait_quiet(ctx.settings.quiet_max_s)
            result = interleave(ctx, arms, clients, workload.name)
            for label, name in names.items():
                _gateway_view(server.function(name), result["arms"][f"sealfn-{label}"])
            results[f"c{clients}"] = result
        return results
    finally:
        for name in names.values():
            server.undeploy(name)


def _gateway_view(function: dict[str, Any], arm: dict[str, Any]) -> None:
    """The gateway's own latency (queue + IPC + run, no HTTP; over its last requests, all
    concurrencies so far) and the instances the function ended with."""
    arm["gateway_p50_ms"], arm["gateway_p99_ms"] = function["p50_ms"], function["p99_ms"]
    arm["instances"] = function["instances"]


class _Window:
    """Server-tree CPU, batch sizes (Prometheus) and instance starts over the window."""

    def __init__(self, server: SealfnServer, name: str) -> None:
        self.server, self.name = server, name
        self.cpu = resources.CpuWindow(server.pid)
        self.batches = (0.0, 0.0)
        self.cold_starts = 0

    def start(self) -> None:
        self.batches = self.server.batch_counters(self.name)
        self.cold_starts = self.server.function(self.name)["cold_starts"]
        self.cpu.start()  # last, so the two reads above are not billed to the window

    def stop(self) -> dict[str, Any]:
        cpu = self.cpu.stop()
        total, count = self.server.batch_counters(self.name)
        function = self.server.function(self.name)
        batches = count - self.batches[1]
        return {
            **cpu,
            "batches": batches,
            "mean_batch": (total - self.batches[0]) / batches if batches else None,
            "instance_starts_in_window": function["cold_starts"] - self.cold_starts,
            "instances": function["instances"],
        }


def _memory(pid: int) -> dict[str, Any]:
    memory = resources.memory(pid)
    return {f"server_{key}": value for key, value in memory.items()}


def _cold(ctx: Context, server: SealfnServer, workload: Workload) -> dict[str, Any]:
    """Deploy at min_instances=0 and time the first request (spawn + import + load + run)."""
    reps = []
    for rep in range(ctx.settings.cold_reps):
        name = f"{workload.name}-cold{rep}"
        server.deploy(name, workload.model.path, min_instances=0, keep_alive_s=COLD_KEEP_ALIVE_S)
        path = f"/v2/models/{name}/infer"
        try:
            first_s, _ = timed_first_reply(workload, server.port, path)
            entry: dict[str, Any] = {"first_reply_s": first_s}
            entry["server_cold_start_s"] = server.function(name)["cold_start_ms"] / 1000.0
            if ctx.settings.cold_after_idle and rep == 0:
                entry |= _after_idle(server, workload, name, path)
        finally:
            server.undeploy(name)
        reps.append(entry)
    result: dict[str, Any] = {"reps": reps, "keep_alive_s": COLD_KEEP_ALIVE_S}
    result["first_reply_s"] = median([r["first_reply_s"] for r in reps])
    result["server_cold_start_s"] = median([r["server_cold_start_s"] for r in reps])
    log(
        f"  cold {workload.name}: first reply {result['first_reply_s'] * 1000:.0f} ms "
        f"(server-side spawn..ready {result['server_cold_start_s'] * 1000:.0f} ms)"
    )
    return result


def _after_idle(server: SealfnServer, workload: Workload, name: str, path: str) -> dict[str, Any]:
    if not server.wait_instances(name, 0, timeout_s=COLD_KEEP_ALIVE_S + 30):
        return {"after_idle_error": "did not scale to zero"}
    seconds, _ = timed_first_reply(workload, server.port, path)
    return {"after_idle_first_reply_s": seconds}
