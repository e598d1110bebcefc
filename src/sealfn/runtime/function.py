"""Per-function state the pool keeps: its spec, queue, instances, learned cost model and stats."""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sealfn.config import FunctionSpec
from sealfn.runtime.autoscaler import AutoscalerConfig, AutoscalerState, Sample
from sealfn.runtime.batcher import BatchPolicy, ExecEstimate
from sealfn.runtime.cost import CostMeter
from sealfn.runtime.handle import InstanceHandle, Reply
from sealfn.runtime.lifecycle import ALIVE, SERVING, InstanceState
from sealfn.signature import ModelSignature
from sealfn.weights import WEIGHTS_FILE

if TYPE_CHECKING:
    from sealfn.runtime.group import Group

LATENCY_WINDOW = 8192  # requests kept for p50/p99


@dataclass(eq=False, slots=True)
class Pending:
    """One queued request: its input tensors and the future its caller awaits."""

    inputs: Mapping[str, np.ndarray]
    arrived: float
    future: asyncio.Future[Reply]
    attempts: int = 0
    alone: bool = False  # its batch was rejected as invalid: retried in a batch of its own


@dataclass(eq=False)
class Function:
    """A deployed function: everything the data and control loops need about it."""

    spec: FunctionSpec
    model_path: Path
    signature: ModelSignature
    queue: deque[Pending] = field(default_factory=deque)
    instances: dict[str, InstanceHandle] = field(default_factory=dict)
    estimate: ExecEstimate = field(default_factory=ExecEstimate)
    scaler: AutoscalerState = field(default_factory=AutoscalerState)
    samples: deque[Sample] = field(default_factory=deque)
    cost: CostMeter = field(default_factory=CostMeter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    cold_start_s: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    last_start: dict[str, float] = field(default_factory=dict)  # breakdown of the last cold start
    last_request_at: float | None = None
    in_flight_requests: int = 0
    cold_starts: int = 0
    failures: int = 0
    start_failures: int = 0  # consecutive instance starts that failed
    removed: bool = False
    group: Group | None = None  # set for functions deployed with --group (packed instances)

    @property
    def name(self) -> str:
        return self.spec.name

    @functools.cached_property
    def file_mb(self) -> float:
        """The model's size on disk (its file plus its external weights file, if any), read once:
        a deployed version's files never change (a redeploy makes a new Function)."""
        paths = (self.model_path, self.model_path.with_name(WEIGHTS_FILE))
        return sum(p.stat().st_size for p in paths if p.exists()) / 2**20

    @property
    def policy(self) -> BatchPolicy:
        # A model without a dynamic batch dimension cannot be batched along dim 0.
        # (A sealed model's signature is unknown outside the enclave, which batches what stacks.)
        batchable = self.spec.sealed or self.signature.batchable
        batch = self.spec.max_batch if batchable else 1
        return BatchPolicy(max_batch=batch, slo_s=self.spec.slo_ms / 1000.0)

    def scaler_config(self, stable_s: float, panic_s: float, threshold: float) -> AutoscalerConfig:
        return AutoscalerConfig(
            # an instance absorbs `concurrency` batches of up to `max_batch` requests at once
            target_concurrency=float(self.spec.concurrency * self.policy.max_batch),
            min_instances=self.spec.min_instances,
            max_instances=self.spec.max_instances,
            keep_alive_s=self.spec.keep_alive_s,
            stable_window_s=stable_s,
            panic_window_s=panic_s,
            panic_threshold=threshold,
        )

    def alive(self) -> list[InstanceHandle]:
        return [i for i in self.instances.values() if i.state in ALIVE]

    def active(self) -> list[InstanceHandle]:
        """Instances that serve or will serve soon (not draining)."""
        return [i for i in self.alive() if i.state is not InstanceState.DRAINING]

    def serving(self) -> list[InstanceHandle]:
        return [i for i in self.instances.values() if i.state in SERVING]

    def holders(self) -> list[InstanceHandle]:
        """The instances that serve this function: its own, or its packed group's."""
        return self.group.alive() if self.group is not None else self.alive()

    def gb_seconds(self, now: float) -> float:
        """Billed memory x time; a packed group's bill is shared by request count."""
        if self.group is None:
            return self.cost.gb_seconds(now)
        total = sum(f.cost.requests for f in self.group.members.values())
        share = self.cost.requests / total if total else 1.0 / len(self.group.members)
        return self.group.cost.gb_seconds(now) * share

    def by_state(self) -> dict[str, int]:
        counts = {state.value: 0 for state in InstanceState if state is not InstanceState.GONE}
        for instance in self.holders():
            counts[instance.state.value] += 1
        return counts

    def percentiles(self) -> tuple[float | None, float | None]:
        """(p50, p99) of recent request latencies, in seconds."""
        if not self.latencies:
            return None, None
        p50, p99 = np.percentile(np.fromiter(self.latencies, dtype=np.float64), [50, 99])
        return float(p50), float(p99)
