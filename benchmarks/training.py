"""Confidential training step time: coordinator only vs offloaded in the clear, obfuscated, exact.

Usage: ``.venv/bin/python benchmarks/training.py [--quick]``. Writes
``benchmarks/results/training.json`` and ``training.png``.

Workload: the digits models ``sealfn train`` trains (MLP 64-128-10; CNN conv3x3(1->16), BN, ReLU,
pool, conv3x3(16->32), BN, ReLU, pool, linear(128->10); convolutions as im2col products), float32,
SGD with momentum, mini-batches of 64 and 256. Arms, all in one run on the same batches:

* ``local``: every product inside the coordinator (the TEE-only baseline);
* ``plain``: products on one worker process, operands in the clear, results unchecked;
* ``obfuscated``: Tempo permutation-scaling, fresh keys per product, key-shift backward,
  Freivalds checks (k = 2) on every result;
* ``obfuscated-no-shift``: the same with fresh keys for both backward products;
* ``exact``: fixed point mod P with four-role additive masks (all roles on the one worker here);
* CNN only, convolutions offloaded whole instead of as im2col products: ``plain-channel``
  (operands in the clear, the worker runs conv2d) and ``obfuscated-channel`` (channel-level
  keys, ``--conv channel``); compare these two with each other.

Ratios: for each round, each arm's median step time over the plain arm's (the same lowering's:
``obfuscated-channel`` over ``plain-channel``) in that round; the JSON gives the median of those
per-round ratios and their range, besides the ratio of the medians over all rounds.

Then one square Linear layer (batch 256, width 128 to 2048), forward + backward, local vs plain
vs obfuscated: the per-product encoding, hashing and Freivalds work is O(mn + np + mp), the
product O(mnp), so the obfuscation overhead shrinks as layers grow.

Each arm gets its own trainer and warms up for 3 steps; then the arms take turns, ``--steps``
steps each, for ``--rounds`` rounds, so load from other processes falls on all arms alike. A
step's time is the wall clock of forward, backward and optimizer step. Crypto counts are per step.

THIS MACHINE HAS NO GPU: the worker is a CPU process and it shares the same cores with the
coordinator (one torch thread each), so "offloading" buys no compute here and the IPC, encoding
and verification overheads are all that the numbers show.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from sealfn.training.coordinator import TrainConfig, Trainer, batches
from sealfn.training.data import digits
from sealfn.training.exact_engine import ExactEngine
from sealfn.training.offload import (
    Engine,
    LocalEngine,
    ObfuscatedEngine,
    PlainEngine,
    product,
)
from sealfn.training.pool import WorkerOptions, WorkerPool

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ARMS = ("local", "plain", "obfuscated", "obfuscated-no-shift", "exact")
CHANNEL_ARMS = ("plain-channel", "obfuscated-channel")  # CNN only
MODELS = ("mlp", "cnn")
BATCHES = (64, 256)
WARMUP = 3
SWEEP = (128, 512, 1024, 2048)  # square Linear layer widths
SWEEP_BATCH = 256


def engine(arm: str, pool: WorkerPool) -> Engine:
    if arm == "local":
        return LocalEngine()
    if arm.startswith("plain"):
        return PlainEngine(pool, conv="channel" if arm.endswith("channel") else "im2col")
    if arm == "exact":
        return ExactEngine(pool)
    if arm == "obfuscated-channel":
        return ObfuscatedEngine(pool, conv="channel")
    return ObfuscatedEngine(pool, key_shift=arm == "obfuscated")


def baseline(arm: str) -> str:
    return "plain-channel" if arm.endswith("channel") else "plain"


def measure(model: str, batch: int, pool: WorkerPool, rounds: int, steps: int) -> dict[str, Any]:
    config = TrainConfig(model=model, batch_size=batch)
    data = digits()
    feed = [b for epoch in range(1, 50) for b in batches(data, config, epoch) if len(b[1]) == batch]
    all_arms = ARMS + (CHANNEL_ARMS if model == "cnn" else ())
    trainers = {arm: Trainer(config, engine(arm, pool)) for arm in all_arms}
    times: dict[str, list[float]] = {arm: [] for arm in all_arms}
    per_round: dict[str, list[float]] = {arm: [] for arm in all_arms}  # median of each round
    cursor = {arm: 0 for arm in all_arms}

    def run(arm: str, count: int, record: bool) -> None:
        for _ in range(count):
            x, y = feed[cursor[arm] % len(feed)]
            cursor[arm] += 1
            start = time.perf_counter()
            trainers[arm].step(x, y)
            if record:
                times[arm].append(time.perf_counter() - start)

    for arm in all_arms:
        run(arm, WARMUP, record=False)
    before = {arm: dict(trainers[arm].engine.counts.as_dict()) for arm in all_arms}  # type: ignore[union-attr]
    for round_ in range(rounds):
        order = all_arms[round_ % len(all_arms) :] + all_arms[: round_ % len(all_arms)]
        for arm in order:
            run(arm, steps, record=True)
            per_round[arm].append(statistics.median(times[arm][-steps:]))
    arms = {}
    for arm in all_arms:
        counts = trainers[arm].engine.counts.as_dict()  # type: ignore[union-attr]
        per_step = {k: (counts[k] - before[arm][k]) / len(times[arm]) for k in counts}
        ordered = sorted(times[arm])
        arms[arm] = {
            "median_step_ms": 1e3 * statistics.median(ordered),
            "p10_step_ms": 1e3 * ordered[len(ordered) // 10],
            "p90_step_ms": 1e3 * ordered[(9 * len(ordered)) // 10],
            "steps": len(ordered),
            "per_step": per_step,
        }
    for arm in all_arms:
        base = baseline(arm)
        arms[arm]["vs_plain_offloaded"] = arms[arm]["median_step_ms"] / arms[base]["median_step_ms"]
        ratios = sorted(a / b for a, b in zip(per_round[arm], per_round[base], strict=True))
        arms[arm]["vs_plain_per_round"] = {
            "median": statistics.median(ratios),
            "min": ratios[0],
            "max": ratios[-1],
            "rounds": ratios,
        }
    return arms


def layer_sweep(pool: WorkerPool, rounds: int, steps: int) -> dict[str, Any]:
    """One square Linear layer's forward + backward (batch 256) at growing width: where the
    O(mn + np + mp) encoding and checking stop mattering next to the O(mnp) product."""
    sweep: dict[str, Any] = {}
    gen = torch.Generator().manual_seed(0)
    for width in SWEEP:
        x = torch.randn(SWEEP_BATCH, width, generator=gen)
        w = (torch.randn(width, width, generator=gen) / width**0.5).requires_grad_(True)
        dy = torch.randn(SWEEP_BATCH, width, generator=gen)
        arms = {arm: engine(arm, pool) for arm in ("local", "plain", "obfuscated")}
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        for round_ in range(rounds + 1):  # round 0 warms up
            for arm, eng in arms.items():
                for _ in range(steps):
                    start = time.perf_counter()
                    product(x, w, eng).backward(dy)
                    if round_:
                        times[arm].append(time.perf_counter() - start)
                    w.grad = None
        row = {arm: 1e3 * statistics.median(values) for arm, values in times.items()}
        row["obfuscated_vs_plain"] = row["obfuscated"] / row["plain"]
        sweep[str(width)] = row
        print(f"linear {SWEEP_BATCH}x{width}x{width}", {k: round(v, 2) for k, v in row.items()})
    return sweep


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(results["cases"])
    figure, (left, right, sweep) = plt.subplots(1, 3, figsize=(18, 4.5))
    every = ARMS + CHANNEL_ARMS
    width = 0.8 / len(every)
    for i, arm in enumerate(every):
        values = [results["cases"][case].get(arm, {}).get("median_step_ms", 0) for case in cases]
        left.bar([c + i * width for c in range(len(cases))], values, width, label=arm)
    left.set_xticks([c + 0.4 - width / 2 for c in range(len(cases))], cases)  # 0: not run
    left.set(ylabel="median step time (ms, log)", yscale="log", title="step time (CPU only)")
    left.legend(fontsize=8)
    for i, arm in enumerate(("obfuscated", "obfuscated-no-shift")):
        values = [results["cases"][case][arm]["per_step"]["encryptions"] for case in cases]
        right.bar([c + i * 0.4 for c in range(len(cases))], values, 0.4, label=arm)
    right.set_xticks([c + 0.2 for c in range(len(cases))], cases)
    right.set(ylabel="operand encryptions per step", title="key shift")
    right.legend(fontsize=8)
    widths = [int(width) for width in results["linear_sweep"]]
    for arm in ("local", "plain", "obfuscated"):
        values = [results["linear_sweep"][str(width)][arm] for width in widths]
        sweep.plot(widths, values, marker="o", label=arm)
    sweep.set(
        xlabel="Linear width n (batch 256, n x n weight)",
        ylabel="forward + backward (ms, log)",
        xscale="log",
        yscale="log",
        title="one layer, growing width",
    )
    sweep.set_xticks(widths, [str(width) for width in widths])
    sweep.minorticks_off()
    sweep.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 steps (a smoke run)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and plot go")
    args = parser.parse_args()
    rounds, steps = (2, 3) if args.quick else (args.rounds, args.steps)
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "gpu": torch.cuda.is_available(),
            "note": "CPU only: the worker and the coordinator share the same cores",
            "loadavg_start": os.getloadavg(),
        },
        "rounds": rounds,
        "steps_per_round": steps,
        "cases": {},
    }
    with WorkerPool(1, WorkerOptions(threads=1)) as pool:
        results["machine"]["worker_device"] = pool[0].device
        for model in MODELS:
            for batch in BATCHES:
                case = f"{model} b{batch}"
                results["cases"][case] = measure(model, batch, pool, rounds, steps)
                row = results["cases"][case]
                print(case, {arm: round(v["median_step_ms"], 2) for arm, v in row.items()})
                ratios = {
                    arm: round(v["vs_plain_per_round"]["median"], 2) for arm, v in row.items()
                }
                print("  per-round median ratio to plain", ratios, flush=True)
        results["linear_sweep"] = layer_sweep(pool, rounds, steps)
    results["machine"]["loadavg_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "training.png")
    print(f"wrote {args.out / 'training.json'} and training.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
