"""Per-client inputs, their KServe v2 binary bodies (built once) and the outputs they must give."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen import Reply, http_request
from ort_load import session_options
from sealfn import oip
from sealfn.workloads.models import ExampleModel

Array = npt.NDArray[np.float32]
SEED_BASE = 100  # client i sends model.sample(1, seed=SEED_BASE + i)
RTOL = ATOL = 1e-3  # batched kernels may round differently from batch-1 ones


@dataclass(frozen=True)
class Payload:
    x: Array  # (1, *input_shape[1:])
    body: bytes  # KServe v2 binary-tensor request body
    headers: dict[str, str]
    expected: Array  # in-process onnxruntime's output for x


class Workload:
    """One model, one in-process session, and a distinct payload per client."""

    def __init__(self, model: ExampleModel, clients: int) -> None:
        import onnxruntime as ort

        self.model = model
        self.session: Any = ort.InferenceSession(
            str(model.path), sess_options=session_options(ort), providers=["CPUExecutionProvider"]
        )
        self.payloads = tuple(self._payload(SEED_BASE + i) for i in range(clients))

    @property
    def name(self) -> str:
        return self.model.name

    def payload(self, client: int) -> Payload:
        return self.payloads[client % len(self.payloads)]

    def request(self, client: int, host: str, port: int, path: str) -> bytes:
        payload = self.payload(client)
        return http_request(host, port, path, payload.body, payload.headers)

    def run_local(self, client: int) -> Array:
        result: Array = self.session.run(None, {self.model.input_name: self.payload(client).x})[0]
        return result

    def check(self, replies: Sequence[Any]) -> int:
        """Compare each client's last reply with its expected output; return how many matched.

        Raises ``ValueError`` on a mismatch (a batching bug would hand a client another's row).
        """
        checked = 0
        for client, reply in enumerate(replies):
            if reply is None:
                continue
            got = _output(reply)
            want = self.payload(client).expected
            if got.shape != want.shape or not np.allclose(got, want, rtol=RTOL, atol=ATOL):
                raise ValueError(f"{self.name}: client {client} got a wrong output")
            checked += 1
        return checked

    def _payload(self, seed: int) -> Payload:
        x = self.model.sample(1, seed=seed)
        tensor = oip.Tensor.from_numpy(self.model.input_name, x)
        body, headers = oip.encode_request([tensor], binary=True, binary_output=True)
        expected: Array = self.session.run(None, {self.model.input_name: x})[0]
        return Payload(x, body, headers, expected)


def _output(reply: Any) -> Array:
    if isinstance(reply, np.ndarray):
        return reply
    if not isinstance(reply, Reply):
        raise TypeError(f"unexpected reply type {type(reply).__name__}")
    length = reply.headers.get("inference-header-content-length")
    response = oip.decode_response(reply.body, int(length) if length else None)
    data: Array = response.outputs[0].data
    return data
