"""The executor seam: start an instance somewhere and hand back a channel to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sealfn.ipc.arena import Arena
from sealfn.ipc.channel import Channel


@dataclass(frozen=True)
class LaunchSpec:
    """What an instance needs to boot; the models are loaded afterwards over the channel."""

    instance_id: str
    slots: int  # batches it may run at once
    slot_bytes: int  # shared-memory bytes per slot and direction; 0 = no arena
    threads: int  # onnxruntime intra-op threads; 0 = onnxruntime's default
    inline_bytes: int  # tensors up to this size travel inside frames
    share_weights: bool = False  # map plain models' weights so instances share their pages
    host_optimized: bool = True  # load plain models through their host-optimized copy (hostopt)


class Worker(Protocol):
    """A running instance as the gateway sees it: a channel, an optional arena, a process."""

    instance_id: str
    channel: Channel
    arena: Arena | None
    pid: int | None

    async def wait(self) -> int:
        """Wait for the instance to exit; its exit code."""
        ...

    def kill(self) -> None:
        """Stop the instance at once (after a timeout or when it misbehaves)."""
        ...

    def close(self) -> None:
        """Release the gateway's side (socket, arena) after the instance has exited."""
        ...


class Executor(Protocol):
    """Starts instances. ``local`` runs processes on this machine; ``ray`` will run actors."""

    name: str

    async def launch(self, spec: LaunchSpec) -> Worker:
        """Start one instance; returns as soon as its channel is connected (not yet ready)."""
        ...
