"""One confidential training run end to end: attest, train through workers, plot, export, seal."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sealfn.tee import backend
from sealfn.training import model
from sealfn.training.coordinator import EpochStats, TrainConfig, TrainResult, train, worker_pool
from sealfn.training.export import attest, seal, to_onnx
from sealfn.training.pool import WorkerOptions

# What the coordinator's measurement covers: its own code and everything it imports of sealfn.
COORDINATOR_PACKAGES = (
    "sealfn.training",
    "sealfn.tee",
    "sealfn.ipc",
    "sealfn.sealed_model",
    "sealfn.workloads",
    "sealfn.errors",
    "sealfn.types",
    "sealfn.config",
    "sealfn.privatefile",
)


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    model_id: str = "trained"
    tee: str = "auto"  # "auto" takes hardware if present, else the simulated TEE (logged loudly)
    platform_dir: Path | None = None  # the simulated platform's folder
    progress: bool = True
    worker_threads: int = 0  # torch threads per process; 0: a fair share of this machine's cores


def run(
    config: TrainConfig,
    options: RunOptions,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> dict[str, Any]:
    """Train, then write ``training.png``, ``<model_id>.sealed``/``.key`` and ``report.json``."""
    enclave = backend(
        options.tee,
        platform_dir=options.platform_dir,
        packages=COORDINATOR_PACKAGES,
        config={"role": "training-coordinator"},
    )
    options.out_dir.mkdir(parents=True, exist_ok=True)
    threads = options.worker_threads or share_of_cores(config.workers)
    torch.set_num_threads(threads)
    with worker_pool(config, WorkerOptions(threads=threads)) as pool:
        result = train(config, pool=pool, progress=options.progress, on_epoch=on_epoch)
    plot(result, options.out_dir / "training.png")
    sealed = seal(to_onnx(result.net, model.FEATURES), options.out_dir, options.model_id)
    report = {
        **result.summary(),
        "sealed_model": {"path": str(sealed.sealed), "key_file": str(sealed.key_file)},
        "sealed_sha256": sealed.sha256,
        "attestation": attest(enclave, sealed.sha256),
    }
    (options.out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def share_of_cores(workers: int) -> int:
    """Torch threads each for the coordinator and its CPU workers when they share this machine's
    cores: oversubscribed OpenMP threads spin-wait on each other and make every step many times
    slower. (A GPU worker computes on the GPU; its CPU threads matter little.)"""
    return max(1, (os.cpu_count() or 1) // (workers + 1))


def plot(result: TrainResult, path: Path) -> None:
    """Loss and accuracy per epoch, one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [stats.epoch for stats in result.epochs]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [stats.loss for stats in result.epochs], marker="o")
    left.set(
        xlabel="epoch", ylabel="training loss", title=f"{result.config.model}, {result.config.mode}"
    )
    right.plot(epochs, [s.train_accuracy for s in result.epochs], marker="o", label="train")
    right.plot(epochs, [s.test_accuracy for s in result.epochs], marker="o", label="test")
    right.set(xlabel="epoch", ylabel="accuracy (%)")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
