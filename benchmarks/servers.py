"""The two servers under test, each a subprocess on loopback: `sealfn serve` and a Ray Serve app."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

from sealfn.client import Client

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerFailed(RuntimeError):
    """A server did not start or stopped answering; the message says why."""


class SealfnServer:
    """`python -m sealfn.cli serve` with a fresh state directory, driven by the sealfn client."""

    def __init__(self, python: str, state_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        command = [python, "-m", "sealfn.cli", "serve", "--port", str(self.port)]
        command += ["--state-dir", str(state_dir)]
        self._log = log_path.open("wb")
        self._token = secrets.token_urlsafe(32)  # the admin API's bearer token
        env = {**os.environ, "SEALFN_ADMIN_TOKEN": self._token}
        self._began = time.perf_counter()
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        self.pid = self._process.pid

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Seconds from spawn to ``/v2/health/ready`` answering 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerFailed(f"sealfn serve exited with {self._process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - self._began
            time.sleep(0.02)
        raise ServerFailed(f"sealfn serve not ready after {timeout_s:g} s")

    # Control calls each open a fresh connection: a pooled one idle for uvicorn's keep-alive
    # timeout (5 s, about one window) can be closed by the server just as it is reused.

    def deploy(self, name: str, model: Path, **settings: Any) -> dict[str, Any]:
        with Client(self.url, admin_token=self._token) as client:
            return client.deploy(name, model, **settings)

    def undeploy(self, name: str) -> None:
        with Client(self.url, admin_token=self._token) as client:
            client.undeploy(name)

    def function(self, name: str) -> dict[str, Any]:
        with Client(self.url, admin_token=self._token) as client:
            functions = client.status()["functions"]
        for function in functions:
            if function["name"] == name:
                result: dict[str, Any] = function
                return result
        raise ServerFailed(f"function {name!r} is not in /admin/status")

    def wait_instances(self, name: str, ready: int, timeout_s: float = 120.0) -> bool:
        """Wait until ``name`` has ``ready`` serving (warm or idle) instances and no other."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = self.function(name)["instances"]
            serving = states["warm"] + states["idle"]
            if serving == ready and sum(states.values()) == serving:
                return True
            time.sleep(0.05)
        return False

    def batch_counters(self, name: str) -> tuple[float, float]:
        """(sum of batch sizes, number of batches) from ``/metrics``."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        found = {"sum": 0.0, "count": 0.0}
        pattern = re.compile(
            rf'^sealfn_batch_size_(sum|count)\{{function="{re.escape(name)}"\}} (\S+)'
        )
        for line in text.splitlines():
            if match := pattern.match(line):
                found[match.group(1)] = float(match.group(2))
        return found["sum"], found["count"]

    def stop(self) -> int | None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        return self._process.returncode


class RayServer:
    """``ray_serve_app.py`` under the Ray venv's interpreter, commanded over stdin/stdout."""

    def __init__(self, python: Path, script: Path, log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self._began = time.perf_counter()
        self._log = log_path.open("wb")
        self.log_path = log_path
        self._process = subprocess.Popen(
            [str(python), str(script), "--port", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
        )
        self.pid = self._process.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        stdout = self._process.stdout
        if stdout is None:
            raise ServerFailed("no stdout pipe to the Ray app")
        threading.Thread(target=_pump_lines, args=(stdout, self._lines), daemon=True).start()

    def wait_ready(self, timeout_s: float = 300.0) -> dict[str, Any]:
        """The app's ready message plus ``spawn_to_ready_s`` (process start to Serve up)."""
        ready = self._reply(timeout_s)
        ready["spawn_to_ready_s"] = time.perf_counter() - self._began
        return ready

    def command(self, timeout_s: float = 300.0, **command: Any) -> dict[str, Any]:
        stdin = self._process.stdin
        if stdin is None or self._process.poll() is not None:
            raise ServerFailed(f"the Ray app is not running ({self._tail()})")
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        reply = self._reply(timeout_s)
        if "error" in reply:
            raise ServerFailed(f"Ray app failed {command['op']}: {reply['error']}")
        return reply

    def stop(self) -> int | None:
        if self._process.poll() is None:
            with contextlib.suppress(ServerFailed, OSError):
                self.command(timeout_s=60, op="exit")
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        return self._process.returncode

    def _reply(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise ServerFailed(f"the Ray app exited ({self._tail()})")
            if line.startswith("@@ "):
                reply: dict[str, Any] = json.loads(line[3:])
                return reply
        raise ServerFailed(f"no reply from the Ray app after {timeout_s:g} s ({self._tail()})")

    def _tail(self) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-5:]) or "no stderr"


def _pump_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)
