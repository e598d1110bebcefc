"""(c) sealfn's packer driving a simulated pool: the loop of ``sealfn.runtime.packing`` with the
I/O replaced by events, every decision made by ``packer.place``.

As `packing.pump` does: each model has a FIFO queue; after every arrival, completion and
readiness, each model's head is placed, oldest head first, until nothing moves; QUEUE leaves it
queued. What the packer's docstring asks the pool to record, it records: a dispatch and a batch's
end set the model's ``last_used``; ``claim`` records the claim; a STARTING instance lists the
model it is loading. Its ``ready_at`` is left None ("soon"), as sealfn's pool leaves it
(``Group.view``); ``pass_ready_at=True`` fills it in, a sensitivity row: `place` then starts
another instance for a request already waiting on a start whenever ``ready_at`` lies beyond
``now + start_s + switch_s``, even by a rounding error. A tick every 0.25 s (sealfn's
``tick_s``) expires claims, unloads models idle past the keep-alive (`packer.unload_idle`) and
retires empty idle instances.

Unlike sealfn's pool, a started instance loads the model it was started for as part of starting
(sealfn boots it empty, then places a LOAD_AND_RUN on it): the same work, one placement fewer.
The packer is given the models' true costs (what sealfn learns after their first runs).
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from packing_sim import Ledger, Request, Sim
from packing_world import World
from sealfn.runtime import packer
from sealfn.runtime.demand import DemandMeter
from sealfn.runtime.lifecycle import InstanceState
from sealfn.runtime.packer import ModelCost, PackedInstance, PackerPolicy, Placement, PlacementKind

TICK_S = 0.25  # sealfn's control loop period (Config.tick_s)


class PlacementError(RuntimeError):
    """`packer.place` asked for something the pool cannot do (a bug in the packer or here)."""


@dataclass
class _Held:
    last_used: float
    in_flight: int = 0
    since: float | None = None  # when its running batch started computing (after any load)


@dataclass(eq=False)
class _Instance:
    id: str
    state: InstanceState
    models: dict[str, _Held] = field(default_factory=dict)
    claimed_by: str | None = None
    ready_at: float | None = None
    last_used: float = 0.0

    @property
    def free(self) -> bool:
        serving = self.state in (InstanceState.IDLE, InstanceState.WARM)
        return serving and not any(h.in_flight for h in self.models.values())

    def view(self, memory: dict[str, float], ready_at: bool) -> PackedInstance:
        loaded = tuple(
            packer.LoadedModel(name, memory[name], held.last_used, held.in_flight, held.since)
            for name, held in sorted(self.models.items())
        )
        expected = self.ready_at if ready_at else None
        return PackedInstance(self.id, self.state, 1, loaded, self.claimed_by, expected)


class SealfnPacker:
    def __init__(
        self,
        sim: Sim,
        ledger: Ledger,
        world: World,
        *,
        room_mb: float,
        billed_mb: int,
        pass_ready_at: bool = False,
        replicate: bool = True,
    ) -> None:
        self.sim, self.ledger, self.world = sim, ledger, world
        self.billed_mb = billed_mb
        self.pass_ready_at = pass_ready_at
        self.policy = PackerPolicy(world.max_instances, room_mb, start_s=world.start_s)
        self.costs = {
            name: ModelCost(name, m.memory_mb, m.load_s, m.exec_s)
            for name, m in world.models.items()
        }
        self.memory = {name: m.memory_mb for name, m in world.models.items()}
        self.queues: dict[str, deque[Request]] = {m: deque() for m in world.models}
        self.instances: dict[str, _Instance] = {}
        self.decisions: Counter[str] = Counter()  # placement kind: reason -> count
        self._ids = itertools.count()
        self.demand = DemandMeter(window_s=world.keep_alive_s) if replicate else None
        sim.every(TICK_S, self._tick)

    def arrive(self, request: Request) -> None:
        self.queues[request.model].append(request)
        if self.demand is not None:
            self.demand.arrived(request.model, self.sim.now)
        self._pump()

    # ---- the loop around `place` -----------------------------------------------------------

    def _pump(self) -> None:
        moved = True
        while moved:
            moved = False
            waiting = [m for m, q in self.queues.items() if q]
            for model in sorted(waiting, key=lambda m: self.queues[m][0].arrived):
                moved |= self._place_head(model)
        if not any(self.queues.values()):
            self._replicate()

    def _replicate(self) -> None:
        """While nothing waits: load the replicas `packer.replicate` asks for, one per call."""
        if self.demand is None:
            return
        now = self.sim.now
        while True:
            peaks = self.demand.peak_rps(now)
            replica = packer.replicate(self._views(), peaks, self.costs, self.policy, now)
            if replica is None:
                return
            if replica.instance is None:
                self.decisions["replicate: start an instance"] += 1
                self._start(replica.model)
                continue
            self.decisions["replicate: " + replica.reason.split(" at ")[0]] += 1
            instance = self.instances[str(replica.instance)]
            for victim in replica.evict:
                self._unload(instance, victim)
            held = instance.models[replica.model] = _Held(now, in_flight=1)
            instance.state = InstanceState.WARM
            self.ledger.loaded()
            self.ledger.holds(instance.id, instance.models)
            done = self._loaded_later(instance, held)
            self.sim.after(self.costs[replica.model].switch_s, done)

    def _loaded_later(self, instance: _Instance, held: _Held) -> Callable[[], None]:
        return lambda: self._loaded(instance, held)

    def _loaded(self, instance: _Instance, held: _Held) -> None:
        held.in_flight -= 1
        held.last_used = instance.last_used = self.sim.now
        if instance.free:
            instance.state = InstanceState.IDLE
        self._pump()

    def _place_head(self, model: str) -> bool:
        queue = self.queues[model]
        if not queue:
            return False
        views = self._views()
        now = self.sim.now
        placement = packer.place(self.costs[model], views, len(queue), self.policy, now, self.costs)
        self.decisions[_label(placement)] += 1
        if placement.kind is PlacementKind.QUEUE:
            return False
        if placement.kind is PlacementKind.START_INSTANCE:
            self._start(model)
        else:
            self._dispatch(placement, model, queue.popleft())
        return True

    def _views(self) -> list[PackedInstance]:
        return [i.view(self.memory, self.pass_ready_at) for i in self.instances.values()]

    def _start(self, model: str) -> None:
        self.__dict__.setdefault("_starts", []).append((self.sim.now, model))
        ready_at = self.sim.now + self.world.start_s + self.costs[model].switch_s
        instance = _Instance(f"c{next(self._ids)}", InstanceState.STARTING, ready_at=ready_at)
        instance.models[model] = _Held(self.sim.now)
        self.instances[instance.id] = instance
        self.ledger.started(instance.id, self.billed_mb, (model,), self.sim.now)
        self.ledger.loaded()
        self.sim.at(ready_at, lambda: self._ready(instance, model))

    def _ready(self, instance: _Instance, model: str) -> None:
        instance.state, instance.ready_at = InstanceState.IDLE, None
        instance.models[model].last_used = instance.last_used = self.sim.now
        self._pump()

    def _dispatch(self, placement: Placement, model: str, request: Request) -> None:
        instance = self._target(placement, model)
        now = self.sim.now
        delay = self.costs[model].exec_s
        if placement.kind is PlacementKind.LOAD_AND_RUN:
            for victim in placement.evict:
                self._unload(instance, victim)
            instance.models[model] = _Held(now)
            self.ledger.loaded()
            self.ledger.holds(instance.id, instance.models)
            delay += self.costs[model].switch_s
        if placement.claim:
            instance.claimed_by = model
        held = instance.models[model]
        held.in_flight += 1
        held.last_used = instance.last_used = now
        held.since = now + (delay - self.costs[model].exec_s)
        instance.state = InstanceState.WARM
        self.sim.after(delay, lambda: self._done(instance, model, request))

    def _target(self, placement: Placement, model: str) -> _Instance:
        """The instance `place` named, checked: serving, free, and holding the model for RUN."""
        instance = self.instances.get(str(placement.instance))
        if instance is None or not instance.free:
            state = None if instance is None else (instance.state, instance.models)
            raise PlacementError(f"{placement} for {model}: instance not free: {state}")
        if placement.kind is PlacementKind.RUN and model not in instance.models:
            raise PlacementError(f"{placement} for {model}: model not loaded there")
        return instance

    def _done(self, instance: _Instance, model: str, request: Request) -> None:
        now = self.sim.now
        held = instance.models[model]
        held.in_flight -= 1
        held.last_used = instance.last_used = now
        held.since = None
        instance.state = InstanceState.IDLE
        self.ledger.served(request, now)
        self._pump()

    def _unload(self, instance: _Instance, model: str) -> None:
        held = instance.models.get(model)
        if held is None or held.in_flight:
            raise PlacementError(f"cannot unload {model} from {instance.id}: busy or absent")
        del instance.models[model]
        self.ledger.holds(instance.id, instance.models)

    # ---- the control tick ------------------------------------------------------------------

    def _tick(self) -> None:
        now = self.sim.now
        views = self._views()
        for instance_id in packer.expire_claims(views, self.costs, self.policy, now):
            self.instances[instance_id].claimed_by = None
        for instance_id, model in packer.unload_idle(views, self.world.keep_alive_s, now):
            self._unload(self.instances[instance_id], model)
        self._retire_empty(now)
        self._pump()

    def _retire_empty(self, now: float) -> None:
        for instance in list(self.instances.values()):
            idle = instance.state is InstanceState.IDLE and not instance.models
            if idle and now - instance.last_used >= self.world.keep_alive_s:
                del self.instances[instance.id]
                self.ledger.stopped(instance.id, now)


def _label(placement: Placement) -> str:
    """The placement's kind and reason, without the instance ids and times in it."""
    reason = placement.reason
    if " frees in ~" in reason:
        reason = "a holder frees sooner than the model loads elsewhere"
    return f"{placement.kind.value}: {reason}"
