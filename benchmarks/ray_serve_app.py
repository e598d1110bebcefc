"""The Ray Serve side of the serving benchmark; runs under ``.venv-bench/bin/python``.

It starts a local Ray cluster and Serve's HTTP proxy on ``--port``, then obeys one JSON command
per stdin line and answers each with one stdout line starting with ``@@ ``:

    {"op": "deploy", "name": N, "model": PATH, "input": NAME, "batch": 0|B, "zero": false}
    {"op": "replicas", "name": N}    {"op": "delete", "name": N}    {"op": "exit"}

Each application serves one ONNX model at ``POST /N``: an onnxruntime session inside a
``@serve.deployment``, reading the same KServe v2 binary-tensor body the benchmark sends sealfn
and answering in the same format, parsed as leanly as sealfn's gateway does (JSON header, then
``np.frombuffer``). ``batch`` > 0 wraps inference in ``@serve.batch(max_batch_size=batch)``.
``GET /N`` returns the replica's (batches, items) counters, to report the mean batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Any

import numpy as np

HEADER_LENGTH = "inference-header-content-length"
BATCH_WAIT_S = 0.0  # take what is queued, never wait for more: no added latency at one client
BATCH_MAX_ONGOING = 16  # must exceed max_batch_size, or batches can never fill
COLD_SCALING = {  # scale-from-zero arm: react at once, go back to zero after 2 idle seconds
    "min_replicas": 0,
    "initial_replicas": 0,
    "max_replicas": 1,
    "upscale_delay_s": 0.0,
    "downscale_delay_s": 2.0,
    "downscale_to_zero_delay_s": 2.0,
    "metrics_interval_s": 0.5,
    "look_back_period_s": 1.0,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    import ray
    from ray import serve

    imported = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    initialised = time.perf_counter()
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    started = time.perf_counter()
    _emit(
        {
            "event": "ready",
            "import_s": imported - began,
            "ray_init_s": initialised - imported,
            "serve_start_s": started - initialised,
            "versions": {"ray": ray.__version__, "onnxruntime": _ort_version()},
        }
    )
    for line in sys.stdin:
        command = json.loads(line)
        try:
            reply = _obey(command)
        except Exception as exc:  # report and keep serving: the benchmark decides what to do
            reply = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        _emit(reply)
        if command["op"] == "exit":
            break
    return 0


def _obey(command: dict[str, Any]) -> dict[str, Any]:
    from ray import serve

    op = command["op"]
    if op == "deploy":
        started = time.perf_counter()
        serve.run(_application(command), name=command["name"], route_prefix=f"/{command['name']}")
        return {"serve_run_s": time.perf_counter() - started}
    if op == "replicas":
        return {"running": _running_replicas(command["name"])}
    if op == "delete":
        serve.delete(command["name"])
        return {"deleted": command["name"]}
    if op == "exit":
        serve.shutdown()
        import ray

        ray.shutdown()
        return {"exited": True}
    raise ValueError(f"unknown op {op!r}")


def _running_replicas(name: str) -> int:
    from ray import serve

    app = serve.status().applications[name]
    return sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values())


def _application(command: dict[str, Any]) -> Any:
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    class OnnxModel:
        def __init__(self, name: str, path: str, input_name: str) -> None:
            self.name, self.input_name = name, input_name
            self.session = _session(path)
            self.batches = self.items = 0

        async def __call__(self, request: Request) -> Response:
            if request.method == "GET":
                return JSONResponse({"batches": self.batches, "items": self.items})
            x = _decode(await request.body(), request.headers.get(HEADER_LENGTH))
            return _encode(self.name, await self.infer(x))

        async def infer(self, x: np.ndarray) -> np.ndarray:
            self.batches += 1
            self.items += 1
            result: np.ndarray = self.session.run(None, {self.input_name: x})[0]
            return result

    class BatchedOnnxModel(OnnxModel):
        @serve.batch(max_batch_size=int(command["batch"] or 1), batch_wait_timeout_s=BATCH_WAIT_S)
        async def infer(self, xs: list[np.ndarray]) -> list[np.ndarray]:  # type: ignore[override]
            self.batches += 1
            self.items += len(xs)
            y = self.session.run(None, {self.input_name: np.concatenate(xs)})[0]
            return np.split(y, np.cumsum([len(x) for x in xs])[:-1])

    options: dict[str, Any] = {"num_replicas": 1}
    cls: type = OnnxModel
    if command.get("batch"):
        cls = BatchedOnnxModel
        options["max_ongoing_requests"] = BATCH_MAX_ONGOING
    if command.get("zero"):
        options = {"autoscaling_config": dict(COLD_SCALING)}
    deployment = serve.deployment(cls, name=command["name"], **options)
    return deployment.bind(command["name"], command["model"], command["input"])


def _session(path: str) -> Any:
    """Session options as in a sealfn instance and the in-process arm (see ort_load.py)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def _decode(body: bytes, header_length: str | None) -> np.ndarray:
    """The single FP32 input of a KServe v2 binary-tensor request."""
    if header_length is None:
        raise ValueError(f"missing {HEADER_LENGTH}")
    start = int(header_length)
    spec = json.loads(body[:start])["inputs"][0]
    if spec["datatype"] != "FP32":
        raise ValueError(f"expected FP32, got {spec['datatype']}")
    x = np.frombuffer(body, dtype=np.float32, offset=start).reshape(spec["shape"])
    return x if x.flags.aligned else x.copy()


def _encode(name: str, y: np.ndarray) -> Any:
    from starlette.responses import Response

    header = json.dumps(
        {
            "model_name": name,
            "outputs": [
                {
                    "name": "output",
                    "datatype": "FP32",
                    "shape": list(y.shape),
                    "parameters": {"binary_data_size": y.nbytes},
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    headers = {HEADER_LENGTH: str(len(header))}
    body = header + np.ascontiguousarray(y, dtype=np.float32).tobytes()
    return Response(body, headers=headers, media_type="application/octet-stream")


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def _emit(message: dict[str, Any]) -> None:
    print("@@ " + json.dumps(message), flush=True)


if __name__ == "__main__":
    sys.exit(main())
