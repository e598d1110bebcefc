"""The simulated world of the packing benchmark: the 16 models with costs calibrated from real
measurements, and the memory sizes each policy's instances are billed for."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packing_probe import model_costs, start_times
from sealfn.runtime.group import estimated_model_mb
from sealfn.workloads.models import build_examples

SIZES = ("mlp", "resnet18")
LARGE = "resnet18"
LARGE_EVERY = 4  # popularity ranks 0, 4, 8, 12 serve the large model: it spans the popularity
MIN_TIER_MB = 128  # Lambda's smallest memory size


@dataclass(frozen=True)
class SizeCost:
    """One real model, measured: medians over fresh processes."""

    kind: str
    file_mb: float
    load_s: float  # ModelHost.load
    exec_s: float  # batch 1, one onnxruntime thread
    growth_mb: float  # RSS growth of a process from loading it (and running it 5 + 30 times)
    marginal_mb: float  # RSS growth from loading a second copy in the same process


@dataclass(frozen=True)
class Calibration:
    start_s: float  # spawn python and import onnxruntime + numpy (median)
    floor_mb: float  # RSS of an instance with onnxruntime imported and no model (median)
    sizes: dict[str, SizeCost]
    raw: dict[str, Any]  # every sample, for the record


@dataclass(frozen=True)
class Model:
    """A simulated model: a name, the real model it is a copy of, and that model's costs."""

    name: str
    kind: str
    share: float  # of all requests, by its Zipf rank
    memory_mb: float  # what it holds in an instance once loaded
    load_s: float
    exec_s: float


@dataclass(frozen=True)
class World:
    models: dict[str, Model]  # by name, most popular first
    start_s: float  # seconds from spawn to ready for a load
    base_mb: float  # an instance's own memory before any model: runtime + onnxruntime setup
    per_model_mb: dict[str, int]  # (a): billed memory of an instance of each model's own pool
    shared_mb: int  # (b), (c): billed memory of a shared instance
    keep_alive_s: float = 60.0
    max_instances: int = 4  # (b) pool size, (c) PackerPolicy.max_instances

    @property
    def shared_room_mb(self) -> float:
        """MB for loaded models in a shared instance: its memory less its own base."""
        return self.shared_mb - self.base_mb


def calibrate(models_dir: Path, reps: int) -> Calibration:
    """Measure instance start and, per model size, load / exec / memory in fresh processes."""
    examples = build_examples(models_dir)
    starts = start_times(reps)
    raw: dict[str, Any] = {"start_s": starts}
    sizes = {}
    for kind in SIZES:
        path = examples[kind].path
        samples = model_costs(path, reps)
        raw[kind] = samples
        sizes[kind] = SizeCost(
            kind,
            path.stat().st_size / 2**20,
            *(statistics.median(s[k] for s in samples) for k in _SAMPLE_KEYS),
        )
    floor = statistics.median(s["base_mb"] for kind in SIZES for s in raw[kind])
    return Calibration(statistics.median(starts), floor, sizes, raw)


_SAMPLE_KEYS = ("load_s", "exec_s", "growth_mb", "marginal_mb")


def reuse(record_path: Path) -> Calibration:
    """The calibration a previous run recorded in its packing.json (to replay it exactly)."""
    record = json.loads(record_path.read_text())["world"]["calibration"]
    sizes = {kind: SizeCost(**size) for kind, size in record["sizes"].items()}
    return Calibration(record["start_s"], record["floor_mb"], sizes, record["samples"])


def build(calibration: Calibration, shares: list[float]) -> World:
    """The world: model k serves the large model when k % LARGE_EVERY == 0, else the small one.

    onnxruntime's first session in a process pays its own setup (measured as the small model's
    first-load growth less a second copy's); that goes to the instance's base, and a model
    holds its first-load growth less that setup, never less than sealfn's estimate from its
    file (`estimated_model_mb`: 1 MB + 1.2 x the file). Every function gets the smallest
    power-of-two memory tier >= 128 MB that holds its base and model; a shared instance gets the
    largest of them (sealfn: a group's instances take the largest member's memory).
    """
    small = calibration.sizes["mlp"]
    setup_mb = max(0.0, small.growth_mb - small.marginal_mb)
    base = calibration.floor_mb + setup_mb
    models = {}
    for rank, share in enumerate(shares):
        kind = LARGE if rank % LARGE_EVERY == 0 else "mlp"
        size = calibration.sizes[kind]
        memory = max(size.growth_mb - setup_mb, estimated_model_mb(size.file_mb))
        name = f"m{rank:02d}"
        models[name] = Model(name, kind, share, memory, size.load_s, size.exec_s)
    per_model = {name: tier(base + m.memory_mb) for name, m in models.items()}
    return World(models, calibration.start_s, base, per_model, max(per_model.values()))


def tier(mb: float) -> int:
    """The smallest power-of-two memory size >= MIN_TIER_MB that holds ``mb``."""
    return max(MIN_TIER_MB, 1 << math.ceil(math.log2(mb)))


def describe(calibration: Calibration, world: World) -> dict[str, Any]:
    """The calibration and the world, for the JSON record."""
    return {
        "calibration": {
            "start_s": calibration.start_s,
            "floor_mb": calibration.floor_mb,
            "sizes": {k: asdict(v) for k, v in calibration.sizes.items()},
            "samples": calibration.raw,
        },
        "base_mb": world.base_mb,
        "shared_instance_mb": world.shared_mb,
        "shared_room_mb": world.shared_room_mb,
        "keep_alive_s": world.keep_alive_s,
        "max_instances": world.max_instances,
        "models": [
            {**asdict(m), "instance_mb": world.per_model_mb[m.name]} for m in world.models.values()
        ],
    }
