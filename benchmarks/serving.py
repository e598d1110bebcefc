"""`make bench`: sealfn vs onnxruntime in-process vs Ray Serve, same models, same load generator.

Usage: ``.venv/bin/python benchmarks/serving.py [--quick] [--no-ray]``. Writes
``benchmarks/results/serving.json`` (every point, the environment, the issue's figures and
whether each target is met) and ``benchmarks/results/serving.png``, and prints a table.

Arms, loopback only: (a) ``InferenceSession.run`` in this process (the floor); (b) ``sealfn
serve`` over KServe v2 binary tensors; (c) Ray Serve with the same bodies, in ``.venv-bench``.
The load generator is closed-loop (loadgen.py); the arms run one after another, never at once,
and the in-process/sealfn latency ratio comes from alternating short blocks so drift hits both.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

import figures
import ort_arm
import ray_arm
import sealfn_arm
from measure import FULL, QUICK, Context, log
from payloads import Workload
from sealfn.workloads.models import build_examples

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "benchmarks" / ".models"
RESULTS_DIR = ROOT / "benchmarks" / "results"
MAX_CLIENTS = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 2 min)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Serve arm")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    settings = QUICK if args.quick else FULL
    log(f"serving benchmark ({'quick' if args.quick else 'full'}); building example models ...")
    models = build_examples(MODELS_DIR)
    workloads = {name: Workload(model, MAX_CLIENTS) for name, model in models.items()}
    tmp = Path(tempfile.mkdtemp(prefix="sealfn-bench-"))
    ctx = Context(settings, workloads, ROOT, tmp)
    results: dict[str, Any] = {
        "benchmark": "serving",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "mode": "quick" if args.quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings.to_dict(),
        "env": environment(),
        "models": {n: _model_facts(w) for n, w in workloads.items()},
        "scratch_dir": str(tmp),
    }
    results["ort_load"] = ort_arm.load_probes(ctx)
    ort_arm.run(ctx)
    try:
        results["sealfn"] = sealfn_arm.run(ctx)
    except Exception as exc:  # e.g. `sealfn serve` did not start: keep the other arms
        results["sealfn"] = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"  sealfn arm failed: {results['sealfn']['error']}")
    if args.no_ray:
        results["ray"] = {"available": False, "reason": "skipped with --no-ray"}
    else:
        results["ray"] = ray_arm.run(ctx)
    _fill_ort_memory(ctx.points, results["ort_load"])
    results["points"] = ctx.points
    results["env"]["loadavg_end"] = os.getloadavg()
    results["env"]["ray_versions"] = results["ray"].get("startup", {}).get("versions")
    results["targets"] = figures.targets(results)
    results["wall_s"] = time.perf_counter() - began
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(_finite(results), indent=1) + "\n")
    figures.plot(results, args.out / "serving.png")
    print()
    print(figures.text(results))
    log(f"\nwrote {args.out / 'serving.json'} and serving.png in {results['wall_s']:.0f} s")
    return 0


def environment() -> dict[str, Any]:
    versions = {}
    for package in ("sealfn", "onnxruntime", "numpy", "starlette", "uvicorn", "psutil"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": _cpu_model(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git": _git(),
        "loadavg_start": os.getloadavg(),
        "notes": [
            "client (load generator, threads in one process) and servers share the machine's "
            "CPUs: every figure includes contention with the client",
            "onnxruntime uses the same session options in every arm (intra-op threads = ORT "
            "default, inter-op 1, CPU EP), as sealfn instances do",
            "arms run one after another; only the interleaved in-process/sealfn blocks alternate",
            "server CPU/memory = the server process plus all its descendants (sealfn instances, "
            "Ray's GCS/raylet/proxy/controller/replicas); in-process ORT memory comes from a fresh "
            "process after one inference (ort_load.py)",
            "sealfn configs deploy with min_instances=1 (warm) and the other settings shown; "
            "'-default' keeps every other setting at its FunctionSpec default",
        ],
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    diff = git("diff", "HEAD", "--", "src")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain")),
        "src_diff_sha1": hashlib.sha1(diff.encode()).hexdigest() if diff else None,
    }


def _model_facts(workload: Workload) -> dict[str, Any]:
    model = workload.model
    return {
        "path": str(model.path.relative_to(ROOT)),
        "size_mb": model.path.stat().st_size / 1e6,
        "input": model.input_name,
        "input_shape": list(model.input_shape),
        "request_body_bytes": len(workload.payloads[0].body),
    }


def _fill_ort_memory(points: list[dict[str, Any]], probes: dict[str, Any]) -> None:
    for row in points:
        if row["arm"] == ort_arm.ARM:
            probe = probes[row["model"]]
            row["server_rss_mb"], row["server_pss_mb"] = probe["rss_mb"], probe["pss_mb"]


def _finite(value: Any) -> Any:
    """JSON has no NaN: map non-finite floats to null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
