"""Trace-driven Fn-Packer benchmark: one bursty trace over 16 models, replayed against three
placement policies in a discrete-event simulation calibrated from real measurements.

Usage: .venv/bin/python benchmarks/packing.py [--quick] [--seed N] [--calibration JSON]
                                              [--group-mb MB] [--max-instances N] [--seeds LIST]
Writes benchmarks/results/packing.json and packing.png (+ packing_frontier.png). The replay is
deterministic given the calibration and the seed; ``--calibration`` reuses a previous
packing.json's measurements.

The simulation. Time is simulated (an event queue, no sleeping). An instance is a process with
capacity for one batch at a time; every request is one batch of 1 (no batching in any policy,
so only placement differs). Starting an instance takes ``start_s`` (spawn python + import
onnxruntime and numpy, measured); loading a model takes its measured ``ModelHost.load`` time;
a batch takes its measured batch-1 exec time (one onnxruntime thread: a 1-vCPU function).
Instances do not slow each other down (each has its own CPU). Latency is arrival to result:
queueing + start + load + exec; no network or IPC. An instance is billed its memory size for its
whole life, start to stop, as Lambda bills GB-seconds; idle instances (and in (c) idle models)
go after a 60 s keep-alive. Billing stops when the last request is served.

The world. Model rank k of 16 (Zipf popularity, s = 1.1) is a copy of resnet18 (47 MB) when
k % 4 == 0 (ranks 0, 4, 8, 12: 4 large, spanning popularity), else of the tiny MLP (12 small).
Models load through their host-optimized copies (`sealfn.instance.hostopt`), as sealfn
instances do by default, in every policy. A function's memory is the smallest power-of-two tier
>= 128 MB holding the instance's own base (runtime RSS + onnxruntime's setup) and its model; the
shared instances of (b) and (c) are ``--group-mb`` each (the group's ``--memory-mb``; default 192:
the instance's base plus two ResNets and all twelve MLPs as sealfn counts them) and at most
``--max-instances`` (default 4) of them. The trace is a
Markov-modulated Poisson process: calm 5 req/s, bursts of 50 req/s, mean dwell 40 s / 8 s.

The policies: (a) one pool per model, unbounded, scale from zero, a request that finds no free
instance waits for the one it starts (OpenWhisk, Lambda) (packing_baselines.py); (b) SeSeMI's
Fn-Packer, 4 functions, one model cached each, fails when all are busy (packing_baselines.py);
(c) sealfn's `packer.place`, at most 4 instances, queues instead of failing (packing_sealfn.py).
Sensitivity rows, not targets: (a') as (a) but requests share a per-model FIFO queue and take
whichever instance frees first; (c') as (c) with instances big enough for every model at once;
(c*) as (c) with STARTING instances' ``ready_at`` filled in (sealfn's pool leaves it None).

The frontier: GB-s and p99 against (a) over ``--seeds`` traces for (b) and (c) at group sizes
128/192/224/256 MB (Lambda bills memory in 1 MB steps; (a)'s functions are 128 MB at any step)
and caps 3-7 instances (simulation only): one run shows which settings meet which target, and
whether any meets both (the figure packing_frontier.png). Beside them a bound, (c-roomy): (c)
with room for every model in every instance at caps 3 and 4, what any placement on that many
one-batch instances can at best do for the tail; "% over (a)'s p99" is the share of requests
slower than (a)'s p99 (p99 no worse than (a) allows at most 1%).

Real PSS: the instances alive at each policy's peak of resident memory are started as real
processes holding the models they held (at most 16; beyond that the total is extrapolated from
the mean PSS of instances holding the same kinds of models).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from packing_baselines import PerModelPools, SesemiPacker
from packing_plot import plot, plot_frontier
from packing_probe import held_pss
from packing_sealfn import SealfnPacker
from packing_sim import Ledger, replay
from packing_trace import Trace, TraceConfig, generate, popularity
from packing_world import World, build, calibrate, describe, reuse, tier
from sealfn.report import table

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODELS = HERE / ".models"
PSS_CAP = 16  # real instance processes per policy, at most

A, B, C = "a per-model", "b SeSeMI", "c sealfn"
# sensitivity rows, not targets
A_FIFO, C_ROOMY, C_READY = "a' per-model FIFO", "c' sealfn roomy", "c* sealfn ready_at"


def policies(world: World) -> dict[str, Any]:
    """Each policy's factory: given the sim and its ledger, the policy."""
    roomy_mb = tier(world.base_mb + sum(m.memory_mb for m in world.models.values()))

    def sealfn(room_mb: float, billed_mb: int, ready_at: bool = False) -> Any:
        return lambda sim, ledger: SealfnPacker(
            sim, ledger, world, room_mb=room_mb, billed_mb=billed_mb, pass_ready_at=ready_at
        )

    return {
        A: lambda sim, ledger: PerModelPools(sim, ledger, world),
        B: lambda sim, ledger: SesemiPacker(sim, ledger, world),
        C: sealfn(world.shared_room_mb, world.shared_mb),
        A_FIFO: lambda sim, ledger: PerModelPools(sim, ledger, world, fifo=True),
        C_ROOMY: sealfn(roomy_mb - world.base_mb, roomy_mb),
        C_READY: sealfn(world.shared_room_mb, world.shared_mb, ready_at=True),
    }


def run(world: World, trace: Trace) -> dict[str, dict[str, Any]]:
    """Replay the trace against every policy; one result dict each."""
    names = list(world.models)
    arrivals = [(a.at, names[a.model]) for a in trace.arrivals]
    memory = {name: m.memory_mb for name, m in world.models.items()}
    results = {}
    for label, factory in policies(world).items():
        started = time.perf_counter()
        ledger = Ledger(world.base_mb, memory)
        result, policy = replay(arrivals, factory, ledger, trace.config.duration_s)
        result["wall_s"] = time.perf_counter() - started
        decisions = getattr(policy, "decisions", None)
        if decisions is not None:
            result["decisions"] = dict(decisions.most_common())
        results[label] = result
    return results


# ---- real memory ------------------------------------------------------------------------------


def real_pss(world: World, placement: list[list[str]], cap: int) -> dict[str, Any]:
    """PSS of real processes holding ``placement`` (model names per instance); at most ``cap``
    processes, each kind of instance (the sorted kinds of its models) measured at least once
    when the cap allows; the rest extrapolated by kind."""
    kinds = [tuple(sorted(world.models[m].kind for m in models)) for models in placement]
    chosen = _spread(kinds, cap)
    paths = {kind: MODELS / f"{kind}.onnx" for kind in ("mlp", "resnet18")}
    measured = held_pss([[paths[k] for k in kinds[i]] for i in chosen])
    by_kind: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for index, memory in zip(chosen, measured, strict=True):
        by_kind[kinds[index]].append(memory["pss_mib"])
    overall = statistics.mean(m["pss_mib"] for m in measured) if measured else 0.0
    estimate = sum(statistics.mean(by_kind[k]) if by_kind[k] else overall for k in kinds)
    return {
        "instances": len(placement),
        "processes": len(chosen),
        "measured_pss_mib": sum(m["pss_mib"] for m in measured),
        "measured_rss_mib": sum(m["rss_mib"] for m in measured),
        "total_pss_mib": estimate,
        "extrapolated": len(chosen) < len(placement),
    }


def _spread(kinds: list[tuple[str, ...]], cap: int) -> list[int]:
    """Up to ``cap`` instance indexes, taking each kind in turn so that every kind shows up."""
    queues: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, kind in enumerate(kinds):
        queues[kind].append(index)
    chosen: list[int] = []
    while len(chosen) < min(cap, len(kinds)):
        for queue in queues.values():
            if queue and len(chosen) < cap:
                chosen.append(queue.pop(0))
    return sorted(chosen)


# ---- the figures to reach ---------------------------------------------------------------------


def targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    a, b, c = results[A], results[B], results[C]
    gb = a["gb_s"] / c["gb_s"] if c["gb_s"] else None
    cold = a["cold_starts"] / c["cold_starts"] if c["cold_starts"] else None
    return [
        _target("GB-s (a)/(c)", gb, ">= 3", gb is not None and gb >= 3),
        _target("cold starts (a)/(c)", cold, ">= 5", cold is not None and cold >= 5),
        _target("p99 (c) vs (a), s", (c["p99_s"], a["p99_s"]), "c <= a", c["p99_s"] <= a["p99_s"]),
        _target("p99 (c) vs (b), s", (c["p99_s"], b["p99_s"]), "c < b", c["p99_s"] < b["p99_s"]),
        _target(
            "failures (c) vs (b)",
            (c["failures"], b["failures"]),
            "c < b",
            c["failures"] < b["failures"],
        ),
    ]


def _target(what: str, value: Any, target: str, met: bool) -> dict[str, Any]:
    return {"what": what, "value": value, "target": target, "met": bool(met)}


# ---- output -------------------------------------------------------------------------------------


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        [
            label,
            r["gb_s"],
            r["cold_starts"],
            r["model_loads"],
            r["p50_s"] * 1e3,
            r["p99_s"] * 1e3,
            r["p999_s"] * 1e3,
            r["failures"],
            r["unserved"],
            r["peak_instances"],
            r["peak_billed_mb"],
            r["peak_resident_mb"],
            r.get("pss", {}).get("total_pss_mib"),
        ]
        for label, r in results.items()
    ]
    headers = [
        "policy",
        "GB-s",
        "starts",
        "loads",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "failed",
        "unserved",
    ]
    headers += ["peak inst", "peak billed MB", "peak resident MB", "peak PSS MiB"]
    return table(headers, rows)


# group MB, max instances. Group sizes need not be powers of two (Lambda bills memory in 1 MB
# steps from 128 MB); (a)'s functions stay at 128 MB either way (base + a ResNet < 128 MB).
FRONTIER = [(mb, n) for mb in (128, 192, 224, 256) for n in range(3, 8)]
BOUND_CAPS = (3, 4)  # (c) with room for every model in every instance: the best placement can do


def frontier(calibration: Any, seeds: list[int], duration_s: float) -> list[dict[str, Any]]:
    """(b) and (c) at every FRONTIER setting against (a), per seed: the ratios the targets use."""
    return [row for seed in seeds for row in _frontier_seed(calibration, seed, duration_s)]


def _frontier_seed(calibration: Any, seed: int, duration_s: float) -> list[dict[str, Any]]:
    config = TraceConfig(duration_s=duration_s, seed=seed)
    world = build(calibration, popularity(config.models, config.zipf_s))
    names = list(world.models)
    arrivals = [(a.at, names[a.model]) for a in generate(config).arrivals]
    memory = {name: m.memory_mb for name, m in world.models.items()}

    def replay_one(factory: Any) -> tuple[dict[str, Any], list[float]]:
        ledger = Ledger(world.base_mb, memory)
        return replay(arrivals, factory, ledger, duration_s)[0], ledger.latencies

    def sealfn_in(w: World) -> Any:
        return lambda sim, ledger: SealfnPacker(
            sim, ledger, w, room_mb=w.shared_room_mb, billed_mb=w.shared_mb
        )

    a, _ = replay_one(lambda sim, ledger: PerModelPools(sim, ledger, world))
    settings = [("b", mb, cap) for mb, cap in FRONTIER] + [("c", mb, cap) for mb, cap in FRONTIER]
    roomy = tier(world.base_mb + sum(m.memory_mb for m in world.models.values()))
    settings += [("c-roomy", roomy, cap) for cap in BOUND_CAPS]
    rows = []
    for policy, group_mb, cap in settings:
        w = dataclasses.replace(world, shared_mb=group_mb, max_instances=cap)
        factory = (lambda sim, ledger, w=w: SesemiPacker(sim, ledger, w)) if policy == "b" else None
        r, latencies = replay_one(factory or sealfn_in(w))
        over = sum(latency > a["p99_s"] + 1e-9 for latency in latencies)
        rows.append(
            {
                "seed": seed,
                "policy": policy,
                "group_mb": group_mb,
                "max_instances": cap,
                "gb_s_ratio": a["gb_s"] / r["gb_s"],
                "cold_ratio": a["cold_starts"] / max(1, r["cold_starts"]),
                "p99_ms": r["p99_s"] * 1e3,
                "a_p99_ms": a["p99_s"] * 1e3,
                "over_a_p99": over / max(1, len(latencies)),  # p99 <= (a)'s needs <= 1%
                "failures": r["failures"],
            }
        )
    return rows


def frontier_table(rows: list[dict[str, Any]]) -> str:
    """Per setting of (c) (and the room-for-everything bound): how many seeds meet each target,
    and the ranges."""
    out = []
    settings = sorted({(r["policy"], r["group_mb"], r["max_instances"]) for r in rows})
    for policy, group_mb, cap in settings:
        if policy == "b":
            continue
        mine = [
            r
            for r in rows
            if (r["policy"], r["group_mb"], r["max_instances"]) == (policy, group_mb, cap)
        ]
        gb = [r["gb_s_ratio"] for r in mine]
        p99 = [r["p99_ms"] / r["a_p99_ms"] for r in mine]
        over = [100 * r["over_a_p99"] for r in mine]
        both = sum(
            r["gb_s_ratio"] >= 3 and r["cold_ratio"] >= 5 and r["p99_ms"] <= r["a_p99_ms"]
            for r in mine
        )
        out.append(
            [
                f"({policy}) {group_mb} MB x {cap}",
                f"{min(gb):.2f}-{max(gb):.2f}",
                f"{min(p99):.2f}-{max(p99):.2f}",
                f"{min(over):.2f}-{max(over):.2f}",
                sum(g >= 3 for g in gb),
                sum(p <= 1 for p in p99),
                both,
            ]
        )
    headers = ["setting", "GB-s (a)/x", "p99 x/(a)", "% over (a)'s p99", "GB-s >= 3", "p99 <= (a)"]
    return table([*headers, "all targets"], out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-minute trace, 1 calibration run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", type=Path, help="reuse this packing.json's costs")
    parser.add_argument("--group-mb", type=int, default=192, help="(b), (c): MB per instance")
    parser.add_argument("--max-instances", type=int, default=4, help="(b), (c): instance cap")
    seeds = ",".join(map(str, range(10)))
    parser.add_argument("--seeds", default=seeds, help="traces for the frontier sweep")
    args = parser.parse_args()
    began = time.perf_counter()
    config = TraceConfig(duration_s=120.0 if args.quick else 600.0, seed=args.seed)
    if args.calibration is not None:
        calibration = reuse(args.calibration)
    else:
        calibration = calibrate(MODELS, reps=1 if args.quick else 3)
    world = build(calibration, popularity(config.models, config.zipf_s))
    world = dataclasses.replace(world, shared_mb=args.group_mb, max_instances=args.max_instances)
    trace = generate(config)
    results = run(world, trace)
    seeds = [int(seed) for seed in args.seeds.split(",") if seed]
    sweep = frontier(calibration, seeds, config.duration_s)
    cap = 4 if args.quick else PSS_CAP
    for label in (A, B, C):
        results[label]["pss"] = real_pss(world, results[label]["peak_placement"], cap)
    goals = targets(results)
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "trace": {
            **vars(config),
            "requests": len(trace.arrivals),
            "per_model": trace.counts(),
            "bursts": trace.bursts,
            "per_second": trace.per_second(),
        },
        "world": describe(calibration, world),
        "policies": results,
        "targets": goals,
        "frontier": sweep,
        "run_s": time.perf_counter() - began,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "packing.json").write_text(json.dumps(record, indent=1, default=str))
    title = f"{len(trace.arrivals)} requests, 16 models, {config.duration_s:g} s simulated"
    title += f", seed {config.seed}" + (" (--quick)" if args.quick else "")
    plot(RESULTS / "packing.png", results, trace.per_second(), trace.bursts, title)
    plot_frontier(RESULTS / "packing_frontier.png", sweep)
    print(summary_table(results))
    print(f"\nfrontier over seeds {seeds} (simulation only):")
    print(frontier_table(sweep))
    for goal in goals:
        print(f"{'met' if goal['met'] else 'NOT MET'}: {goal['what']} = {goal['value']}")
    print(f"run {record['run_s']:.1f}s; wrote {RESULTS / 'packing.json'} and packing.png")


if __name__ == "__main__":
    main()
