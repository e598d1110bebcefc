"""The Ray engine against a local Ray cluster: serving instances and batch instances as actors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from sealfn.batch.fleet import WorkerSpec
from sealfn.batch.job import JobConfig, run_job
from sealfn.batch.messages import Event, EventKind
from sealfn.config import FunctionSpec, ServerConfig
from sealfn.runtime.metrics import Metrics
from sealfn.runtime.pool import Pool
from sealfn.signature import signature_from_onnx
from sealfn_testing import Models

pytestmark = pytest.mark.ray
Reference = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]


def test_serving_instances_run_as_ray_actors(
    ray_cluster: Any, tmp_path: Path, models: Models, reference: Reference
) -> None:
    from sealfn.runtime.executors.ray import RayExecutor

    async def main() -> None:
        config = ServerConfig(state_dir=tmp_path, start_timeout_s=120)
        pool = Pool(config, RayExecutor(num_cpus=0.5), Metrics())
        await pool.start()
        try:
            function = pool.deploy(
                FunctionSpec("mlp", concurrency=2), models.mlp, signature_from_onnx(models.mlp)
            )
            x = np.random.default_rng(3).standard_normal((3, 16)).astype(np.float32)
            replies = await asyncio.gather(*(pool.infer("mlp", {"input": x}) for _ in range(4)))
            expected = reference(models.mlp, {"input": x})["output"]
            for reply in replies:
                np.testing.assert_array_equal(reply.outputs["output"], expected)
            workers = [i.worker for i in function.instances.values() if i.worker is not None]
            assert [w.arena for w in workers] == [None]  # frames only: no shared memory
            pid = workers[0].pid
            assert pid is not None and psutil.pid_exists(pid)
        finally:
            await pool.close()

    asyncio.run(main())


def _spec(
    models: Models, tmp_path: Path, records: int = 777, batch_size: int = 16
) -> tuple[WorkerSpec, np.ndarray]:
    data = np.random.default_rng(11).standard_normal((records, 16)).astype(np.float32)
    np.save(tmp_path / "data.npy", data)
    spec = WorkerSpec(models.mlp, tmp_path / "data.npy", tmp_path / "ckpt", batch_size=batch_size)
    return spec, data


def test_batch_job_on_ray_actors_matches_one_process(
    ray_cluster: Any, tmp_path: Path, models: Models, reference: Reference
) -> None:
    from sealfn.runtime.executors.ray import RayFleet

    spec, data = _spec(models, tmp_path)
    config = JobConfig(instances=2, partition_records=100, progress=False)
    result = run_job(RayFleet(spec), len(data), config)
    expected = reference(models.mlp, {"input": data})["output"]
    np.testing.assert_array_equal(result.outputs["output"], expected)
    assert [log.loads for log in result.instances.values()] == [1, 1]


def test_killed_ray_actor_loses_and_duplicates_nothing(
    ray_cluster: Any, tmp_path: Path, models: Models, reference: Reference
) -> None:
    from sealfn.runtime.executors.ray import RayFleet

    # Small model runs (2 records each): every partition takes a while, so the kill, which the
    # root hears of only when it drains the actor's events, lands while it still holds work.
    spec, data = _spec(models, tmp_path, records=6000, batch_size=2)
    fleet = RayFleet(spec)
    killed: list[str] = []

    def kill_once(event: Event) -> None:
        if event.kind is EventKind.PARTITION and not killed:
            killed.append(event.instance)
            fleet.kill(event.instance)

    config = JobConfig(instances=2, partition_records=200, progress=False)
    result = run_job(fleet, len(data), config, observer=kill_once)
    np.testing.assert_array_equal(
        result.outputs["output"], reference(models.mlp, {"input": data})["output"]
    )
    assert result.instances[killed[0]].died and len(result.instances) == 3
    assert max(result.computed().values()) == 1
    assert all(log.loads == 1 for log in result.instances.values())
