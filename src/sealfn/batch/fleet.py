"""Where a batch job's instances run: the engine seam of the batch job.

A fleet starts instances, hands them orders and funnels their events into one queue; when an
instance dies the fleet puts an ``EXITED`` event there. ``LocalFleet`` runs
``python -m sealfn.batch.worker`` processes (orders on stdin, events on stdout);
``sealfn.runtime.executors.ray.RayFleet`` runs the same worker in Ray actors.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Protocol

from sealfn.batch.messages import Event, EventKind, Order, WorkerSpec
from sealfn.errors import ProtocolError, Unavailable


class Fleet(Protocol):
    name: str
    events: queue.Queue[Event]

    def start(self, instance: str) -> None:
        """Start an instance; it reports ``LOADED`` (or ``EXITED``) on ``events``."""
        ...

    def order(self, instance: str, order: Order) -> None: ...

    def kill(self, instance: str) -> None:
        """Stop the instance at once (SIGKILL for a process)."""
        ...

    def close(self) -> None: ...


class LocalFleet:
    """Instances as local processes."""

    name = "local"

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.events: queue.Queue[Event] = queue.Queue()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, instance: str) -> None:
        command = [
            sys.executable,
            "-m",
            "sealfn.batch.worker",
            f"--instance={instance}",
            f"--spec={self.spec.to_json()}",
        ]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._processes[instance] = process
        threading.Thread(
            target=self._read, args=(instance, process), name=f"batch-{instance}", daemon=True
        ).start()

    def pid(self, instance: str) -> int:
        return self._processes[instance].pid

    def order(self, instance: str, order: Order) -> None:
        stdin = self._processes[instance].stdin
        if stdin is None:
            raise Unavailable(f"instance {instance} has no control pipe")
        try:
            stdin.write(order.to_bytes())
            stdin.flush()
        except OSError:  # it died: its reader reports EXITED
            pass

    def kill(self, instance: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._processes[instance].pid, signal.SIGKILL)

    def close(self) -> None:
        for process in self._processes.values():
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def _read(self, instance: str, process: subprocess.Popen[bytes]) -> None:
        detail = ""
        if process.stdout is not None:
            try:
                for line in process.stdout:
                    self.events.put(Event.from_bytes(line))
            except (ProtocolError, ValueError, OSError) as exc:
                detail = str(exc)
        code = process.wait()
        self.events.put(Event(EventKind.EXITED, instance, detail=detail or f"exit code {code}"))
