"""The loop around `packer.place` for packed groups: functions sharing multi-model instances.

Functions deployed with ``--group G`` join group G: its instances start empty and load models on
demand (LOAD, after UNLOADing LRU idle models to fit the memory budget); `packer.place` decides
per request where it runs, whether to load, start an instance, or wait. Each model keeps its own
queue and learned batch cost; idle models are unloaded per model, empty instances retired.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sealfn.errors import SealfnError, Unavailable
from sealfn.ipc.frames import Kind
from sealfn.runtime import batcher, packer
from sealfn.runtime.function import Function, Pending
from sealfn.runtime.group import Group
from sealfn.runtime.handle import InstanceHandle
from sealfn.runtime.lifecycle import Event, InstanceState
from sealfn.runtime.packer import PlacementKind

if TYPE_CHECKING:
    from sealfn.runtime.pool import Pool

log = logging.getLogger("sealfn.packing")
START_S = 0.3  # seconds a new instance takes to start (spawn + imports), before its first load
REPLICA_RETRY_S = 30.0  # after a replica failed to load, no replica of that model for this long


def join(pool: Pool, function: Function) -> Group:
    """Put ``function`` in its group (made on first use)."""
    name = function.spec.group or function.name
    group = pool.groups.setdefault(name, Group(name))
    group.members[function.name] = function
    function.group = group
    return group


async def leave(pool: Pool, function: Function) -> None:
    """Unload ``function``'s model everywhere; retire the group's instances if it is empty."""
    group = function.group
    if group is None:
        return
    group.members.pop(function.name, None)
    for instance in group.alive():
        if function.name in instance.models and instance.state is not InstanceState.DRAINING:
            await unload(instance, function.name)
    if not group.members:
        instances = group.alive()
        for instance in instances:
            pool._retire(function, instance)
        await pool._wait_gone(instances)
        pool.groups.pop(group.name, None)


def pump(pool: Pool, group: Group) -> None:
    """Place queued requests of every member, oldest head first, until nothing moves; then,
    with nothing left waiting, load the replicas `packer.replicate` asks for. A group whose
    members are all gone (an instance that finishes booting or exits after the last undeploy)
    has nothing to place or replicate."""
    if not group.members:
        return
    moved = True
    while moved:
        moved = False
        for function in _by_oldest_head(group):
            moved |= _place_head(pool, group, function)
    if not _by_oldest_head(group):
        _replicate(pool, group)


def _replicate(pool: Pool, group: Group) -> None:
    """Load replicas ahead of demand (or start an instance for one), until none is asked for."""
    while True:
        now = pool.clock()
        peaks = {
            name: rate
            for name, rate in group.demand.peak_rps(now).items()
            if name in group.members and group.replica_retry_at.get(name, 0.0) <= now
        }
        costs = group.costs()
        replica = packer.replicate(group.views(), peaks, costs, group.policy(START_S), now)
        if replica is None:
            return
        function = group.members[replica.model]
        if replica.instance is None:
            log.info(
                "starting packed instance for a replica of %s: %s", function.name, replica.reason
            )
            _start(pool, group, function.name)
            continue
        instance = group.instances[str(replica.instance)]
        log.info("replica of %s on %s: %s", function.name, instance.id, replica.reason)
        instance.reserve(now, function.name)
        instance.loading.add(function.name)
        pool._spawn(_load_replica(pool, group, function, instance, replica.evict))


async def _load_replica(
    pool: Pool, group: Group, function: Function, instance: InstanceHandle, evict: tuple[str, ...]
) -> None:
    """UNLOAD the surplus copies `replicate` chose, LOAD the model; a failure only logs (the
    model still loads on demand)."""
    try:
        await _make_room_and_load(pool, group, function, instance, evict)
    except SealfnError as exc:
        log.warning("replica of %s on %s failed: %s", function.name, instance.id, exc.message)
        group.replica_retry_at[function.name] = pool.clock() + REPLICA_RETRY_S
    finally:
        instance.loading.discard(function.name)
        instance.release(pool.clock(), function.name)
    pump(pool, group)


def _place_head(pool: Pool, group: Group, function: Function) -> bool:
    queue = function.queue
    while queue and queue[0].future.done():
        queue.popleft()
    if not queue or function.removed:
        return False
    now = pool.clock()
    costs = group.costs()
    placement = packer.place(
        costs[function.name], group.views(), len(queue), group.policy(START_S), now, costs
    )
    kind = placement.kind
    if kind is PlacementKind.QUEUE:
        return False
    if kind is PlacementKind.START_INSTANCE:
        _start(pool, group, function.name)
        return True
    instance = group.instances[str(placement.instance)]
    if placement.claim:
        group.claims[instance.id] = function.name
    batch = _take(function, instance, now)
    instance.reserve(now, function.name)
    if kind is PlacementKind.RUN:
        pool._run_batch(function, instance, batch)
    else:
        instance.loading.add(function.name)
        pool._spawn(_load_then_run(pool, group, function, instance, placement.evict, batch))
    return True


def _take(function: Function, instance: InstanceHandle, now: float) -> list[Pending]:
    free = max(1, instance.capacity - instance.in_flight)
    arrivals = [p.arrived for p in function.queue]
    size = max(1, batcher.next_batch(arrivals, free, function.policy, function.estimate, now))
    return [function.queue.popleft() for _ in range(min(size, len(function.queue)))]


async def _load_then_run(  # noqa: PLR0917 - one placement's parts, passed once
    pool: Pool,
    group: Group,
    function: Function,
    instance: InstanceHandle,
    evict: tuple[str, ...],
    batch: list[Pending],
) -> None:
    """Make room (UNLOAD the LRU idle models the packer chose), LOAD, then run the batch."""
    try:
        await _make_room_and_load(pool, group, function, instance, evict)
    except SealfnError as exc:
        instance.loading.discard(function.name)
        instance.release(pool.clock(), function.name)
        log.warning("loading %s on %s failed: %s", function.name, instance.id, exc.message)
        if instance.connected:  # the model itself cannot load: say so, do not loop
            _fail_all(batch, Unavailable(f"function {function.name!r} cannot load: {exc.message}"))
        else:  # the instance died: its watcher reaps it; another instance will load the model
            function.queue.extendleft(reversed(batch))
        pump(pool, group)
        return
    instance.loading.discard(function.name)
    pool._run_batch(function, instance, batch)


async def _make_room_and_load(
    pool: Pool, group: Group, function: Function, instance: InstanceHandle, evict: tuple[str, ...]
) -> None:
    """UNLOAD ``evict``, LOAD the function's model, and learn its switch cost from the load."""
    for name in evict:
        await unload(instance, name)
    started = pool.clock()
    await instance.load(function.name, str(function.model_path), **pool._sealed_meta(function))
    group.load_s[function.name] = pool.clock() - started


def _start(pool: Pool, group: Group, model: str) -> None:
    now = pool.clock()
    billed = group.memory_mb
    instance = InstanceHandle(f"{group.name}-{next(pool._ids)}", group.concurrency, billed, now)
    instance.loading.add(model)  # the packer counts it as starting for this model
    group.instances[instance.id] = instance
    group.cost.instance_started(instance.id, billed, now)
    log.info("starting packed instance %s for %s", instance.id, model)
    pool._spawn(_boot(pool, group, instance, model))


async def _boot(pool: Pool, group: Group, instance: InstanceHandle, model: str) -> None:
    try:
        async with asyncio.timeout(pool.config.start_timeout_s):
            await pool.launch(instance)
    except (SealfnError, OSError, TimeoutError) as exc:
        log.warning("packed instance %s failed to start: %s", instance.id, exc)
        if instance.worker is not None:
            instance.worker.kill()
        _gone(pool, group, instance)
        pump(pool, group)
        return
    instance.loading.discard(model)  # empty and free: the next placement loads what it needs
    instance.ready_at = pool.clock()
    member = group.members.get(model)
    if member is not None:
        member.cold_starts += 1
        member.cold_start_s.append(instance.ready_at - instance.spawned_at)
        pool.metrics.cold_start(model, instance.ready_at - instance.spawned_at)
    if instance.state is InstanceState.STARTING:
        instance.transition(Event.READY)
    pump(pool, group)
    await _watch(pool, group, instance)


async def _watch(pool: Pool, group: Group, instance: InstanceHandle) -> None:
    worker = instance.worker
    if worker is None:
        return
    await worker.channel.closed
    worker.kill()
    await worker.wait()
    if instance.state is not InstanceState.DRAINING:
        log.warning("packed instance %s exited unexpectedly", instance.id)
    _gone(pool, group, instance)
    pump(pool, group)


def _gone(pool: Pool, group: Group, instance: InstanceHandle) -> None:
    if instance.state is InstanceState.GONE:
        return
    instance.transition(Event.EXITED)
    group.cost.instance_stopped(instance.id, pool.clock())
    group.instances.pop(instance.id, None)
    group.claims.pop(instance.id, None)
    if instance.worker is not None:
        instance.worker.close()


def tick(pool: Pool, group: Group, now: float) -> None:
    """Expire claims, unload models idle past their keep-alive, retire empty idle instances.
    A group with no members left is being retired by `leave`: nothing to do."""
    if not group.members:
        return
    views = group.views()
    costs = group.costs()
    for instance_id in packer.expire_claims(views, costs, group.policy(START_S), now):
        group.claims.pop(instance_id, None)
    for keep_alive in {f.spec.keep_alive_s for f in group.members.values()}:
        for instance_id, name in packer.unload_idle(views, keep_alive, now):
            member = group.members.get(name)
            instance = group.instances.get(instance_id)
            if instance is not None and (member is None or member.spec.keep_alive_s == keep_alive):
                pool._spawn(unload(instance, name))
    _retire_empty(pool, group, now)
    pump(pool, group)


def _retire_empty(pool: Pool, group: Group, now: float) -> None:
    keep_alive = min((f.spec.keep_alive_s for f in group.members.values()), default=0.0)
    empty = [
        i
        for i in group.alive()
        if i.state is InstanceState.IDLE
        and not i.models
        and not i.loading
        and now - i.last_used >= keep_alive
    ]
    surplus = len(group.alive()) - group.min_instances
    for instance in sorted(empty, key=lambda i: i.last_used)[: max(0, surplus)]:
        log.info("retiring empty packed instance %s", instance.id)
        instance.transition(Event.DRAIN)
        if instance.worker is not None:
            instance.worker.channel.send(Kind.STOP, {})


async def unload(instance: InstanceHandle, name: str) -> None:
    if name not in instance.models or instance.model_in_flight.get(name, 0):
        return
    try:
        await instance.unload(name)
    except SealfnError as exc:
        log.warning("unloading %s from %s failed: %s", name, instance.id, exc.message)


def _by_oldest_head(group: Group) -> list[Function]:
    waiting = [f for f in group.members.values() if f.queue]
    return sorted(waiting, key=lambda f: f.queue[0].arrived)


def _fail_all(batch: list[Pending], error: SealfnError) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)
