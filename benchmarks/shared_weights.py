"""Shared weights across plain instances: PSS and RSS of N ResNet-18 instances, and p50 latency.

Usage: .venv/bin/python benchmarks/shared_weights.py [--instances 1,2,4] [--reps 200] [--rounds 3]
Writes benchmarks/results/shared_weights.json and shared_weights.png.

Each instance is a fresh process that loads the model through ``ModelHost.load`` (as an instance
does), runs one inference and waits; then its RSS and PSS are read (PSS splits every shared page
among the processes mapping it, so the sum of PSS is what the instances really cost). Arms:

  a  the model as one self-contained .onnx file (what the registry stored before)
  b  graph + page-aligned weights file (``sealfn.weights``, what deploy stores now), default options
  c  b loaded with ``ModelHost(share_weights=True)``: no NCHWc rewrite, no prepacking
  d  b loaded with ``ModelHost(host_optimized=True)`` (the default in instances): onnxruntime's
     level-ALL rewrite (NCHWc blocked, specific to this CPU) saved once beside the model, page-
     aligned (``sealfn.instance.hostopt``), then every instance maps it
  -  runtime floor: an instance with onnxruntime imported and no model
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from sealfn.instance import hostopt
from sealfn.report import table
from sealfn.weights import WEIGHTS_FILE, external_tensors, externalize, residency
from sealfn.workloads.models import build_examples

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODELS = HERE / ".models"
MiB = 1 << 20
WARMUP = 10  # runs before the timed ones (first-run allocations, caches)


@dataclass(frozen=True)
class Arm:
    key: str
    label: str
    model: Path | None  # None: the runtime floor, no model loaded
    share_weights: bool
    wired: bool  # what sealfn does today (with the matching ModelHost option)
    host_optimized: bool = False


# ---- the instance process -------------------------------------------------------------------


def child(model: str, share: str, threads: int, reps: int) -> None:
    """One instance: load, run once (and ``reps`` timed runs), report, wait for stdin to close."""
    from sealfn.instance.models import ModelHost

    host = ModelHost(threads, share_weights=share == "shared", host_optimized=share == "hostopt")
    report: dict[str, Any] = {}
    if model != "-":
        loaded = host.load("m", Path(model))
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
        feeds = [{"input": x}]
        times, outputs = [], []
        for _ in range(WARMUP * (reps > 0) + reps + 1):
            started = time.perf_counter()
            outputs = host.run_batch("m", feeds)
            times.append(time.perf_counter() - started)
        report = {
            "load_s": loaded.load_s,
            "run_ms": [t * 1e3 for t in times[-reps:]] if reps else [],
            "logits": outputs[0]["output"].ravel().tolist(),  # (1000,): to compare the arms
        }
    print(json.dumps(report), flush=True)
    sys.stdin.read()


@contextlib.contextmanager
def instances(arm: Arm, count: int, threads: int, reps: int = 0) -> Iterator[list[Any]]:
    """``count`` instance processes of ``arm``, all loaded and run once; yields (pid, report)."""
    model = str(arm.model) if arm.model else "-"
    share = "hostopt" if arm.host_optimized else "shared" if arm.share_weights else "private"
    command = [sys.executable, __file__, "--child", model, share, str(threads), str(reps)]
    procs = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        reports = [json.loads(proc.stdout.readline()) if proc.stdout else {} for proc in procs]
        yield [(proc.pid, report) for proc, report in zip(procs, reports, strict=True)]
    finally:
        for proc in procs:
            proc.communicate(timeout=60)


# ---- measuring ------------------------------------------------------------------------------


def measure_memory(arm: Arm, count: int, threads: int) -> dict[str, Any]:
    with instances(arm, count, threads) as running:
        per = [_memory(pid, arm) for pid, _ in running]
    return {
        "arm": arm.key,
        "instances": count,
        "per_instance": per,
        "total_rss_mib": sum(p["rss_mib"] for p in per),
        "total_pss_mib": sum(p["pss_mib"] for p in per),
        "mean_pss_mib": sum(p["pss_mib"] for p in per) / count,
    }


def _memory(pid: int, arm: Arm) -> dict[str, float]:
    info = psutil.Process(pid).memory_full_info()
    row = {"rss_mib": info.rss / MiB, "pss_mib": info.pss / MiB, "uss_mib": info.uss / MiB}
    weights = _mapped_weights(arm)
    mapped = residency(pid, weights) if weights and weights.exists() else None
    row["weights_rss_mib"] = mapped.rss / MiB if mapped else 0.0
    row["weights_pss_mib"] = mapped.pss / MiB if mapped else 0.0
    return row


def _mapped_weights(arm: Arm) -> Path | None:
    """The weights file the arm's instances map: the model's own, or its host-optimized copy's."""
    if arm.model is None:
        return None
    if not arm.host_optimized:
        return arm.model.parent / WEIGHTS_FILE
    return next(iter(sorted(arm.model.parent.glob(f"{hostopt.PREFIX}*/{WEIGHTS_FILE}"))), None)


def measure_latency(arms: Sequence[Arm], threads: int, reps: int, rounds: int) -> list[Any]:
    """Batch-1 run times, one instance at a time, arms interleaved round by round; and how far
    each arm's logits are from the first arm's (the kernels differ, the model must not)."""
    runs: dict[str, list[float]] = {arm.key: [] for arm in arms}
    rounds_p50: dict[str, list[float]] = {arm.key: [] for arm in arms}
    loads: dict[str, list[float]] = {arm.key: [] for arm in arms}
    logits: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for arm in arms:
            with instances(arm, 1, threads, reps) as [(_pid, report)]:
                runs[arm.key] += report["run_ms"]
                rounds_p50[arm.key].append(float(np.median(report["run_ms"])))
                loads[arm.key].append(report["load_s"])
                logits[arm.key] = np.array(report["logits"])
    reference = logits[arms[0].key]
    return [
        {
            "arm": arm.key,
            "p50_ms": float(np.percentile(runs[arm.key], 50)),
            "p90_ms": float(np.percentile(runs[arm.key], 90)),
            "rounds_p50_ms": rounds_p50[arm.key],
            "load_s_median": float(np.median(loads[arm.key])),
            "runs": len(runs[arm.key]),
            "max_abs_diff_vs_a": float(np.abs(logits[arm.key] - reference).max()),
        }
        for arm in arms
    ]


# ---- the models -----------------------------------------------------------------------------


def prepare(directory: Path) -> list[Arm]:
    resnet = build_examples(directory)["resnet18"].path
    external = _fresh(directory / "shared_weights" / "external")
    graph = externalize(resnet, external)
    from sealfn.instance.models import ModelHost

    ModelHost(1, host_optimized=True).load("m", graph)  # builds the host-optimized copy once
    return [
        Arm("a", "a: one .onnx file", resnet, False, wired=False),
        Arm("b", "b: external weights", graph, False, wired=False),
        Arm("c", "c: external, share_weights", graph, True, wired=True),
        Arm("d", "d: host-optimized (default)", graph, False, wired=True, host_optimized=True),
        Arm("floor", "runtime floor", None, False, wired=True),
    ]


def _fresh(folder: Path) -> Path:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return folder


# ---- report ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", default="1,2,4")
    parser.add_argument("--reps", type=int, default=200, help="timed batch-1 runs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per instance")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, share, threads, reps = args.child
        child(model, share, int(threads), int(reps))
        return
    counts = [int(n) for n in args.instances.split(",")]
    arms = prepare(MODELS)
    memory = [measure_memory(arm, n, args.threads) for n in counts for arm in arms]
    latency = measure_latency([a for a in arms if a.model], args.threads, args.reps, args.rounds)
    report = {
        "machine": _machine(),
        "threads_per_instance": args.threads,
        "model": _model_facts(arms),
        "arms": {
            a.key: {"label": a.label, "share_weights": a.share_weights, "wired": a.wired}
            for a in arms
        },
        "memory": memory,
        "latency": latency,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shared_weights.json").write_text(json.dumps(report, indent=2) + "\n")
    print(_tables(arms, memory, latency))
    plot(arms, memory, latency, counts)


def _machine() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "onnxruntime": ort.__version__,
        "page_bytes": mmap.PAGESIZE,
        "python": platform.python_version(),
    }


def _model_facts(arms: Sequence[Arm]) -> dict[str, Any]:
    facts: dict[str, Any] = {"name": "resnet18"}
    for arm in arms:
        if arm.model is None or arm.key not in ("a", "b", "d"):
            continue
        weights = _mapped_weights(arm)
        graph = weights.with_name("model.onnx") if arm.host_optimized and weights else arm.model
        layout = external_tensors(graph) if arm.key != "a" else {}
        facts[arm.key] = {
            "graph_kib": graph.stat().st_size / 1024,
            "external_tensors": len(layout),
            "external_mib": sum(n for _, n in layout.values()) / MiB,
            "page_aligned": all(offset % mmap.PAGESIZE == 0 for offset, _ in layout.values()),
        }
    return facts


def _tables(arms: Sequence[Arm], memory: Sequence[Any], latency: Sequence[Any]) -> str:
    label = {a.key: a.label for a in arms}
    rows = []
    for row in memory:
        first = row["per_instance"][0]
        rows.append(
            [
                label[row["arm"]],
                row["instances"],
                f"{row['total_pss_mib']:.1f}",
                f"{row['total_rss_mib']:.1f}",
                f"{row['mean_pss_mib']:.1f}",
                f"{first['weights_rss_mib']:.1f}",
                f"{first['weights_pss_mib']:.1f}",
            ]
        )
    heads = ["arm", "N", "PSS sum", "RSS sum", "PSS/inst", "wts RSS", "wts PSS"]
    lat = [
        [
            label[r["arm"]],
            f"{r['p50_ms']:.2f}",
            f"{r['p90_ms']:.2f}",
            " ".join(f"{v:.2f}" for v in r["rounds_p50_ms"]),
            f"{r['load_s_median'] * 1e3:.0f}",
            f"{r['max_abs_diff_vs_a']:.1e}",
        ]
        for r in latency
    ]
    return (
        "memory (MiB; wts = the weights file's mapped pages, first instance)\n"
        + table(heads, rows)
        + "\n\nbatch-1 latency (ms) and load time\n"
        + table(["arm", "p50", "p90", "p50 per round", "load ms", "max |diff| vs a"], lat)
    )


def plot(
    arms: Sequence[Arm], memory: Sequence[Any], latency: Sequence[Any], counts: list[int]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"a": "tab:red", "b": "tab:orange", "c": "tab:green", "d": "tab:blue", "floor": "gray"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for arm in arms:
        rows = [r for r in memory if r["arm"] == arm.key]
        n = [r["instances"] for r in rows]
        axes[0].plot(
            n,
            [r["total_pss_mib"] for r in rows],
            "o-",
            color=colors[arm.key],
            label=f"{arm.label} (PSS)",
        )
        axes[0].plot(n, [r["total_rss_mib"] for r in rows], "x--", color=colors[arm.key], alpha=0.5)
        axes[1].plot(
            n, [r["mean_pss_mib"] for r in rows], "o-", color=colors[arm.key], label=arm.label
        )
    axes[0].set(
        title="all instances: PSS sum (solid), RSS sum (dashed)",
        xlabel="instances",
        ylabel="MiB",
        xticks=counts,
    )
    axes[1].set(title="PSS per instance", xlabel="instances", ylabel="MiB", xticks=counts)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    label = {a.key: a.label for a in arms}
    keys = [r["arm"] for r in latency]
    axes[2].bar(
        [label[k] for k in keys], [r["p50_ms"] for r in latency], color=[colors[k] for k in keys]
    )
    axes[2].set(title="ResNet-18, batch 1, one instance: p50", ylabel="ms")
    axes[2].tick_params(axis="x", labelsize=7, rotation=15)
    fig.tight_layout()
    fig.savefig(RESULTS / "shared_weights.png", dpi=120)


if __name__ == "__main__":
    main()
