"""Fn-Packer end to end: many models on few shared instances, eviction under a memory budget."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sealfn_testing import Server, wait_until

if TYPE_CHECKING:
    from sealfn_testing import Models

Reference = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]


def scaled_model(path: Path, scale: float, width: int = 16) -> Path:
    """output = input @ W with W full of ``scale``: each model's answer tells which one ran."""
    weights = numpy_helper.from_array(np.full((width, 4), scale, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "scaled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def _instances(server: Server, names: list[str]) -> dict[str, list[str]]:
    """Instance id → models it holds, across the group."""
    held: dict[str, list[str]] = {}
    for name in names:
        for instance in server.function(name)["instance_list"]:
            held[instance["id"]] = instance["models"]
    return held


def test_twenty_models_on_at_most_four_instances(
    server: Server, tmp_path: Path, deploy: Callable[..., str]
) -> None:
    names = [
        deploy(scaled_model(tmp_path / f"m{i}.onnx", float(i)), group="twenty", max_instances=4)
        for i in range(20)
    ]
    x = np.ones((1, 16), np.float32)

    def call(i: int) -> None:
        from sealfn.client import Client

        with Client(server.url) as client:
            out = client.infer(names[i % 20], {"input": x})["output"]
        np.testing.assert_allclose(out, np.full((1, 4), 16.0 * (i % 20)))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(120)))
    held = _instances(server, names)
    assert 1 <= len(held) <= 4
    assert set(names) <= {m for models in held.values() for m in models}
    assert all(server.function(n)["group"] == "twenty" for n in names)


def test_budget_full_evicts_lru_and_reloads_without_failing(
    server: Server, tmp_path: Path, deploy: Callable[..., str]
) -> None:
    """One instance whose budget fits two of these models (8 MiB of weights each: ~10.6 MB
    counted): cycling over four evicts and reloads, and every request gets its own answer."""
    width = 1 << 19  # x (width, 4) float32 weights = 8 MiB per model
    names = [
        deploy(
            scaled_model(tmp_path / f"big{i}.onnx", float(i + 1), width),
            group="tight",
            max_instances=1,
            memory_mb=24,
        )
        for i in range(4)
    ]
    x = np.ones((1, width), np.float32)
    for round_ in range(3):
        for i, name in enumerate(names):
            out = server.client.infer(name, {"input": x})["output"]
            np.testing.assert_allclose(out, np.full((1, 4), float(width * (i + 1))), rtol=1e-5)
        held = _instances(server, names)
        assert len(held) == 1, held
        assert len(next(iter(held.values()))) <= 2, (round_, held)


@pytest.mark.parametrize("keep_alive", [0.5])
def test_idle_models_unload_per_model_then_the_instance_retires(
    server: Server, tmp_path: Path, deploy: Callable[..., str], keep_alive: float
) -> None:
    names = [
        deploy(scaled_model(tmp_path / f"idle{i}.onnx", 1.0), group="idle", keep_alive_s=keep_alive)
        for i in range(2)
    ]
    x = np.ones((1, 16), np.float32)
    for name in names:
        server.client.infer(name, {"input": x})
    assert _instances(server, names)
    server.wait_until(lambda: not _instances(server, names), 15, "idle models and instance to go")
    # and it comes back on demand
    assert server.client.infer(names[0], {"input": x})["output"].shape == (1, 4)
    wait_until(lambda: _instances(server, names), 5, "the instance to be listed again")


def test_a_busy_model_gets_a_replica_before_requests_queue(
    server: Server, models: Models, reference: Reference, deploy: Callable[..., str]
) -> None:
    """One client, back to back, never queues two requests: `place` alone would keep the model on
    one instance. Its peak rate x run time is most of an instance, though, so `replicate` starts
    a second instance and loads a copy there ahead of any burst; answers stay exact."""
    name = deploy(models.slow, group="replicas", max_instances=2)
    x = np.random.default_rng(3).standard_normal((1, 256)).astype(np.float32)
    expected = reference(models.slow, {"input": x})["output"]

    def holders() -> int:
        return sum(name in held for held in _instances(server, [name]).values())

    for _ in range(400):
        out = server.client.infer(name, {"input": x})["output"]
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
        if holders() == 2:
            break
    server.wait_until(lambda: holders() == 2, 15, "a second copy of the busy model")
    assert len(_instances(server, [name])) == 2
