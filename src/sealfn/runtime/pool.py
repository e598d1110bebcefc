"""The instance pool: queues requests per function, dispatches batches, scales instances.

The data path is `infer` → `_pump` (batcher + router decide) → `_run_batch` (sends now) →
instance → `_settle_batch` (called as the reply frame is read).
The control path is `_tick`, run every `tick_s`: sample load, ask the autoscaler, start or retire
instances. Decisions are the pure functions in batcher/router/autoscaler; this module is the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.config import FunctionSpec, ServerConfig
from sealfn.errors import (
    DeadlineExceeded,
    InstanceFailed,
    InvalidInput,
    NotFound,
    SealfnError,
    Unavailable,
)
from sealfn.ipc import trace
from sealfn.ipc.frames import Kind
from sealfn.runtime import autoscaler, batcher, packing, router
from sealfn.runtime.executors.base import Executor, LaunchSpec
from sealfn.runtime.function import Function, Pending
from sealfn.runtime.group import Group
from sealfn.runtime.handle import Batch, BatchLost, InstanceHandle, Reply, check_reply
from sealfn.runtime.lifecycle import SERVING, Event, InstanceState
from sealfn.runtime.metrics import Metrics
from sealfn.signature import ModelSignature

log = logging.getLogger("sealfn.pool")

MAX_START_FAILURES = 3  # consecutive failed starts before queued requests are failed
STOP_GRACE_S = 5.0  # seconds an instance gets to exit after STOP before it is killed


class Pool:
    """Every deployed function, its queue and its instances, on one event loop."""

    def __init__(
        self,
        config: ServerConfig,
        executor: Executor,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.executor = executor
        self.metrics = metrics
        self.clock = clock
        self.functions: dict[str, Function] = {}
        self.groups: dict[str, Group] = {}  # packed groups (functions deployed with --group)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_forever())

    async def close(self) -> None:
        """Stop every instance (queued requests fail with 503) and the control loop."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await asyncio.gather(*(self.undeploy(name) for name in list(self.functions)))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def deploy(self, spec: FunctionSpec, model_path: Path, signature: ModelSignature) -> Function:
        """Register (or update) a function; instances of an older version are drained."""
        old = self.functions.get(spec.name)
        function = Function(spec, model_path, signature)
        if old is not None and old.group is not None:
            for instance in old.group.alive():  # the old version's sessions must go
                self._spawn(packing.unload(instance, spec.name))
        if old is not None:
            old.removed = True
            function.queue = old.queue  # queued requests move to the new version
            for instance in old.alive():
                self._retire(old, instance)
            function.cost, function.latencies = old.cost, old.latencies
            function.cold_starts, function.failures = old.cold_starts, old.failures
            function.instances = old.instances
        self.functions[spec.name] = function
        if spec.group is not None:
            packing.join(self, function)
        else:
            self._scale_to_floor(function)
        self._pump(function)
        return function

    async def undeploy(self, name: str) -> None:
        function = self.function(name)
        function.removed = True
        del self.functions[name]
        while function.queue:
            _fail(function.queue.popleft(), Unavailable(f"function {name!r} was undeployed"))
        await packing.leave(self, function)
        instances = function.alive()
        for instance in instances:
            self._retire(function, instance)
        await self._wait_gone(instances)

    def function(self, name: str) -> Function:
        function = self.functions.get(name)
        if function is None:
            raise NotFound(f"function {name!r} is not deployed")
        return function

    # ---- data path -------------------------------------------------------------------------

    async def infer(self, name: str, inputs: Mapping[str, np.ndarray]) -> Reply:
        """Queue one request, wait for its batch to run, return the instance's reply."""
        function = self.function(name)
        loop = asyncio.get_running_loop()
        now = self.clock()
        pending = Pending(inputs, now, loop.create_future())
        function.queue.append(pending)
        function.last_request_at = now
        function.cost.request()
        if function.group is not None:
            function.group.demand.arrived(name, now)
        timer = loop.call_later(self.config.request_timeout_s, self._expire, function, pending)
        self._pump(function)
        try:
            return await pending.future
        finally:
            timer.cancel()
            function.latencies.append(self.clock() - now)

    def _pump(self, function: Function) -> None:
        """Dispatch as many batches as free slots allow; start an instance if there is none."""
        if function.group is not None:
            packing.pump(self, function.group)
            return
        queue = function.queue
        while queue and queue[0].future.done():  # cancelled or expired while queued
            queue.popleft()
        if not queue or function.removed:
            return
        if not function.active():
            self._scale_up(function, 1, "scale from zero")  # the activator: queue, never fail
            return
        policy, now = function.policy, self.clock()
        while queue:
            views = [i.view() for i in function.instances.values() if i.connected]
            free = sum(v.capacity - v.in_flight for v in views if v.state in SERVING)
            arrivals = [p.arrived for p in queue]
            size = _alone_first(
                queue, batcher.next_batch(arrivals, free, policy, function.estimate, now)
            )
            target = router.pick(views, function.name) if size else None
            if target is None:
                return
            batch = [p for p in (queue.popleft() for _ in range(size)) if not p.future.done()]
            if batch:
                instance = function.instances[target]
                instance.reserve(now, function.name)
                self._run_batch(function, instance, batch)

    def _run_batch(
        self, function: Function, instance: InstanceHandle, batch: list[Pending]
    ) -> None:
        """Send ``batch`` to ``instance`` now, before the caller yields (a request's frame leaves
        in the event-loop turn that queued it); `_settle_batch` runs when the reply is read."""
        dispatched = trace.now() if trace.ENABLED else 0
        function.in_flight_requests += len(batch)
        settle = functools.partial(self._settle_batch, function, instance, batch, dispatched)
        # counted before the frame leaves: the instance wakes on it and wants both cores
        self.metrics.batch(function.name, len(batch))
        try:
            requests = [p.inputs for p in batch]
            instance.start(function.name, requests, self.config.inline_tensor_bytes, settle)
        except Exception as exc:  # settled on the next turn: never inside the caller's pump
            asyncio.get_running_loop().call_soon(settle, exc)

    def _settle_batch(
        self,
        function: Function,
        instance: InstanceHandle,
        batch: list[Pending],
        dispatched: int,
        outcome: Batch | Exception,
    ) -> None:
        """Resolve every request of a batch from its outcome, free the slot, pump the queue.
        Runs where the reply frame is read, so each caller's task wakes one turn later."""
        try:
            self._resolve(function, batch, dispatched, outcome)
        finally:
            function.in_flight_requests -= len(batch)
            instance.release(self.clock(), function.name)
            self._after_release(function, instance)
            self._pump(function)

    def _resolve(
        self,
        function: Function,
        batch: list[Pending],
        dispatched: int,
        outcome: Batch | Exception,
    ) -> None:
        if isinstance(outcome, BatchLost):
            self._requeue_or_fail(function, batch, outcome)
        elif isinstance(outcome, InvalidInput) and len(batch) > 1:
            # one bad request must not fail its batch mates: retry each alone
            for pending in batch:
                pending.alone = True
            function.queue.extendleft(reversed(batch))
            function.estimate = batcher.ExecEstimate()
        elif isinstance(outcome, SealfnError):
            for pending in batch:
                _fail(pending, outcome)
        elif isinstance(outcome, Exception):  # a bug: its callers get a 503, the channel logs it
            for pending in batch:
                _fail(pending, Unavailable("the batch failed on an internal error"))
            raise outcome
        else:
            function.estimate = batcher.observe(function.estimate, len(batch), outcome.exec_s)
            replies = outcome.replies
            if replies and (stamps := replies[0].stamps) is not None:
                stamps |= {"p_dispatch": dispatched, "p_resolve": trace.now()}
            for pending, result in zip(batch, replies, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)

    def _requeue_or_fail(self, function: Function, batch: list[Pending], lost: BatchLost) -> None:
        """A crash lost the batch: retry once what had not started, 503 the rest."""
        retry = []
        for pending in batch:
            if lost.started or pending.attempts >= 1:
                _fail(pending, InstanceFailed(lost.message))
            else:
                pending.attempts += 1
                retry.append(pending)
        function.queue.extendleft(reversed(retry))

    def _expire(self, function: Function, pending: Pending) -> None:
        timeout = self.config.request_timeout_s
        _fail(pending, DeadlineExceeded(f"request to {function.name!r} took over {timeout:g} s"))

    # ---- instances -------------------------------------------------------------------------

    def _scale_up(self, function: Function, count: int, reason: str) -> None:
        room = function.spec.max_instances - len(function.active())
        for _ in range(max(0, min(count, room))):
            self._start_instance(function, reason)

    def _scale_to_floor(self, function: Function) -> None:
        self._scale_up(function, function.spec.min_instances - len(function.active()), "floor")

    def _start_instance(self, function: Function, reason: str) -> None:
        now = self.clock()
        instance_id = f"{function.name}-{next(self._ids)}"
        instance = InstanceHandle(
            instance_id, function.spec.concurrency, function.spec.memory_mb, now
        )
        function.instances[instance_id] = instance
        function.cost.instance_started(instance_id, function.spec.memory_mb, now)
        log.info("starting instance %s (%s)", instance_id, reason)
        self._spawn(self._boot(function, instance))

    async def launch(self, instance: InstanceHandle) -> None:
        """Start ``instance``'s process and wait for its HELLO (no model loaded yet)."""
        config = self.config
        spec = LaunchSpec(
            instance.id,
            slots=instance.capacity,
            slot_bytes=config.shm_slot_bytes,
            threads=config.instance_threads,
            inline_bytes=config.inline_tensor_bytes,
            share_weights=config.share_weights,
            host_optimized=config.host_optimized,
        )
        instance.worker = await self.executor.launch(spec)
        check_reply(await instance.worker.channel.unsolicited(), Kind.HELLO)

    async def _boot(self, function: Function, instance: InstanceHandle) -> None:
        """Launch → HELLO → LOAD → ready; then watch the process until it exits."""
        try:
            async with asyncio.timeout(self.config.start_timeout_s):
                await self.launch(instance)
                # the instance serves this function's model only: its session may own its threads
                meta = {"own_thread_pool": True, **self._sealed_meta(function)}
                timings = await instance.load(function.name, str(function.model_path), **meta)
        except (SealfnError, OSError, TimeoutError) as exc:
            self._start_failed(function, instance, exc)
            return
        now = self.clock()
        instance.ready_at = now
        function.last_start = {"spawn_to_ready_s": now - instance.spawned_at, **timings}
        function.start_failures = 0
        function.cold_starts += 1
        function.cold_start_s.append(now - instance.spawned_at)
        self.metrics.cold_start(function.name, now - instance.spawned_at)
        if instance.state is InstanceState.STARTING:
            instance.transition(Event.READY)
            self._pump(function)
        self._after_release(function, instance)
        await self._watch(function, instance)

    def _sealed_meta(self, function: Function) -> dict[str, object]:
        if function.spec.he:  # the instance reads evaluation keys from the state dir's key store
            return {"he": True, "state_dir": str(self.config.state_dir)}
        if not function.spec.sealed:
            return {}
        return {
            "sealed": True,
            "store": function.spec.model_store,
            "keyservice": function.spec.keyservice,
            "tee": self.config.tee,
            "platform_dir": self.config.tee_platform_dir,
        }

    def _start_failed(self, function: Function, instance: InstanceHandle, exc: Exception) -> None:
        retired = instance.state is InstanceState.DRAINING
        if instance.worker is not None:
            instance.worker.kill()
        self._gone(function, instance)
        if retired or function.removed:
            return
        message = exc.message if isinstance(exc, SealfnError) else f"{type(exc).__name__}: {exc}"
        log.warning("instance %s failed to start: %s", instance.id, message)
        function.start_failures += 1
        transient = isinstance(exc, OSError | TimeoutError | InstanceFailed)
        if function.start_failures >= MAX_START_FAILURES or not transient:
            while function.queue:
                error = Unavailable(f"function {function.name!r} cannot start: {message}")
                _fail(function.queue.popleft(), error)
            return
        self._pump(function)

    async def _watch(self, function: Function, instance: InstanceHandle) -> None:
        worker = instance.worker
        if worker is None:
            return
        await worker.channel.closed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE_S):
                await worker.wait()
        worker.kill()
        await worker.wait()
        crashed = instance.state is not InstanceState.DRAINING
        if crashed:
            log.warning("instance %s exited unexpectedly; replacing it", instance.id)
        self._gone(function, instance)
        if crashed and not function.removed:
            self._scale_to_floor(function)
            self._pump(function)

    def _gone(self, function: Function, instance: InstanceHandle) -> None:
        if instance.state is InstanceState.GONE:
            return
        instance.transition(Event.EXITED)
        function.cost.instance_stopped(instance.id, self.clock())
        function.instances.pop(instance.id, None)
        if instance.worker is not None:
            instance.worker.close()

    def _retire(self, function: Function, instance: InstanceHandle) -> None:
        """Take an instance out of routing; stop it once its in-flight batches are done."""
        if instance.state is InstanceState.GONE:
            return
        if instance.state is not InstanceState.DRAINING:
            instance.transition(Event.DRAIN)
        self._after_release(function, instance)

    def _after_release(self, function: Function, instance: InstanceHandle) -> None:
        draining = instance.state is InstanceState.DRAINING
        if draining and instance.in_flight == 0 and instance.worker is not None:
            instance.worker.channel.send(Kind.STOP, {})

    async def _wait_gone(self, instances: list[InstanceHandle]) -> None:
        for _ in range(int(2 * STOP_GRACE_S / 0.02)):
            if all(i.state is InstanceState.GONE for i in instances):
                return
            await asyncio.sleep(0.02)

    # ---- control loop ----------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            for group in list(self.groups.values()):
                try:
                    packing.tick(self, group, self.clock())
                except Exception:  # the control loop must survive any one group's bug
                    log.exception("control loop failed for group %s", group.name)
            for function in list(self.functions.values()):
                if function.group is not None:
                    continue
                try:
                    self._tick(function, self.clock())
                except Exception:  # the control loop must survive any one function's bug
                    log.exception("control loop failed for %s", function.name)

    def _tick(self, function: Function, now: float) -> None:
        config = self.config
        function.samples.append(
            autoscaler.Sample(now, float(function.in_flight_requests + len(function.queue)))
        )
        horizon = max(config.stable_window_s, config.panic_window_s)
        while function.samples and function.samples[0].at <= now - horizon:
            function.samples.popleft()
        scaler = function.scaler_config(
            config.stable_window_s, config.panic_window_s, config.panic_threshold
        )
        active = function.active()
        decision = autoscaler.decide(
            tuple(function.samples),
            len(active),
            function.last_request_at,
            scaler,
            function.scaler,
            now,
        )
        function.scaler = decision.state
        self._pump(function)  # safety net: requests requeued while nothing triggered a pump
        if decision.desired > len(active):
            self._scale_up(function, decision.desired - len(active), decision.reason)
        elif decision.desired < len(active):
            idle = sorted(
                (i for i in active if i.state is InstanceState.IDLE), key=lambda i: i.last_used
            )
            for instance in idle[: len(active) - decision.desired]:
                log.info("retiring instance %s (%s)", instance.id, decision.reason)
                self._retire(function, instance)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _alone_first(queue: deque[Pending], size: int) -> int:
    """Cut a batch of ``size`` from the head so that a request marked ``alone`` runs by itself."""
    for index, pending in enumerate(itertools.islice(queue, size)):
        if pending.alone:
            return 1 if index == 0 else index
    return size


def _fail(pending: Pending, error: SealfnError) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)
