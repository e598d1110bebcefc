"""Shared fixtures: small ONNX models, onnxruntime references, real `sealfn serve` processes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from sealfn.errors import NotFound
from sealfn_testing import (
    Models,
    Server,
    build_fixed,
    build_large,
    build_mlp,
    build_ragged,
    build_slow,
    build_two_outputs,
    free_port,
    launch,
    stop_cleanly,
)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    folder = tmp_path_factory.mktemp("models")
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not an onnx model\xff\xfe" * 40)
    return Models(
        mlp=build_mlp(folder / "mlp.onnx"),
        two_outputs=build_two_outputs(folder / "two_outputs.onnx"),
        fixed=build_fixed(folder / "fixed.onnx"),
        slow=build_slow(folder / "slow.onnx"),
        large=build_large(folder / "large.onnx"),
        ragged=build_ragged(folder / "ragged.onnx"),
        corrupt=corrupt,
    )


@pytest.fixture(scope="session")
def reference() -> Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Run a model in-process with onnxruntime: the answer the server must give."""
    sessions: dict[Path, Any] = {}

    def run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if path not in sessions:
            sessions[path] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        session = sessions[path]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds), strict=True))

    return run


# ---- servers -------------------------------------------------------------------------------


@pytest.fixture
def closed_url() -> str:
    """A loopback URL that nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server for the e2e tests; each test deploys functions under its own names."""
    shared = launch(tmp_path_factory.mktemp("shared") / "state")
    yield shared
    stop_cleanly(shared)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start extra servers: ``start_server(state_dir=None, **env)``; all stopped after the test."""
    started: list[Server] = []

    def start(state_dir: Path | None = None, **env: str) -> Server:
        folder = state_dir or tmp_path / f"state{len(started)}"
        started.append(launch(folder, env))
        return started[-1]

    yield start
    for extra in started:
        stop_cleanly(extra)


@pytest.fixture
def deploy(server: Server, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Deploy on the shared server under a name unique to this test; undeployed afterwards.

    ``deploy(model_path, suffix="", **settings)`` returns the function's name.
    """
    names: list[str] = []
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")

    def _deploy(model: Path, suffix: str = "", **settings: Any) -> str:
        name = f"{base}{suffix}-{len(names)}"
        server.client.deploy(name, model, **settings)
        names.append(name)
        return name

    yield _deploy
    for name in names:
        with contextlib.suppress(NotFound):
            server.client.undeploy(name)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster for the whole session (fractional CPUs: 2-core machines); skips the
    test when the optional Ray extra is not installed (`make test-ray` installs it)."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()
