"""The README's commands, run as a user would: `sealfn deploy/invoke/status/undeploy --url ...`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from sealfn_testing import Models, Server

SEALFN = Path(sys.executable).with_name("sealfn")  # the console script the README uses
Reference = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]


@pytest.fixture(autouse=True)
def admin_token(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a user would: export the token `sealfn serve` made (or run from its folder)."""
    monkeypatch.setenv("SEALFN_ADMIN_TOKEN", server.admin_token)


def sealfn(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEALFN, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_deploy_invoke_status_undeploy(
    server: Server, models: Models, reference: Reference, tmp_path: Path
) -> None:
    x = np.random.default_rng(3).standard_normal((4, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    url = ("--url", server.url)

    deployed = sealfn(
        "deploy", "cli-mlp", models.mlp, "--max-batch", "4", "--keep-alive", "30", *url
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "deployed cli-mlp" in deployed.stdout
    assert server.function("cli-mlp")["spec"]["max_batch"] == 4
    assert server.function("cli-mlp")["spec"]["keep_alive_s"] == 30

    invoked = sealfn(
        "invoke", "cli-mlp", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", *url
    )
    assert invoked.returncode == 0, invoked.stderr
    assert "output: float32 [4, 4]" in invoked.stdout
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, reference(models.mlp, {"input": x})["output"])

    named = sealfn("invoke", "cli-mlp", "--input", f"input={tmp_path / 'x.npy'}", *url)
    assert named.returncode == 0, named.stderr

    status = sealfn("status", *url)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if "cli-mlp" in line)
    assert row.split()[0] == "cli-mlp"
    assert "cold starts" in status.stdout

    undeployed = sealfn("undeploy", "cli-mlp", *url)
    assert undeployed.returncode == 0, undeployed.stderr
    assert "undeployed cli-mlp" in undeployed.stdout
    assert "cli-mlp" not in sealfn("status", *url).stdout


@pytest.fixture(scope="module")
def cli_err(server: Server, models: Models) -> Iterator[str]:
    server.client.deploy("cli-err", models.mlp)
    yield "cli-err"
    server.client.undeploy("cli-err")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("invoke", "nope", "--input", "{x}"), "function 'nope' is not deployed"),
        (("undeploy", "nope"), "function 'nope' is not deployed"),
        (("deploy", "broken", "{corrupt}"), "ONNX model"),
        (("deploy", "bad name", "{mlp}"), "function name 'bad name' is invalid"),
        (("deploy", "m", "{mlp}", "--max-batch", "0"), "max_batch=0"),
        (("invoke", "cli-err", "--input", "{x_wrong}"), "input 'input': shape [2, 3]"),
    ],
)
@pytest.mark.usefixtures("cli_err")
def test_errors_print_a_message_and_exit_1(
    server: Server, models: Models, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 16), np.float32))
    np.save(tmp_path / "x_wrong.npy", np.zeros((2, 3), np.float32))
    paths = {
        "x": tmp_path / "x.npy",
        "x_wrong": tmp_path / "x_wrong.npy",
        "corrupt": models.corrupt,
        "mlp": models.mlp,
    }
    result = sealfn(*(a.format(**paths) for a in args), "--url", server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("sealfn: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_is_a_clear_error(models: Models, closed_url: str) -> None:
    url = closed_url
    result = sealfn("deploy", "m", models.mlp, "--url", url)
    assert result.returncode == 1
    assert f"cannot reach sealfn at {url}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["deploy", "invoke"])
def test_missing_file_is_a_clear_error(server: Server, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "missing.onnx"
    if command == "deploy":
        result = sealfn("deploy", "m", missing, "--url", server.url)
    else:
        result = sealfn("invoke", "m", "--input", missing, "--url", server.url)
    assert result.returncode == 1
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2() -> None:
    result = sealfn("deploy")
    assert result.returncode == 2
    assert "usage: sealfn deploy" in result.stderr
