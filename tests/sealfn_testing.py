"""Test support: small ONNX models built with onnx.helper, and real `sealfn serve` processes.

Plain functions and classes live here (importable as ``sealfn_testing`` from any test); the
fixtures that use them are in conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sealfn import admintoken
from sealfn.client import Client

T = TypeVar("T")

OPSET = 17
IR_VERSION = 9  # what onnxruntime 1.31 reads; onnx's newest IR may be ahead of it
SLOW_LAYERS = 50  # MatMuls of 256x256 in the slow model: a few ms per run on one core
LARGE_WIDTH = 4096  # FP32 columns of the large-tensor model: 16 KiB per row

SEALFN = str(Path(sys.executable).with_name("sealfn"))  # the console script the README uses
# A fast control loop so scaling tests take seconds, and one ORT thread per instance so several
# instances share this machine's cores without oversubscribing them.
FAST_ENV = {
    "SEALFN_TICK_S": "0.1",
    "SEALFN_STABLE_WINDOW_S": "1",
    "SEALFN_PANIC_WINDOW_S": "0.3",
    "SEALFN_INSTANCE_THREADS": "1",
    "SEALFN_REQUEST_TIMEOUT_S": "30",
}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


# ---- models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Models:
    """Paths of the test models, built once per session."""

    mlp: Path  # "input" (B, 16) FP32 -> "output" (B, 4): MatMul+Add+Relu, MatMul+Add
    two_outputs: Path  # "x" (B, 8) FP32 -> "relu" (B, 8), "scaled" (B, 8) = 3x
    fixed: Path  # "x" (2, 3) FP32 -> "y" (2, 3) = x + 1; no dynamic dim, not batchable
    slow: Path  # "input" (B, 256) FP32 -> "output" (B, 256) through SLOW_LAYERS MatMuls
    large: Path  # "x" (B, LARGE_WIDTH) FP32 -> "y" = 2x + 1: big tensors both ways
    ragged: Path  # "x" (B, W) FP32 -> "y" (B, W) = 3x: batchable, but only equal widths stack
    corrupt: Path  # not an ONNX model


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _tensor(name: str, shape: list[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _weights(name: str, rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> Any:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def build_mlp(path: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"]),
        helper.make_node("Add", ["h4", "b2"], ["output"]),
    ]
    weights = [
        _weights("w1", rng, (16, 32), 0.5),
        _weights("b1", rng, (32,), 0.1),
        _weights("w2", rng, (32, 4), 0.5),
        _weights("b2", rng, (4,), 0.1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [_tensor("input", ["batch", 16])],
        [_tensor("output", ["batch", 4])],
        weights,
    )
    return _save(graph, path)


def build_two_outputs(path: Path) -> Path:
    nodes = [
        helper.make_node("Relu", ["x"], ["relu"]),
        helper.make_node("Mul", ["x", "three"], ["scaled"]),
    ]
    three = numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three")
    graph = helper.make_graph(
        nodes,
        "two_outputs",
        [_tensor("x", ["batch", 8])],
        [_tensor("relu", ["batch", 8]), _tensor("scaled", ["batch", 8])],
        [three],
    )
    return _save(graph, path)


def build_fixed(path: Path) -> Path:
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "fixed",
        [_tensor("x", [2, 3])],
        [_tensor("y", [2, 3])],
        [one],
    )
    return _save(graph, path)


def build_slow(path: Path) -> Path:
    rng = np.random.default_rng(1)
    nodes, weights, previous = [], [], "input"
    for layer in range(SLOW_LAYERS):
        out = "output" if layer == SLOW_LAYERS - 1 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{layer}"], [out]))
        weights.append(_weights(f"w{layer}", rng, (256, 256), 1 / 16))  # keeps the norm ~1
        previous = out
    graph = helper.make_graph(
        nodes,
        "slow",
        [_tensor("input", ["batch", 256])],
        [_tensor("output", ["batch", 256])],
        weights,
    )
    return _save(graph, path)


def build_large(path: Path) -> Path:
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["x2"]),
            helper.make_node("Add", ["x2", "one"], ["y"]),
        ],
        "large",
        [_tensor("x", ["batch", LARGE_WIDTH])],
        [_tensor("y", ["batch", LARGE_WIDTH])],
        [two, one],
    )
    return _save(graph, path)


def build_ragged(path: Path) -> Path:
    three = numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "three"], ["y"])],
        "ragged",
        [_tensor("x", ["batch", "width"])],
        [_tensor("y", ["batch", "width"])],
        [three],
    )
    return _save(graph, path)


def start_keyservice(folder: Path, platform: Path, port: int) -> subprocess.Popen[bytes]:
    """`python -m sealfn.keyservice` (simulated enclaves accepted) with its store in ``folder``,
    logging to ``folder/keyservice.log``; returns once /health answers."""
    command = [
        sys.executable, "-m", "sealfn.keyservice", f"--port={port}", f"--db={folder / 'ks.db'}",
        "--accept-simulated", f"--platform-dir={platform}", "--log-level=warning",
    ]  # fmt: skip
    with (folder / "keyservice.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the KeyService exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        return False

    try:
        wait_until(up, 30, "the KeyService")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def assert_clean_refusal(reply: httpx.Response) -> None:
    """A hostile request's answer: a success, or a 4xx whose JSON names the reason; never 5xx."""
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert reply.json()["error"], "a refusal names its reason"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Server:
    """A `sealfn serve` subprocess on a loopback port, and conveniences to talk to it."""

    url: str
    state_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    _client: Client | None = field(default=None, repr=False)

    @property
    def admin_token(self) -> str:
        """The bearer token the server made in its state directory on first start."""
        return admintoken.read(self.state_dir / admintoken.TOKEN_FILE)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.url, timeout=60, admin_token=self.admin_token)
        return self._client

    def http(self) -> httpx.Client:
        """A raw HTTP client that carries the admin token (every /admin/* call needs it)."""
        headers = admintoken.header(self.admin_token)
        return httpx.Client(base_url=self.url, timeout=60, headers=headers)

    def function(self, name: str) -> dict[str, Any]:
        """The function's entry in /admin/status (instances, instance_list, cold_starts, ...)."""
        for entry in self.client.status()["functions"]:
            if entry["name"] == name:
                return dict(entry)
        raise AssertionError(f"{name!r} is not in /admin/status")

    def alive(self, name: str) -> int:
        """Instances of ``name`` that hold a process (starting, warm, idle or draining)."""
        return sum(self.function(name)["instances"].values())

    def metrics(self) -> str:
        with self.http() as http:
            reply = http.get("/metrics")
        reply.raise_for_status()
        return reply.text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll ``probe`` until truthy; fails early if the server has died."""

        def checked() -> T | None:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"sealfn serve died ({self.process.returncode}):\n{self.log()}"
                )
            return probe()

        return wait_until(checked, timeout, what)

    def stop(self) -> int:
        """SIGINT, as ^C would; the exit code."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"sealfn serve ignored SIGINT:\n{self.log()}") from None


def launch(state_dir: Path, env: dict[str, str] | None = None) -> Server:
    """Start `sealfn serve` and wait until /v2/health/ready says so."""
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = state_dir.with_name(state_dir.name + f"-{port}.log")
    environment = {**os.environ, **FAST_ENV, **(env or {})}
    command = [SEALFN, "serve", "--port", str(port), "--state-dir", str(state_dir)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", state_dir, log_path, process)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"sealfn serve exited with {process.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200
        return False

    try:
        wait_until(ready, START_TIMEOUT_S, "sealfn serve to become ready")
    except BaseException:
        server.stop()
        raise
    return server


def stop_cleanly(server: Server) -> None:
    code = server.stop()
    assert code == 0, f"sealfn serve exited with {code}:\n{server.log()}"


def lockstep(config: Any, engine: Any, steps: int) -> tuple[list[float], list[float]]:
    """Training losses, step by step, of a coordinator-only trainer and one whose products run on
    ``engine``, side by side on the same batches (``config`` a
    :class:`~sealfn.training.coordinator.TrainConfig`; torch is imported only when called)."""
    from sealfn.training.coordinator import Trainer, batches
    from sealfn.training.data import digits

    data = digits(config.torch_dtype)
    plain, offloaded = Trainer(config, None), Trainer(config, engine)
    plain_losses: list[float] = []
    offloaded_losses: list[float] = []
    epoch = 0
    while len(plain_losses) < steps:
        epoch += 1
        for x, y in batches(data, config, epoch)[: steps - len(plain_losses)]:
            plain_losses.append(plain.step(x, y)[0])
            offloaded_losses.append(offloaded.step(x, y)[0])
    return plain_losses, offloaded_losses
