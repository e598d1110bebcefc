"""A packed group: functions of one runtime sharing a pool of multi-model instances (Fn-Packer)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sealfn.runtime.cost import CostMeter
from sealfn.runtime.demand import DemandMeter
from sealfn.runtime.function import Function
from sealfn.runtime.handle import InstanceHandle
from sealfn.runtime.lifecycle import ALIVE, InstanceState
from sealfn.runtime.packer import LoadedModel, ModelCost, PackedInstance, PackerPolicy

# A session's own memory before any weights: a tiny model's session adds ~0.1 MB of RSS/USS in
# an instance that has one already (measured over 200 sessions; benchmarks/packing.py's
# calibration: "marginal_mb"); 1 MB keeps a margin. Weights take more than their file once
# loaded (prepacked copies, the activation arena): ResNet-18 holds 52.2 MB for a 44.6 MB file.
MODEL_MEMORY_FLOOR_MB = 1.0
WEIGHTS_MEMORY_FACTOR = 1.2  # resident MB per MB of model file
# An empty instance's own memory (Python + onnxruntime): ~63 MB in benchmarks/packing.py's
# calibration. It is billed with the instance but is not room for models.
INSTANCE_OVERHEAD_MB = 64.0
LOAD_MB_PER_S = 200.0  # first guess of load speed, before a load of the model was measured


@dataclass(eq=False)
class Group:
    """Instances shared by the ``members`` functions; placement is `packer.place`'s."""

    name: str
    members: dict[str, Function] = field(default_factory=dict)
    instances: dict[str, InstanceHandle] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)  # instance id → claiming model
    cost: CostMeter = field(default_factory=CostMeter)
    load_s: dict[str, float] = field(default_factory=dict)  # measured switch cost per model
    # recent peak request rates, for replicas ahead of demand (window: the usual keep-alive)
    demand: DemandMeter = field(default_factory=DemandMeter)
    replica_retry_at: dict[str, float] = field(default_factory=dict)  # model -> not before

    @property
    def memory_mb(self) -> int:
        """What one instance of the group is billed for: its largest member's memory size."""
        return max(f.spec.memory_mb for f in self.members.values())

    def policy(self, start_s: float) -> PackerPolicy:
        return PackerPolicy(
            max_instances=max(f.spec.max_instances for f in self.members.values()),
            memory_budget_mb=model_room(self.memory_mb),
            start_s=start_s,
        )

    @property
    def concurrency(self) -> int:
        return max(f.spec.concurrency for f in self.members.values())

    @property
    def min_instances(self) -> int:
        return max(f.spec.min_instances for f in self.members.values())

    def alive(self) -> list[InstanceHandle]:
        return [i for i in self.instances.values() if i.state in ALIVE]

    def costs(self) -> dict[str, ModelCost]:
        return {name: self.model_cost(f) for name, f in self.members.items()}

    def model_cost(self, function: Function) -> ModelCost:
        name = function.name
        measured = [i.model_memory_mb[name] for i in self.alive() if name in i.model_memory_mb]
        size_mb = function.file_mb
        # RSS growth at load misses weights that become resident only when first used (mapped
        # files, lazy allocation): never count a model below the estimate from its file.
        memory = max([estimated_model_mb(size_mb), *measured])
        switch = self.load_s.get(name, 0.02 + size_mb / LOAD_MB_PER_S)
        return ModelCost(name, memory, switch, function.estimate.predict(1))

    def views(self) -> list[PackedInstance]:
        return [self.view(i) for i in self.instances.values() if i.state is not InstanceState.GONE]

    def view(self, instance: InstanceHandle) -> PackedInstance:
        names = sorted(instance.models | instance.loading)
        loaded = tuple(
            LoadedModel(
                name,
                self._estimate_mb(name),
                instance.model_last_used.get(name, instance.spawned_at),
                instance.model_in_flight.get(name, 0),
                self._running_since(instance, name),
            )
            for name in names
        )
        # A crashed instance's channel closes before its process is reaped: route nothing there.
        lost = instance.worker is not None and not instance.connected
        state = InstanceState.GONE if lost else instance.state
        return PackedInstance(
            instance.id, state, instance.capacity, loaded, self.claims.get(instance.id)
        )

    def _running_since(self, instance: InstanceHandle, name: str) -> float | None:
        """When the model's oldest running batch started computing there: its dispatch, plus
        the load when the batch is waiting on one (LOAD_AND_RUN)."""
        started = instance.model_started.get(name)
        if not started:
            return None
        member = self.members.get(name)
        if name in instance.loading and member is not None:
            return started[0] + self.model_cost(member).switch_s
        return started[0]

    def _estimate_mb(self, name: str) -> float:
        member = self.members.get(name)
        return self.model_cost(member).memory_mb if member is not None else MODEL_MEMORY_FLOOR_MB


def estimated_model_mb(file_mb: float) -> float:
    """MB a model of ``file_mb`` holds in an instance, before a load of it was measured; the
    least it is ever counted at."""
    return MODEL_MEMORY_FLOOR_MB + WEIGHTS_MEMORY_FACTOR * file_mb


def model_room(memory_mb: float) -> float:
    """Memory left for models in an instance of ``memory_mb``: the instance's own overhead is
    reserved, but small sizes (tests, tiny models) keep a usable room (never above the size)."""
    return max(memory_mb - INSTANCE_OVERHEAD_MB, min(memory_mb, INSTANCE_OVERHEAD_MB))
