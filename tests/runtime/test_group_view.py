"""What a packed group tells the packer about its instances: when running batches started."""

from __future__ import annotations

from pathlib import Path

from sealfn.config import FunctionSpec
from sealfn.runtime.function import Function
from sealfn.runtime.group import Group
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
