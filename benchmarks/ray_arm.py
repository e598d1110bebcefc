"""Arm (c): Ray Serve in its own venv (``.venv-bench``), same models, bodies and load generator.

Ray never enters the project's venv. When its venv is missing it is built here with the pinned
versions below; when that or Ray's start fails, the reason is recorded and the arm is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

import resources
from measure import HOST, Context, log, median, point, timed_first_reply
from payloads import Workload
from sealfn_arm import http_calls
from servers import RayServer, ServerFailed

ARM = "ray"
VENV = ".venv-bench"
REQUIREMENTS = ("ray[serve]==2.60.0", "onnxruntime==1.31.1", "numpy==2.4.6")
CONFIGS = {"plain": 0, "batch8": 8}  # label -> @serve.batch max_batch_size (0: no batching)
FIRST_REPLY_RETRY_S = 60.0  # a new route reaches the proxy a little after serve.run returns


def run(ctx: Context) -> dict[str, Any]:
    log("[c] Ray Serve")
    python, reason = ensure_env(ctx.root)
    if python is None:
        log(f"  skipped: {reason}")
        return {"available": False, "reason": reason}
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"  # offline machine: no usage-stats upload attempt
    log_path = ctx.tmp / "ray-serve.log"
    server = RayServer(python, ctx.root / "benchmarks" / "ray_serve_app.py", log_path, env)
    result: dict[str, Any] = {"available": True, "log": str(log_path), "settings": _settings()}
    try:
        try:
            ready = server.wait_ready()
        except ServerFailed as exc:
            log(f"  skipped: Ray did not start: {exc}")
            return {"available": False, "reason": f"Ray did not start: {exc}"}
        result["startup"] = ready
        time.sleep(2.0)  # let Ray's background processes finish starting before the snapshot
        result["idle_memory"] = resources.memory(server.pid)
        result["deploys"], result["cold"] = [], {}
        for workload in ctx.workloads.values():
            for label, batch in CONFIGS.items():
                result["deploys"].append(_measure_config(ctx, server, workload, label, batch))
            result["cold"][workload.name] = _cold(ctx, server, workload)
    except (ServerFailed, RuntimeError, OSError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"  Ray arm stopped early: {result['error']}")
    finally:
        result["exit_code"] = server.stop()
    return result


def ensure_env(root: Path) -> tuple[Path | None, str | None]:
    """The Ray venv's interpreter, built if missing; or ``None`` and why it cannot be had."""
    venv = root / VENV
    python = venv / "bin" / "python"
    if not python.exists():
        base = shutil.which("python3.11")
        if base is None:
            return None, "python3.11 not found to create the Ray venv"
        log(f"  creating {VENV} ({', '.join(REQUIREMENTS)}) ...")
        steps = [[base, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q"]]
        steps[1] += REQUIREMENTS
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=1800, check=False)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                return None, f"`{' '.join(step)}` failed: {' | '.join(tail)}"
    check = [str(python), "-c", "import ray, ray.serve, onnxruntime, numpy"]
    done = subprocess.run(check, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-2:]
        return None, f"Ray venv cannot import ray/onnxruntime: {' | '.join(tail)}"
    return python, None


def _settings() -> dict[str, Any]:
    from ray_serve_app import BATCH_MAX_ONGOING, BATCH_WAIT_S, COLD_SCALING

    return {
        "replicas": 1,
        "configs": CONFIGS,
        "batch_wait_timeout_s": BATCH_WAIT_S,
        "batch_max_ongoing_requests": BATCH_MAX_ONGOING,
        "plain_max_ongoing_requests": "Ray default",
        "cold_autoscaling_config": COLD_SCALING,
        "ray_init": "include_dashboard=False, log_to_driver=False",
    }


def _measure_config(
    ctx: Context, server: RayServer, workload: Workload, label: str, batch: int
) -> dict[str, Any]:
    name = f"{workload.name}-{label}"
    model = workload.model
    deployed = server.command(
        op="deploy", name=name, model=str(model.path), input=model.input_name, batch=batch
    )
    path = f"/{name}"
    try:
        first_s, _ = timed_first_reply(workload, server.port, path, retry_s=FIRST_REPLY_RETRY_S)
        factory = http_calls(workload, server.port, path)
        for clients in ctx.settings.clients:
            point(
                ctx,
                ARM,
                label,
                workload,
                factory=factory,
                clients=clients,
                window=_Window(server, name),
                after=lambda: {f"server_{k}": v for k, v in resources.memory(server.pid).items()},
            )
    finally:
        server.command(op="delete", name=name)
    return {
        "name": name,
        "serve_run_s": deployed["serve_run_s"],
        "first_request_s": first_s,
        "serve_run_to_first_reply_s": deployed["serve_run_s"] + first_s,
    }


class _Window:
    """The Ray tree's CPU and the replica's batch counters over the window."""

    def __init__(self, server: RayServer, name: str) -> None:
        self.url = f"http://{HOST}:{server.port}/{name}"
        self.cpu = resources.CpuWindow(server.pid)
        self.counters = (0, 0)

    def start(self) -> None:
        self.counters = self._counters()
        self.cpu.start()

    def stop(self) -> dict[str, Any]:
        cpu = self.cpu.stop()
        batches, items = (b - a for a, b in zip(self.counters, self._counters(), strict=True))
        return {**cpu, "batches": batches, "mean_batch": items / batches if batches else None}

    def _counters(self) -> tuple[int, int]:
        data = httpx.get(self.url, timeout=30).json()
        return int(data["batches"]), int(data["items"])


def _cold(ctx: Context, server: RayServer, workload: Workload) -> dict[str, Any]:
    """A deployment autoscaled from zero replicas: time its first request, then (optionally)
    wait until it is back at zero and time another."""
    name = f"{workload.name}-zero"
    model = workload.model
    reps: list[dict[str, Any]] = []
    deployed = server.command(
        op="deploy", name=name, model=str(model.path), input=model.input_name, batch=0, zero=True
    )
    path = f"/{name}"
    try:
        for rep in range(ctx.settings.cold_reps if ctx.settings.cold_after_idle else 1):
            if rep and not _wait_zero(server, name):
                reps.append({"error": "did not scale back to zero within 120 s"})
                break
            seconds, _ = timed_first_reply(workload, server.port, path, FIRST_REPLY_RETRY_S)
            reps.append({"first_reply_s": seconds, "after_idle": rep > 0})
    finally:
        server.command(op="delete", name=name)
    firsts = [r["first_reply_s"] for r in reps if "first_reply_s" in r]
    result = {"serve_run_s": deployed["serve_run_s"], "reps": reps}
    result["first_reply_s"] = firsts[0] if firsts else None  # from deploy, at zero replicas
    result["after_idle_first_reply_s"] = median(firsts[1:])  # after scaling back to zero
    log(f"  cold {workload.name}: first reply from zero replicas (s) {firsts}")
    return result


def _wait_zero(server: RayServer, name: str, timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.command(op="replicas", name=name)["running"] == 0:
            return True
        time.sleep(0.5)
    return False
