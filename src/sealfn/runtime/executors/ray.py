"""Instances as Ray actors: the serving executor (``sealfn serve --engine ray``) and the batch
job's fleet (``sealfn batch run --engine ray``).

Actors ask for a fraction of a CPU (``num_cpus=0.5`` by default): on a 2-core machine Ray's whole
CPU count is 2, and actors holding a full CPU each starve the rest (the deadlock seen in CAI's
reproduction). Ray is an optional extra, imported only here and only when an engine is made.

Serving: the actor runs the same instance loop as a local process (``sealfn.instance.loop``);
the gateway listens on a unix socket, the actor connects to it and serves frames over it. Actors
share no memory with the gateway, so there is no shared-memory arena: every tensor travels inside
the frames. Unix sockets need the actor on the gateway's machine: this is a single-node engine for
serving (batch jobs likewise rendezvous on loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sealfn.batch.messages import Event, EventKind, Order, WorkerSpec
from sealfn.errors import ConfigError, Unavailable
from sealfn.ipc.arena import Arena
from sealfn.ipc.channel import Channel
from sealfn.runtime.executors.base import LaunchSpec

DEFAULT_CPUS = 0.5  # per actor: fractional, see above
CONNECT_TIMEOUT_S = 120.0  # an actor may wait for Ray to start a worker process
POLL_S = 0.05  # seconds between event drains of a batch actor


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the ray engine needs Ray: pip install 'sealfn[ray]'") from exc
    return ray


def init_ray(address: str | None = None) -> bool:
    """Start (or attach to) Ray unless it runs already; True if this call started it."""
    ray = _ray()
    if ray.is_initialized():
        return False
    ray.init(
        address=address,
        num_cpus=None if address else os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    return True


# ---- serving ------------------------------------------------------------------------------


class _InstanceActor:
    """Runs ``sealfn.instance``'s loop inside a Ray actor, over a unix socket to the gateway."""

    def serve(self, path: str, spec: LaunchSpec) -> int:
        from sealfn.instance.loop import InstanceLoop
        from sealfn.instance.models import ModelHost

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        host = ModelHost(
            spec.threads,
            shared_pool=True,
            share_weights=spec.share_weights,
            host_optimized=spec.host_optimized,
        )
        InstanceLoop(sock, None, host, spec.slots, spec.inline_bytes).serve()
        return 0

    def pid(self) -> int:
        return os.getpid()


class RayWorker:
    def __init__(self, instance_id: str, actor: Any, done: Any, channel: Channel, pid: int):
        self.instance_id = instance_id
        self.channel = channel
        self.arena: Arena | None = None  # no memory shared with the gateway
        self.pid: int | None = pid
        self._actor = actor
        self._done = done

    async def wait(self) -> int:
        ray = _ray()
        try:
            return int(await self._done)
        except ray.exceptions.RayError:
            return -9  # killed (or the actor's process died)

    def kill(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            _ray().kill(self._actor, no_restart=True)

    def close(self) -> None:
        self.channel.close()


class RayExecutor:
    """Starts each instance as a Ray actor on this machine."""

    name = "ray"

    def __init__(self, num_cpus: float = DEFAULT_CPUS, address: str | None = None) -> None:
        self._num_cpus = num_cpus
        self._started_ray = init_ray(address)
        ray = _ray()
        self._actor_class = ray.remote(_InstanceActor)
        self._folder = Path(tempfile.mkdtemp(prefix="sealfn-ray-"))

    async def launch(self, spec: LaunchSpec) -> RayWorker:
        path = self._folder / f"{spec.instance_id}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.setblocking(False)
        actor = self._actor_class.options(num_cpus=self._num_cpus, max_concurrency=2).remote()
        done = actor.serve.remote(str(path), spec)
        try:
            loop = asyncio.get_running_loop()
            sock, _ = await asyncio.wait_for(loop.sock_accept(listener), CONNECT_TIMEOUT_S)
            pid = int(await actor.pid.remote())
        except (TimeoutError, OSError) as exc:
            _ray().kill(actor, no_restart=True)
            raise Unavailable(f"ray actor {spec.instance_id} did not connect: {exc}") from exc
        finally:
            listener.close()
            path.unlink(missing_ok=True)
        channel = await Channel.connect(sock)
        return RayWorker(spec.instance_id, actor, done, channel, pid)


# ---- batch --------------------------------------------------------------------------------


class _BatchActor:
    """A batch instance in a Ray actor: orders queue up for its own thread; events wait in a
    list until the root drains them."""

    def __init__(self, instance: str, spec: WorkerSpec) -> None:
        from sealfn.batch.worker import PartitionWorker

        self._worker = PartitionWorker.from_spec(instance, spec)
        self._orders: queue.Queue[Order] = queue.Queue()
        self._events: list[bytes] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, name="batch-rounds", daemon=True).start()

    def loaded(self) -> bytes:
        return self._worker.loaded().to_bytes()

    def order(self, order: bytes) -> None:
        self._orders.put(Order.from_bytes(order))

    def drain(self) -> list[bytes]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def _serve(self) -> None:
        while True:
            first = self._orders.get()
            try:
                self._worker.run_round(first, self._emit, self._orders.get)
            except Exception as exc:  # the root must hear the round end, whatever went wrong
                failed = Event(
                    EventKind.ROUND_END, self._worker.instance, ok=False, detail=str(exc)
                )
                self._emit(failed)

    def _emit(self, event: Event) -> None:
        with self._lock:
            self._events.append(event.to_bytes())


class RayFleet:
    """A batch job's instances as Ray actors (fractional CPUs)."""

    name = "ray"

    def __init__(
        self, spec: WorkerSpec, num_cpus: float = DEFAULT_CPUS, address: str | None = None
    ) -> None:
        self.spec = spec
        self.events: queue.Queue[Event] = queue.Queue()
        self._num_cpus = num_cpus
        self._started_ray = init_ray(address)
        self._actor_class = _ray().remote(_BatchActor)
        self._actors: dict[str, Any] = {}
        self._closing = threading.Event()
        self._watchers: list[threading.Thread] = []

    def start(self, instance: str) -> None:
        options = {"num_cpus": self._num_cpus, "max_concurrency": 2}  # order and drain at once
        actor = self._actor_class.options(**options).remote(instance, self.spec)
        self._actors[instance] = actor
        watcher = threading.Thread(
            target=self._watch, args=(instance, actor), name=f"ray-{instance}", daemon=True
        )
        watcher.start()
        self._watchers.append(watcher)

    def order(self, instance: str, order: Order) -> None:
        self._actors[instance].order.remote(order.to_bytes())

    def kill(self, instance: str) -> None:
        with contextlib.suppress(Exception):
            _ray().kill(self._actors[instance], no_restart=True)

    def close(self) -> None:
        self._closing.set()
        for watcher in self._watchers:
            watcher.join(timeout=5)
        for instance in self._actors:
            self.kill(instance)
        if self._started_ray:
            _ray().shutdown()

    def _watch(self, instance: str, actor: Any) -> None:
        ray = _ray()
        try:
            self.events.put(Event.from_bytes(ray.get(actor.loaded.remote())))
            while not self._closing.is_set():
                for raw in ray.get(actor.drain.remote()):
                    self.events.put(Event.from_bytes(raw))
                time.sleep(POLL_S)
        except ray.exceptions.RayError as exc:
            if not self._closing.is_set():
                self.events.put(Event(EventKind.EXITED, instance, detail=type(exc).__name__))
