"""The sealfn client: Open Inference Protocol calls and the admin API, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from sealfn.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelError,
    NotFound,
    PayloadTooLarge,
    SealfnError,
    Unavailable,
)
from sealfn.runtime import oip
from sealfn.signature import datatype_of

__all__ = ["DEFAULT_URL", "Client"]

DEFAULT_URL = "http://127.0.0.1:8080"
_ERRORS: dict[int, type[SealfnError]] = {
    400: InvalidInput,
    404: NotFound,
    413: PayloadTooLarge,
    422: ModelError,
    503: Unavailable,
    504: DeadlineExceeded,
}


class Client:
    """A small synchronous client; errors come back as the server's typed errors."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def infer(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [
            oip.Tensor(k, datatype_of(v.dtype), tuple(v.shape), v) for k, v in inputs.items()
        ]
        body, headers = oip.encode_request(tensors, binary=True, binary_output=True)
        reply = self._call("POST", f"/v2/models/{name}/infer", content=body, headers=headers)
        length = reply.headers.get("inference-header-content-length")
        response = oip.decode_response(reply.content, int(length) if length else None)
        return {t.name: t.data for t in response.outputs}

    def metadata(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v2/models/{name}").json()
        return result

    def deploy(self, name: str, model: Path, **settings: Any) -> dict[str, Any]:
        headers = {"x-sealfn-spec": json.dumps(settings)}
        reply = self._call(
            "PUT", f"/admin/functions/{name}", content=model.read_bytes(), headers=headers
        )
        result: dict[str, Any] = reply.json()
        return result

    def undeploy(self, name: str) -> None:
        self._call("DELETE", f"/admin/functions/{name}")

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/admin/status").json()
        return result

    def live(self) -> bool:
        try:
            return self._http.get("/v2/health/live").status_code == 200
        except httpx.HTTPError:
            return False

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            reply = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"cannot reach sealfn at {self.url}: is `sealfn serve` running?"
            ) from exc
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"{method} {path} timed out") from exc
        if reply.status_code >= 400:
            try:
                message = str(reply.json().get("error", reply.text))
            except ValueError:
                message = reply.text
            raise _ERRORS.get(reply.status_code, SealfnError)(message)
        return reply
