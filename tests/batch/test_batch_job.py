"""The batch job end to end on local processes: same answers as one process, loads, failures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sealfn.batch.fleet import LocalFleet, WorkerSpec
from sealfn.batch.job import JobConfig, run_job
from sealfn.batch.messages import Event, EventKind
from sealfn_testing import Models

Reference = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]
RECORDS = 1003  # not a multiple of the partition size: the last partition is short


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "records.npy"
    np.save(path, np.random.default_rng(7).standard_normal((RECORDS, 16)).astype(np.float32))
    return path


def fleet_for(models: Models, data: Path, tmp_path: Path, batch_size: int = 64) -> LocalFleet:
    return LocalFleet(WorkerSpec(models.mlp, data, tmp_path / "checkpoints", batch_size=batch_size))


def test_output_equals_single_process_inference(
    models: Models, data: Path, tmp_path: Path, reference: Reference
) -> None:
    fleet = fleet_for(models, data, tmp_path)
    result = run_job(fleet, RECORDS, JobConfig(instances=2, partition_records=100, progress=False))
    expected = reference(models.mlp, {"input": np.load(data)})
    assert result.outputs.keys() == expected.keys()
    np.testing.assert_array_equal(result.outputs["output"], expected["output"])
    assert result.partitions == 11 and result.rounds == 1
    assert sorted(result.instances) == ["i0", "i1"]
    assert [log.loads for log in result.instances.values()] == [1, 1]  # one load per instance
    assert set(result.computed().values()) == {1}
    done = sorted(p for log in result.instances.values() for p, _, _, _ in log.partitions)
    assert done == list(range(11))  # each partition done once, by one instance or the other


def test_killed_instance_loses_and_duplicates_nothing(
    models: Models, data: Path, tmp_path: Path, reference: Reference
) -> None:
    fleet = fleet_for(models, data, tmp_path, batch_size=8)
    killed: list[str] = []

    def kill_first_to_finish_a_partition(event: Event) -> None:
        if event.kind is EventKind.PARTITION and not killed:
            killed.append(event.instance)
            fleet.kill(event.instance)  # SIGKILL, mid-job: it holds more partitions

    result = run_job(
        fleet,
        RECORDS,
        JobConfig(instances=2, partition_records=50, progress=False),
        observer=kill_first_to_finish_a_partition,
    )
    expected = reference(models.mlp, {"input": np.load(data)})
    np.testing.assert_array_equal(result.outputs["output"], expected["output"])  # none lost
    assert result.outputs["output"].shape[0] == RECORDS  # none duplicated
    assert result.instances[killed[0]].died
    assert result.rounds >= 2
    assert len(result.instances) == 3  # a replacement started
    assert all(log.loads == 1 for log in result.instances.values())
    computed = result.computed()
    assert max(computed.values()) == 1, "a finished partition was run again"
    restored = [p for log in result.instances.values() for p, c, _, _ in log.partitions if not c]
    assert restored, "the dead instance's finished partitions came back from checkpoints"


def test_an_empty_dataset_is_an_empty_result(models: Models, tmp_path: Path) -> None:
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros((0, 16), dtype=np.float32))
    result = run_job(fleet_for(models, path, tmp_path), 0, JobConfig(instances=1, progress=False))
    assert result.outputs == {} and result.partitions == 0
