"""Instances as local worker processes: a socket pair for frames, a memfd arena for big tensors."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

from sealfn.ipc.arena import Arena, ArenaLayout
from sealfn.ipc.channel import Channel
from sealfn.runtime.executors.base import LaunchSpec


class LocalWorker:
    def __init__(
        self,
        instance_id: str,
        process: asyncio.subprocess.Process,
        channel: Channel,
        arena: Arena | None,
    ) -> None:
        self.instance_id = instance_id
        self.channel = channel
        self.arena = arena
        self.pid: int | None = process.pid
        self._process = process

    async def wait(self) -> int:
        return await self._process.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()

    def close(self) -> None:
        self.channel.close()
        if self.arena is not None:
            with contextlib.suppress(BufferError):  # a view still held: the GC frees it later
                self.arena.close()
            self.arena = None


class LocalExecutor:
    """Runs each instance as ``python -m sealfn.instance`` on this machine."""

    name = "local"

    async def launch(self, spec: LaunchSpec) -> LocalWorker:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        arena = Arena.create(ArenaLayout(spec.slots, spec.slot_bytes)) if spec.slot_bytes else None
        fds = [child.fileno()] + ([arena.fd] if arena is not None else [])
        command = [
            sys.executable,
            "-m",
            "sealfn.instance",
            f"--fd={child.fileno()}",
            f"--arena-fd={arena.fd if arena is not None else -1}",
            f"--slots={spec.slots}",
            f"--slot-bytes={spec.slot_bytes}",
            f"--threads={spec.threads}",
            f"--inline-bytes={spec.inline_bytes}",
            *(["--share-weights"] if spec.share_weights else []),
            *(["--host-optimized"] if spec.host_optimized else []),
        ]
        try:
            process = await asyncio.create_subprocess_exec(*command, pass_fds=fds)
        except OSError:
            parent.close()
            if arena is not None:
                arena.close()
            raise
        finally:
            child.close()
        channel = await Channel.connect(parent)
        return LocalWorker(spec.instance_id, process, channel, arena)
