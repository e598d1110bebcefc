"""The coordinator's handle on its accelerator workers: start, send work, collect, stop."""

from __future__ import annotations

import contextlib
import itertools
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sealfn.errors import InstanceFailed, ProtocolError
from sealfn.ipc.frames import Frame, Kind
from sealfn.training.wire import FrameSocket, WorkReply, WorkRequest

STOP_TIMEOUT = 10.0  # seconds a worker gets to exit after STOP before it is killed


@dataclass(frozen=True)
class WorkerOptions:
    """How to start workers. ``trace``/``tamper`` make them play the adversary (tests, demos)."""

    threads: int = 0  # torch CPU threads per worker; 0 keeps torch's default
    trace: Path | None = None
    tamper: str | None = None
    tamper_workers: frozenset[int] = frozenset()  # which workers tamper (all when empty)


class WorkerHandle:
    """One worker process and the coordinator's end of its socket."""

    def __init__(self, index: int, options: WorkerOptions) -> None:
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "sealfn.training.worker", "--fd", str(theirs.fileno())]
        command += ["--threads", str(options.threads)]
        if options.trace is not None:
            command += ["--trace", str(options.trace)]
        tampers = not options.tamper_workers or index in options.tamper_workers
        if options.tamper is not None and tampers:
            command += ["--tamper", options.tamper]
        self.index = index
        self.process = subprocess.Popen(command, pass_fds=(theirs.fileno(),))
        theirs.close()
        self.channel = FrameSocket(ours)
        self._ids = itertools.count(1)
        self._pending: list[int] = []
        self.device = "?"
        self.lost = False  # the connection broke or went out of step: never used again

    def wait_ready(self) -> None:
        """Wait for the worker's HELLO (workers start in parallel; each imports torch)."""
        hello = self.channel.receive()
        if hello is None or hello.kind is not Kind.HELLO:
            raise InstanceFailed(f"worker {self.index} did not start")
        self.device = str(hello.meta.get("device", "?"))

    def submit(self, request: WorkRequest) -> None:
        """Send a request without waiting; :meth:`collect` returns replies in order."""
        if self.lost:
            raise InstanceFailed(f"worker {self.index} was lost earlier")
        request_id = next(self._ids)
        try:
            self.channel.send(request.to_frame(request_id))
        except OSError as exc:
            self.lost = True
            raise InstanceFailed(f"worker {self.index} connection lost") from exc
        self._pending.append(request_id)

    def collect(self) -> WorkReply:
        """The next reply; InstanceFailed (worker lost, or it answered FAILURE) otherwise."""
        try:
            frame = self.channel.receive()
        except (OSError, ProtocolError) as exc:
            self.lost = True
            raise InstanceFailed(f"worker {self.index} connection lost") from exc
        if frame is None:
            self.lost = True
            raise InstanceFailed(f"worker {self.index} closed its connection")
        expected = self._pending.pop(0) if self._pending else None
        if frame.request_id != expected:
            self.lost = True
            raise InstanceFailed(f"worker {self.index} answered request {frame.request_id}")
        return WorkReply.from_frame(frame)

    def run(self, request: WorkRequest) -> WorkReply:
        self.submit(request)
        return self.collect()

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # a worker that already died needs no STOP
            self.channel.send(Frame(Kind.STOP, 0, {}))
        self.channel.close()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WorkerPool:
    """``count`` worker processes; a context manager that stops them all on exit."""

    def __init__(self, count: int, options: WorkerOptions | None = None) -> None:
        if count < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {count}")
        self.options = options or WorkerOptions()
        self.workers: list[WorkerHandle] = []
        try:
            for index in range(count):
                self.workers.append(WorkerHandle(index, self.options))
            for worker in self.workers:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.workers)

    def alive(self) -> list[int]:
        """Indices of the workers still connected."""
        return [worker.index for worker in self.workers if not worker.lost]

    def __getitem__(self, index: int) -> WorkerHandle:
        return self.workers[index % len(self.workers)]

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
