"""The coordinator's own work per training step, plain vs obfuscated, with the worker in process.

Usage: ``.venv/bin/python benchmarks/training_coordinator.py [--rounds 10] [--json PATH]``.

``benchmarks/training.py`` measures wall-clock steps with a worker process on the same two
shared cores, so its ratios move with the machine's load (the coordinator's checks overlap the
worker's product only while a core is free). This measures what the obfuscated mode adds on the
coordinator alone: the worker's ``Worker.handle`` runs inside this process, requests and replies
are handed over as objects (no frames, no IPC), and each step's CPU time
(``time.process_time``) minus the CPU time spent inside the worker is the coordinator's. Arms
alternate in rounds of 50 steps; the figure is the median over rounds. To compare with an earlier
``sealfn``, run this file with ``PYTHONPATH=<old tree>/src``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from sealfn.training.coordinator import TrainConfig, Trainer, batches
from sealfn.training.data import digits
from sealfn.training.offload import ObfuscatedEngine, PlainEngine
from sealfn.training.wire import WorkReply, WorkRequest
from sealfn.training.worker import Worker

CASES = (("mlp", 64), ("mlp", 256), ("cnn", 64), ("cnn", 256))
STEPS = 50  # per arm and round


class InProcessWorker:
    """A worker handle whose worker runs in this process; it tallies the worker's CPU time."""

    def __init__(self) -> None:
        self.worker = Worker(torch.device("cpu"))
        self.queue: list[WorkRequest] = []
        self.lost = False
        self.index = 0
        self.device = "cpu"
        self.cpu_seconds = 0.0

    def submit(self, request: WorkRequest) -> None:
        self.queue.append(request)

    def collect(self) -> WorkReply:
        start = time.process_time()
        reply = self.worker.handle(self.queue.pop(0))
        self.cpu_seconds += time.process_time() - start
        return reply


class InProcessPool:
    def __init__(self) -> None:
        self.workers = [InProcessWorker()]

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> InProcessWorker:
        return self.workers[0]


def measure(model: str, batch: int, rounds: int) -> dict[str, float]:
    config = TrainConfig(model=model, batch_size=batch)
    data = digits()
    feed = [b for epoch in range(1, 20) for b in batches(data, config, epoch) if len(b[1]) == batch]
    pool = InProcessPool()
    trainers = {
        "plain": Trainer(config, PlainEngine(pool)),  # type: ignore[arg-type]
        "obfuscated": Trainer(config, ObfuscatedEngine(pool)),  # type: ignore[arg-type]
    }
    for trainer in trainers.values():  # warm up (and fill the key pools)
        for x, y in feed[:5]:
            trainer.step(x, y)
    per_round: dict[str, list[float]] = {arm: [] for arm in trainers}
    for _ in range(rounds):
        for arm, trainer in trainers.items():
            worker = pool.workers[0]
            worker.cpu_seconds = 0.0
            start = time.process_time()
            for i in range(STEPS):
                trainer.step(*feed[i % len(feed)])
            spent = time.process_time() - start - worker.cpu_seconds
            per_round[arm].append(1e3 * spent / STEPS)
    plain, obfuscated = (statistics.median(per_round[arm]) for arm in ("plain", "obfuscated"))
    return {"plain_ms": plain, "obfuscated_ms": obfuscated, "extra_ms": obfuscated - plain}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {"loadavg_start": os.getloadavg(), "cases": {}}
    for model, batch in CASES:
        row = measure(model, batch, args.rounds)
        results["cases"][f"{model} b{batch}"] = row
        print(f"{model} b{batch}", {k: round(v, 3) for k, v in row.items()}, flush=True)
    results["loadavg_end"] = os.getloadavg()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
