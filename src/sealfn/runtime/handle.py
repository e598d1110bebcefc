"""The gateway's handle on one instance: its lifecycle state, slots, loaded models and channel."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sealfn import errors
from sealfn.errors import InstanceFailed, ProtocolError, SealfnError
from sealfn.ipc import trace
from sealfn.ipc.channel import Channel, OnReply
from sealfn.ipc.frames import Frame, Kind, tensors_from_json, tensors_to_json
from sealfn.ipc.tensors import TensorWriter, read_tensor
from sealfn.runtime.executors.base import Worker
from sealfn.runtime.lifecycle import Event, InstanceState, next_state
from sealfn.runtime.router import InstanceView

Tensors = Mapping[str, np.ndarray]


class InstanceHandle:
    """State the pool keeps per instance; ``run`` moves one batch there and back."""

    def __init__(self, instance_id: str, capacity: int, memory_mb: int, now: float) -> None:
        self.id = instance_id
        self.capacity = capacity
        self.memory_mb = memory_mb
        self.state = InstanceState.STARTING
        self.in_flight = 0  # batches
        self.models: set[str] = set()
        self.loading: set[str] = set()  # LOAD sent (packed pools), not yet answered
        self.model_in_flight: dict[str, int] = {}  # batches per model
        self.model_started: dict[str, list[float]] = {}  # their dispatch times, oldest first
        self.model_last_used: dict[str, float] = {}
        self.model_memory_mb: dict[str, float] = {}  # measured at load: RSS growth
        self.spawned_at = now
        self.ready_at: float | None = None
        self.last_used = now
        self.worker: Worker | None = None
        self._free_slots = list(range(capacity - 1, -1, -1))

    def view(self) -> InstanceView:
        return InstanceView(
            self.id,
            self.state,
            frozenset(self.models),
            self.in_flight,
            self.capacity,
            self.last_used,
        )

    @property
    def connected(self) -> bool:
        """Whether its channel is open; the pool routes only to connected instances."""
        # A crashed instance closes its channel before the pool reaps its process and marks it
        # GONE; batches routed to it in between would be lost and burn their one retry.
        return self.worker is not None and not self.worker.channel.closed.done()

    def transition(self, event: Event) -> None:
        self.state = next_state(self.state, event, self.in_flight)

    async def load(self, model: str, path: str, **sealed: object) -> dict[str, float]:
        """Load ``model`` from ``path``; the instance's timings (load_s, and for a sealed model
        the breakdown: attest_release_s, fetch_s, decrypt_s, ...)."""
        reply = await self._channel().request(Kind.LOAD, {"model": model, "path": path, **sealed})
        _raise_failure(reply)
        self.models.add(model)
        if "rss_growth_mb" in reply.meta:
            self.model_memory_mb[model] = float(reply.meta["rss_growth_mb"])
        return {k: float(v) for k, v in reply.meta.items() if k.endswith("_s")}

    async def unload(self, model: str) -> None:
        """Drop ``model``'s session (LRU eviction or idle unload in a packed pool)."""
        self.models.discard(model)
        self.model_memory_mb.pop(model, None)
        reply = await self._channel().request(Kind.UNLOAD, {"model": model})
        _raise_failure(reply)

    def reserve(self, now: float, model: str) -> None:
        self.in_flight += 1
        self.model_in_flight[model] = self.model_in_flight.get(model, 0) + 1
        self.model_started.setdefault(model, []).append(now)
        self.last_used = self.model_last_used[model] = now
        self.transition(Event.DISPATCH)

    def release(self, now: float, model: str) -> None:
        self.in_flight -= 1
        self.model_in_flight[model] -= 1
        started = self.model_started.get(model)
        if started:  # batches of one model end about in the order they started
            started.pop(0)
        self.last_used = self.model_last_used[model] = now
        if self.state is not InstanceState.GONE:
            self.transition(Event.DRAINED_WORK)

    def start(
        self, model: str, requests: Sequence[Tensors], inline_bytes: int, on_done: OnDone
    ) -> None:
        """Write one batch into a free slot and send it now, before the caller next yields (no
        event-loop turn between queueing a request and its frame leaving). ``on_done`` gets the
        batch's replies and the instance's execution seconds, or the error that lost it
        (BatchLost, or the instance's FAILURE as its error class), in the event-loop step that
        reads the reply frame: no task wakes in between. BatchLost here if the instance is gone."""
        slot = self._free_slots.pop()
        stamps = {"h_write": trace.now()} if trace.ENABLED else None

        def replied(reply: Frame | Exception) -> None:
            self._free_slots.append(slot)
            on_done(self._outcome(slot, reply, stamps))

        try:
            self._send(slot, model, requests, inline_bytes, replied)
        except BaseException:
            self._free_slots.append(slot)
            raise

    def _send(
        self,
        slot: int,
        model: str,
        requests: Sequence[Tensors],
        inline_bytes: int,
        on_reply: OnReply,
    ) -> None:
        arena = self.worker.arena if self.worker is not None else None
        if arena is not None:
            arena.mark_started(slot, False)
            start = arena.layout.in_offset(slot)
            region = arena.view[start : start + arena.layout.slot_bytes]
            writer = TensorWriter(region, start, inline_bytes)
        else:
            writer = TensorWriter(None, 0, inline_bytes)
        refs = [
            tensors_to_json(tuple(writer.add(n, a) for n, a in request.items()))
            for request in requests
        ]
        meta = {"model": model, "slot": slot, "requests": refs}
        try:
            self._channel().send_request(Kind.RUN, meta, writer.payload(), on_reply)
        except InstanceFailed as exc:
            raise BatchLost(self._started(slot)) from exc

    def _outcome(
        self, slot: int, reply: Frame | Exception, stamps: dict[str, int] | None
    ) -> Batch | Exception:
        if isinstance(reply, InstanceFailed):
            lost = BatchLost(self._started(slot))
            lost.__cause__ = reply
            return lost
        if isinstance(reply, Exception):
            return reply
        if stamps is not None:
            stamps["h_resumed"] = trace.now()
        try:
            return self._replies(reply, stamps)
        except SealfnError as exc:
            return exc

    def _started(self, slot: int) -> bool:
        """Whether the instance began the batch in ``slot`` (it sets a flag in the arena)."""
        arena = self.worker.arena if self.worker is not None else None
        return arena is not None and arena.started(slot)

    def _replies(self, reply: Frame, stamps: dict[str, int] | None) -> Batch:
        _raise_failure(reply)
        arena = self.worker.arena if self.worker is not None else None
        view = arena.view if arena is not None else None
        outputs = [
            # copy: the slot's out region is reused by the next batch
            {ref.name: read_tensor(ref, reply.payload, view).copy() for ref in tensors_from_json(o)}
            for o in reply.meta["outputs"]
        ]
        # Sealed batches answer per request (one may be refused while its batch mates run).
        statuses = reply.meta.get("status") or [200] * len(outputs)
        messages = reply.meta.get("message") or [""] * len(outputs)
        if stamps is not None:
            stamps |= _channel_stamps(self._channel(), reply.meta)
        replies = [
            Reply(out, int(code), str(text), stamps)
            for out, code, text in zip(outputs, statuses, messages, strict=True)
        ]
        return Batch(replies, float(reply.meta["exec_s"]))

    def _channel(self) -> Channel:
        if self.worker is None:
            raise InstanceFailed(f"instance {self.id} is not running")
        return self.worker.channel


@dataclass(frozen=True, slots=True)
class Reply:
    """One request's answer from an instance: its outputs, or a status and message for a refusal.

    For sealed requests ``outputs`` holds the sealed reply bytes and ``message`` is opaque.
    """

    outputs: dict[str, np.ndarray]
    status: int = 200
    message: str = ""
    stamps: dict[str, int] | None = None  # trace.ENABLED only: phase timestamps, ns


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch's answer from its instance: a reply per request, and its execution seconds."""

    replies: list[Reply]
    exec_s: float


OnDone = Callable[[Batch | Exception], None]


def _channel_stamps(channel: Channel, meta: dict[str, object]) -> dict[str, int]:
    """The frame's write and reply arrival, the instance's own stamps, and now (outputs read)."""
    instance = meta.get("stamps")
    found = {"h_sent": channel.sent_ns, "h_arrived": channel.arrived_ns}
    if isinstance(instance, dict):
        found |= {str(k): int(v) for k, v in instance.items()}
    return found | {"h_read": trace.now()}


class BatchLost(InstanceFailed):
    """The instance died with a batch in flight; ``started`` tells whether it had begun running."""

    def __init__(self, started: bool) -> None:
        super().__init__("the instance serving this request crashed while running it")
        self.started = started


_FAILURES: dict[str, type[SealfnError]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, SealfnError)
}


def _raise_failure(reply: Frame) -> None:
    if reply.kind is not Kind.FAILURE:
        return
    cls = _FAILURES.get(str(reply.meta.get("error")), errors.ModelError)
    raise cls(str(reply.meta.get("message", "instance error")))


def check_reply(reply: Frame, expected: Kind) -> None:
    _raise_failure(reply)
    if reply.kind is not expected:
        raise ProtocolError(f"expected {expected.name} from instance, got {reply.kind.name}")
