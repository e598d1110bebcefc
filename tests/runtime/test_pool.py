"""The Pool on a real event loop, with a real in-process fake executor (and the real local one).

The fake instance speaks the real frame protocol over a real socket pair and shares a real memfd
arena, but its RUN behaviour is scripted: answer, crash before the batch starts, crash after it
started (the arena's started flag set), or reject batches of more than one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import pytest

from sealfn.config import FunctionSpec, ServerConfig
from sealfn.errors import (
    DeadlineExceeded,
    InstanceFailed,
    NotFound,
    Unavailable,
)
from sealfn.ipc.arena import Arena, ArenaLayout
from sealfn.ipc.channel import Channel
from sealfn.ipc.frames import LENGTH, Frame, Kind, tensors_from_json, tensors_to_json
from sealfn.ipc.tensors import TensorWriter, read_tensor
from sealfn.runtime.executors.base import LaunchSpec
from sealfn.runtime.executors.local import LocalExecutor
from sealfn.runtime.handle import InstanceHandle
from sealfn.runtime.lifecycle import InstanceState
from sealfn.runtime.metrics import Metrics
from sealfn.runtime.pool import Pool
from sealfn.signature import ModelSignature, TensorSpec, signature_from_onnx

if TYPE_CHECKING:
    from sealfn_testing import Models

SIGNATURE = ModelSignature(
    (TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("output", "FP32", (-1, 4)),)
)
MODEL = Path("/nonexistent/fake.onnx")  # the fake instance never opens it

OK, CRASH_BEFORE, CRASH_AFTER = "ok", "crash-before", "crash-after"


class FakeWorker:
    """One fake instance: the gateway's Worker view plus the instance side of the socket."""

    def __init__(
        self, spec: LaunchSpec, channel: Channel, arena: Arena | None, executor: FakeExecutor
    ) -> None:
        self.instance_id = spec.instance_id
        self.channel = channel
        self.arena = arena
        self.pid: int | None = None
        self.executor = executor
        self.runs: list[int] = []  # batch sizes this instance ran
        self.exited = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None

    async def serve(self, sock: socket.socket) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        self._send(Frame(Kind.HELLO, 0, {"pid": 0}))
        try:
            while (frame := await self._receive(reader)) is not None:
                if frame.kind is Kind.STOP:
                    break
                if frame.kind is Kind.LOAD:
                    meta = {"model": frame.meta["model"], "load_s": 0.001}
                    self._send(Frame(Kind.LOADED, frame.request_id, meta))
                elif frame.kind is Kind.RUN and not self._run(frame):
                    break  # scripted crash
        finally:
            self.kill()

    def _run(self, frame: Frame) -> bool:
        """Answer one RUN as the script says; False when the instance 'crashes'."""
        action = self.executor.next_action()
        slot, batch = int(frame.meta["slot"]), frame.meta["requests"]
        if action == CRASH_BEFORE:
            return False
        if action == CRASH_AFTER:
            assert self.arena is not None
            self.arena.mark_started(slot)
            return False
        if self.executor.reject_batches and len(batch) > 1:
            meta = {"error": "InvalidInput", "message": "batch rejected"}
            self._send(Frame(Kind.FAILURE, frame.request_id, meta))
            return True
        self.runs.append(len(batch))
        view = self.arena.view if self.arena is not None else None
        writer = TensorWriter(None, 0, 1 << 30)
        outputs = []
        for refs in batch:
            (ref,) = tensors_from_json(refs)
            doubled = read_tensor(ref, frame.payload, view) * 2
            outputs.append(tensors_to_json((writer.add("output", doubled),)))
        meta = {"outputs": outputs, "exec_s": 0.001}
        self._send(Frame(Kind.RESULT, frame.request_id, meta, writer.payload()))
        return True

    def _send(self, frame: Frame) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(frame.to_bytes())

    @staticmethod
    async def _receive(reader: asyncio.StreamReader) -> Frame | None:
        try:
            (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
            return Frame.from_bytes(await reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def wait(self) -> int:
        await self.exited.wait()
        await asyncio.sleep(0.02)  # as reaping a real process takes a moment after the socket
        return 0

    def kill(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.exited.set()

    def close(self) -> None:
        self.channel.close()
        if self.arena is not None:
            with contextlib.suppress(BufferError):
                self.arena.close()
            self.arena = None


class FakeExecutor:
    """Starts FakeWorkers; ``gate`` holds launches back; ``script`` lists RUN actions in order."""

    name = "fake"

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.reject_batches = False  # answer batches of more than one with InvalidInput
        self.gate = asyncio.Event()
        self.gate.set()
        self.workers: list[FakeWorker] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def next_action(self) -> str:
        return self.script.pop(0) if self.script else OK

    async def launch(self, spec: LaunchSpec) -> FakeWorker:
        await self.gate.wait()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        arena = Arena.create(ArenaLayout(spec.slots, spec.slot_bytes)) if spec.slot_bytes else None
        channel = await Channel.connect(ours)
        worker = FakeWorker(spec, channel, arena, self)
        task = asyncio.create_task(worker.serve(theirs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.workers.append(worker)
        return worker

    @property
    def runs(self) -> list[int]:
        return [size for worker in self.workers for size in worker.runs]


Scenario = Callable[[Pool, FakeExecutor], Awaitable[None]]


def _config(tmp_path: Path, **changes: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "state_dir": tmp_path,
        "tick_s": 0.05,
        "stable_window_s": 1.0,
        "panic_window_s": 0.3,
        "request_timeout_s": 10.0,
        "shm_slot_bytes": 1 << 16,
    }
    return ServerConfig(**{**settings, **changes})


def run(
    tmp_path: Path, executor_script: tuple[str, ...], scenario: Scenario, **config: Any
) -> None:
    """Run ``scenario`` against a started Pool with a FakeExecutor; the pool is closed after."""

    async def main() -> None:
        executor = FakeExecutor(*executor_script)
        pool = Pool(_config(tmp_path, **config), executor, Metrics())
        await pool.start()
        try:
            async with asyncio.timeout(20):
                await scenario(pool, executor)
        finally:
            executor.gate.set()
            await pool.close()
        assert all(w.exited.is_set() for w in executor.workers), "close left instances running"

    asyncio.run(main())


def _x(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    return {"input": np.full((rows, 4), value, dtype=np.float32)}


async def _settle(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_dispatch(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        function = pool.deploy(FunctionSpec("f"), MODEL, SIGNATURE)
        assert function.instances == {}  # scale from zero: nothing until a request
        out = (await pool.infer("f", _x(1.5, rows=3))).outputs
        np.testing.assert_array_equal(out["output"], np.full((3, 4), 3.0))
        assert function.cold_starts == 1
        assert [i.state for i in function.instances.values()] == [InstanceState.IDLE]
        await pool.infer("f", _x(2))
        assert len(executor.workers) == 1  # the warm instance served the second one

    run(tmp_path, (), scenario)


def test_requests_queue_while_the_instance_starts(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        executor.gate.clear()
        function = pool.deploy(FunctionSpec("f", max_batch=8), MODEL, SIGNATURE)
        calls = [asyncio.ensure_future(pool.infer("f", _x(i))) for i in range(6)]
        await asyncio.sleep(0.2)  # several control-loop ticks
        assert len(function.queue) == 6
        assert [i.state for i in function.instances.values()] == [InstanceState.STARTING]
        assert not any(c.done() for c in calls)
        executor.gate.set()
        results = [r.outputs for r in await asyncio.gather(*calls)]
        for i, out in enumerate(results):
            np.testing.assert_array_equal(out["output"], np.full((1, 4), 2.0 * i))
        assert function.cold_starts == 1
        assert sum(executor.runs) == 6
        assert max(executor.runs) > 1  # what piled up during the cold start went as batches

    run(tmp_path, (), scenario)


def test_batch_lost_before_it_started_is_retried(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        function = pool.deploy(FunctionSpec("f"), MODEL, SIGNATURE)
        out = (await pool.infer("f", _x(4))).outputs
        np.testing.assert_array_equal(out["output"], np.full((1, 4), 8.0))
        assert len(executor.workers) == 2  # the crashed instance was replaced
        assert function.cold_starts == 2

    run(tmp_path, (CRASH_BEFORE,), scenario)


def test_batch_lost_after_it_started_fails_with_503(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        pool.deploy(FunctionSpec("f", min_instances=1), MODEL, SIGNATURE)
        with pytest.raises(InstanceFailed, match="crashed"):
            await pool.infer("f", _x(1))
        out = (await pool.infer("f", _x(1))).outputs  # a replacement serves what comes next
        np.testing.assert_array_equal(out["output"], np.full((1, 4), 2.0))
        assert len(executor.workers) == 2

    run(tmp_path, (CRASH_AFTER,), scenario)


def test_an_internal_error_fails_its_batch_at_once_and_the_pool_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while sending a batch (not a SealfnError) answers its requests with a 503 instead of
    leaving them to time out; the slot is freed and the next request is served."""

    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        pool.deploy(FunctionSpec("f", min_instances=1), MODEL, SIGNATURE)
        await pool.infer("f", _x(1))  # warm
        start = InstanceHandle.start

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(InstanceHandle, "start", broken)
        async with asyncio.timeout(2):  # well under request_timeout_s
            with pytest.raises(Unavailable, match="internal error"):
                await pool.infer("f", _x(1))
        monkeypatch.setattr(InstanceHandle, "start", start)
        out = (await pool.infer("f", _x(3))).outputs
        np.testing.assert_array_equal(out["output"], np.full((1, 4), 6.0))

    run(tmp_path, (), scenario)


def test_a_request_is_retried_only_once(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        pool.deploy(FunctionSpec("f"), MODEL, SIGNATURE)
        error = await _error(pool.infer("f", _x(1)))
        assert isinstance(error, InstanceFailed)
        assert isinstance(error, Unavailable)  # a 503
        assert (await pool.infer("f", _x(1))).outputs["output"][0, 0] == 2.0

    run(tmp_path, (CRASH_BEFORE, CRASH_BEFORE), scenario)


@pytest.mark.parametrize(("action", "survive"), [(CRASH_BEFORE, True), (CRASH_AFTER, False)])
def test_batch_mates_share_the_fate_of_their_batch(
    tmp_path: Path, action: str, survive: bool
) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        executor.gate.clear()
        pool.deploy(FunctionSpec("f", max_batch=4, max_instances=1), MODEL, SIGNATURE)
        calls = [pool.infer("f", _x(i)) for i in range(3)]
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0.05)
        executor.gate.set()  # the three go as one batch into the crash
        errors = [await _error(t) for t in tasks]
        if survive:
            assert errors == [None, None, None]
        else:
            assert all(isinstance(e, InstanceFailed) for e in errors), errors

    run(tmp_path, (action,), scenario)


def test_crashed_instance_is_not_routed_to_again(tmp_path: Path) -> None:
    """Requests queued behind a batch whose instance crashed never started: none may fail."""

    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        pool.deploy(FunctionSpec("f", max_batch=1, max_instances=1), MODEL, SIGNATURE)
        await pool.infer("f", _x(0))  # warm
        executor.script = [CRASH_AFTER]
        tasks = [asyncio.ensure_future(pool.infer("f", _x(i))) for i in range(5)]
        errors = [await _error(t) for t in tasks]
        assert isinstance(errors[0], InstanceFailed)  # the one batch that had started
        assert errors[1:] == [None] * 4

    run(tmp_path, (), scenario)


def test_bad_batch_mate_is_retried_alone(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        executor.gate.clear()
        executor.reject_batches = True
        pool.deploy(FunctionSpec("f", max_batch=4, max_instances=1), MODEL, SIGNATURE)
        tasks = [asyncio.ensure_future(pool.infer("f", _x(i))) for i in range(3)]
        await asyncio.sleep(0.05)
        executor.gate.set()
        results = [r.outputs for r in await asyncio.gather(*tasks)]
        for i, out in enumerate(results):
            assert out["output"][0, 0] == 2.0 * i
        assert executor.runs == [1, 1, 1]
        executor.reject_batches = False
        more = [asyncio.ensure_future(pool.infer("f", _x(i))) for i in range(3)]
        await asyncio.gather(*more)  # batching resumes for requests that did nothing wrong

    run(tmp_path, (), scenario, request_timeout_s=3.0)


def test_undeploy_fails_queued_requests(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        executor.gate.clear()
        pool.deploy(FunctionSpec("f"), MODEL, SIGNATURE)
        tasks = [asyncio.ensure_future(pool.infer("f", _x(i))) for i in range(3)]
        await asyncio.sleep(0.05)
        undeploy = asyncio.ensure_future(pool.undeploy("f"))
        errors = [await _error(t) for t in tasks]
        for error in errors:
            assert isinstance(error, Unavailable)
            assert "'f' was undeployed" in error.message
        executor.gate.set()  # the instance that was starting boots, and is stopped at once
        await undeploy
        assert "f" not in pool.functions
        assert all(w.exited.is_set() for w in executor.workers)
        with pytest.raises(NotFound):
            await pool.infer("f", _x(1))

    run(tmp_path, (), scenario)


def test_request_timeout_while_queued(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        executor.gate.clear()
        function = pool.deploy(FunctionSpec("f"), MODEL, SIGNATURE)
        with pytest.raises(DeadlineExceeded, match=r"took over 0\.2 s"):
            await pool.infer("f", _x(1))
        executor.gate.set()
        await pool.infer("f", _x(1))  # the expired one is dropped, not run
        assert executor.runs == [1]
        assert len(function.latencies) == 2

    run(tmp_path, (), scenario, request_timeout_s=0.2)


def test_min_instances_floor_and_redeploy(tmp_path: Path) -> None:
    async def scenario(pool: Pool, executor: FakeExecutor) -> None:
        function = pool.deploy(FunctionSpec("f", min_instances=2), MODEL, SIGNATURE)
        await _settle(lambda: len(function.serving()) == 2)
        old = list(function.instances.values())
        newer = pool.deploy(FunctionSpec("f", min_instances=1), MODEL, SIGNATURE)
        await _settle(lambda: all(i.state is InstanceState.GONE for i in old))
        await _settle(lambda: len(newer.serving()) == 1)
        assert newer.cold_starts == 3  # stats carry over to the new version
        assert (await pool.infer("f", _x(1))).outputs["output"][0, 0] == 2.0

    run(tmp_path, (), scenario)


def test_local_executor_runs_real_instances(tmp_path: Path, models: Models) -> None:
    async def main() -> None:
        pool = Pool(_config(tmp_path), LocalExecutor(), Metrics())
        await pool.start()
        try:
            function = pool.deploy(
                FunctionSpec("mlp", concurrency=2), models.mlp, signature_from_onnx(models.mlp)
            )
            x = np.ones((2, 16), dtype=np.float32)
            replies = await asyncio.gather(*(pool.infer("mlp", {"input": x}) for _ in range(4)))
            results = [r.outputs for r in replies]
            pids = [i.worker.pid for i in function.instances.values() if i.worker is not None]
            assert len(pids) == 1
            for out in results:
                np.testing.assert_array_equal(out["output"], results[0]["output"])
        finally:
            await pool.close()
        assert all(not psutil.pid_exists(pid) for pid in pids)

    asyncio.run(main())


async def _error(call: Awaitable[Any]) -> BaseException | None:
    try:
        await call
    except Exception as exc:
        return exc
    return None
