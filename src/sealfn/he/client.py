"""The HE SDK: encrypt locally → infer on the served function → decrypt locally.

client = HeClient("http://127.0.0.1:8080")
needs = client.requirements("digits-he")
keys = named("tenseal").keygen(choose(needs.depth, needs.width))  # stays on this machine
client.upload_keys(keys)                                           # once per session
logits = client.infer("digits-he", keys, image, needs)
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

import httpx
import numpy as np

from sealfn.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    ModelError,
    NotFound,
    PayloadTooLarge,
    SealfnError,
    StorageError,
    Unavailable,
)
from sealfn.he.backend import SecretKeys, named
from sealfn.he.protocol import (
    CONTENT_TYPE,
    FUNCTIONS_PATH,
    INFER_PATH,
    KEYS_PATH,
    HeMessage,
    Kind,
    Requirements,
)

CHUNK = 1 << 20  # bytes per chunk of a streamed key upload
_ERRORS: dict[int, type[SealfnError]] = {
    400: InvalidInput,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ModelError,
    503: Unavailable,
    507: StorageError,
}


class HeClient:
    def __init__(self, url: str, *, timeout_s: float = 600.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)

    def __enter__(self) -> HeClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def requirements(self, function: str) -> Requirements:
        return Requirements.from_dict(
            _checked(self._http.get(f"{FUNCTIONS_PATH}/{function}")).json()
        )

    def upload_keys(self, keys: SecretKeys) -> str:
        """Upload the evaluation keys unless the server has them; returns their id."""
        key_id = keys.key_id
        if self._http.get(f"{KEYS_PATH}/{key_id}").status_code == 200:
            return key_id
        data = keys.evaluation_keys()
        reply = _checked(
            self._http.put(KEYS_PATH, content=_chunks(data), headers=_length(len(data)))
        )
        if reply.json().get("key_id") != key_id:
            raise ModelError("the server stored the evaluation keys under another id")
        return key_id

    def infer(
        self, function: str, keys: SecretKeys, values: np.ndarray, needs: Requirements
    ) -> np.ndarray:
        """Logits (``needs.outputs``,) for one input; only ciphertext leaves this process."""
        if keys.params.levels < needs.depth:
            raise ConfigError(
                f"these keys allow depth {keys.params.levels}; {function!r} needs {needs.depth}"
            )
        backend = named(keys.backend)
        ciphertext = backend.encrypt(keys, values, needs.width)
        body = HeMessage(Kind.REQUEST, keys.key_id, ciphertext).to_bytes()
        message = HeMessage.from_bytes(self._post_streamed(function, body), Kind.REPLY)
        if message.key_id != keys.key_id:
            raise ModelError("the reply is for other keys")
        return backend.decrypt(keys, message.ciphertext, needs.width, needs.outputs)

    def _post_streamed(self, function: str, body: bytes) -> bytes:
        """Send ``body`` in chunks, read the reply in chunks (ciphertexts reach several MB)."""
        headers = {"content-type": CONTENT_TYPE, **_length(len(body))}
        path = INFER_PATH.format(name=function)
        with self._http.stream("POST", path, content=_chunks(body), headers=headers) as reply:
            if reply.status_code >= 400:
                reply.read()
                _checked(reply)
            received = bytearray()
            for chunk in reply.iter_bytes():
                received += chunk
        return bytes(received)


def _length(size: int) -> dict[str, str]:
    """A declared length lets the server refuse (413) or make room before the first chunk."""
    return {"content-length": str(size)}


def _chunks(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


def _checked(reply: httpx.Response) -> httpx.Response:
    if reply.status_code < 400:
        return reply
    try:
        message = str(reply.json().get("error", reply.text))
    except ValueError:
        message = reply.text
    raise _ERRORS.get(reply.status_code, SealfnError)(message)
