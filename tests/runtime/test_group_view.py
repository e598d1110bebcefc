"""What a packed group tells the packer about its instances: when running batches started."""

from __future__ import annotations

from pathlib import Path

from sealfn.config import FunctionSpec
from sealfn.runtime import packing
from sealfn.runtime.function import Function
from sealfn.runtime.group import Group, estimated_model_mb
from sealfn.runtime.handle import InstanceHandle
from sealfn.runtime.lifecycle import InstanceState
from sealfn.signature import ModelSignature


def _group() -> tuple[Group, InstanceHandle]:
    function = Function(FunctionSpec("f"), Path("unused.onnx"), ModelSignature((), ()))
    group = Group("g", members={"f": function}, load_s={"f": 0.25})
    handle = InstanceHandle("i1", capacity=2, memory_mb=256, now=0.0)
    handle.state = InstanceState.IDLE
    handle.models.add("f")
    group.instances[handle.id] = handle
    return group, handle


def since(group: Group, handle: InstanceHandle) -> float | None:
    loaded = group.view(handle).model("f")
    assert loaded is not None
    return loaded.running_since


def test_running_since_is_the_oldest_running_batch() -> None:
    group, handle = _group()
    assert since(group, handle) is None
    handle.reserve(10.0, "f")
    handle.reserve(11.0, "f")
    assert since(group, handle) == 10.0
    handle.release(12.0, "f")
    assert since(group, handle) == 11.0
    handle.release(13.0, "f")
    assert since(group, handle) is None


def test_a_batch_waiting_on_its_load_starts_after_the_load() -> None:
    group, handle = _group()
    handle.models.discard("f")
    handle.loading.add("f")  # LOAD_AND_RUN: the batch is dispatched, the load still running
    handle.reserve(10.0, "f")
    assert since(group, handle) == 10.25


def test_model_memory_is_the_file_estimate_until_a_larger_load_is_measured(
    tmp_path: Path,
) -> None:
    """Tiny models count about 1 MB (a session adds ~0.1 MB measured), not a fixed 8 MB: a
    256 MB instance has room for well over a hundred of them."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\0" * (10 * 2**20))  # 10 MiB
    group, handle = _group()
    function = Function(FunctionSpec("f"), model, ModelSignature((), ()))
    group.members["f"] = function
    assert group.model_cost(function).memory_mb == estimated_model_mb(function.file_mb)
    assert 12.5 < group.model_cost(function).memory_mb < 14.0  # 1 + 1.2 x 10.49 MB
    handle.model_memory_mb["f"] = 30.0  # what the instance reported at LOAD
    assert group.model_cost(function).memory_mb == 30.0
    assert estimated_model_mb(0.01) < 1.1


class _NoPool:
    """A pool that must not be asked anything."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"pump asked the pool for {name} with no member left")


def test_a_group_whose_members_are_all_gone_is_left_alone() -> None:
    # while `leave` waits for the last member's instances to go, the control loop still ticks
    # the group and a booting or exiting instance pumps it; both used to raise in the group's
    # policy (max() of no members)
    packing.pump(_NoPool(), Group("g"))  # type: ignore[arg-type]
    packing.tick(_NoPool(), Group("g"), 0.0)  # type: ignore[arg-type]
