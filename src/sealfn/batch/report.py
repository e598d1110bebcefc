"""A finished job's summary (throughput, cost in GB-seconds) and its per-instance timeline plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sealfn.batch.job import JobResult
from sealfn.config import PriceConfig
from sealfn.runtime.cost import cost_report, gb_seconds


def summary(result: JobResult, memory_mb: int, prices: PriceConfig | None = None) -> dict[str, Any]:
    """Plain numbers for JSON: what ran, how fast, what it would cost as serverless functions.

    Cost is priced like a serverless platform: each instance's configured ``memory_mb`` for its
    lifetime (start to stop, model load included), plus one invocation per instance started."""
    lifetimes = {name: log.stopped - log.started for name, log in result.instances.items()}
    gb_s = sum(gb_seconds(memory_mb, seconds) for seconds in lifetimes.values())
    cost = cost_report(gb_s, len(result.instances), prices or PriceConfig())
    computed = result.computed()
    return {
        "records": result.records,
        "partitions": result.partitions,
        "rounds": result.rounds,
        "wall_s": round(result.wall_s, 4),
        "records_per_s": round(result.records / result.wall_s, 2) if result.wall_s else 0.0,
        "instances_started": len(result.instances),
        "instances_died": sorted(n for n, log in result.instances.items() if log.died),
        "model_loads": {name: log.loads for name, log in result.instances.items()},
        "partitions_computed": sum(computed.values()),
        "partitions_restored": sum(
            1 for log in result.instances.values() for _, c, _, _ in log.partitions if not c
        ),
        "memory_mb": memory_mb,
        "gb_seconds": round(cost.gb_seconds, 4),
        "usd": cost.usd,
    }


def timeline_png(result: JobResult, path: Path) -> bool:
    """Plot each instance's partitions over time; False if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = sorted(result.instances, key=lambda n: int(n[1:]) if n[1:].isdigit() else n)
    figure, axes = plt.subplots(figsize=(9, 1 + 0.5 * len(names)))
    for row, name in enumerate(names):
        log = result.instances[name]
        axes.barh(
            row,
            log.stopped - log.started,
            left=log.started - result.started,
            color="#dddddd",
            height=0.8,
        )
        for _, computed, started, finished in log.partitions:
            axes.barh(
                row,
                max(finished - started, 1e-3),
                left=started - result.started,
                color="#1f77b4" if computed else "#2ca02c",
                height=0.6,
            )
        if log.died:
            axes.plot(log.stopped - result.started, row, "rx")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("seconds since the job started")
    axes.set_title("batch job: instance lifetime (grey), partitions run (blue) / restored (green)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
