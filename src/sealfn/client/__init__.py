"""The sealfn client: Open Inference Protocol calls and the admin API, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from sealfn import admintoken, errors, oip
from sealfn.errors import (
    AccessDenied,
    DeadlineExceeded,
    EnvelopeError,
    InvalidInput,
    ModelError,
    NotFound,
    PayloadTooLarge,
    SealfnError,
    Unavailable,
)
from sealfn.signature import datatype_of

if TYPE_CHECKING:
    from sealfn.attestation import Policy
    from sealfn.envelope import ReplyKey
    from sealfn.envelope.session import ClientSession
    from sealfn.keyservice.keys import DeploymentKey
    from sealfn.sealed_request import Signer

__all__ = ["DEFAULT_URL", "Client", "SealedSession"]

DEFAULT_URL = "http://127.0.0.1:8080"
SEALED_CONTENT_TYPE = "application/vnd.sealfn.sealed"
_ERRORS: dict[int, type[SealfnError]] = {
    400: InvalidInput,
    403: AccessDenied,
    404: NotFound,
    413: PayloadTooLarge,
    422: ModelError,
    503: Unavailable,
    504: DeadlineExceeded,
}


class Client:
    """A small synchronous client; errors come back as the server's typed errors."""

    def __init__(
        self, url: str = DEFAULT_URL, timeout: float = 120.0, *, admin_token: str | None = None
    ) -> None:
        """``admin_token`` (for deploy/undeploy/status) defaults to what ``admintoken.find``
        finds: ``SEALFN_ADMIN_TOKEN``, else the token file in the state directory."""
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._admin_token = admintoken.find(admin_token)
        self._sessions: dict[tuple[str, bytes, int], tuple[Signer, ClientSession]] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def infer(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        body, headers = oip.encode_request(_tensors(inputs), binary=True, binary_output=True)
        reply = self._call("POST", f"/v2/models/{name}/infer", content=body, headers=headers)
        length = reply.headers.get("inference-header-content-length")
        response = oip.decode_response(reply.content, int(length) if length else None)
        return {t.name: t.data for t in response.outputs}

    def infer_sealed(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray],
        *,
        key: DeploymentKey,
        signer: Signer,
        session: bool = True,
    ) -> dict[str, np.ndarray]:
        """Seal (HPKE to the deployment ``key``, signed by ``signer``), send, open the reply.

        Get ``key`` with ``KeyServiceClient.deployment_key(name, policy=...)`` so the KeyService
        attests it; the platform in between sees only ciphertext. With ``session`` (the default)
        the HPKE exchange and the signature happen once per (model, key, signer) every few
        minutes and each request is one AES-GCM seal (``envelope.session``); without it, every
        request is a full HPKE request of its own.
        """
        from sealfn.sealed_request import open_inference_reply

        body, headers = oip.encode_request(_tensors(inputs), binary=True, binary_output=True)
        length = headers.get("Inference-Header-Content-Length")
        header_length = int(length) if length else None
        try:
            sealed, reply_key = self._seal(name, body, header_length, key, signer, session)
            reply = self._send_sealed(name, sealed)
        except EnvelopeError:
            if not session:
                raise
            self._sessions.pop((name, key.public_key, id(signer)), None)  # start afresh, once
            sealed, reply_key = self._seal(name, body, header_length, key, signer, session)
            reply = self._send_sealed(name, sealed)
        opened = open_inference_reply(reply_key, reply.content)
        if opened.status >= 400:
            message = json.loads(opened.body).get("error", "refused")
            raise _ERRORS.get(opened.status, SealfnError)(message)
        response = oip.decode_response(opened.body, opened.header_length)
        return {t.name: t.data for t in response.outputs}

    def _seal(  # noqa: PLR0917 - infer_sealed's arguments, passed on once
        self,
        name: str,
        body: bytes,
        header_length: int | None,
        key: DeploymentKey,
        signer: Signer,
        session: bool,
    ) -> tuple[bytes, ReplyKey]:
        from sealfn.sealed_request import seal_in_session, seal_inference, start_session

        if not session:
            return seal_inference(
                body, header_length=header_length, public_key=key.public_key, model_id=name,
                signer=signer, suite=key.suite,
            )  # fmt: skip
        # By the signer object, not its name: a session speaks for whoever signed its ticket.
        slot = (name, key.public_key, id(signer))
        owner, current = self._sessions.get(slot, (None, None))
        if owner is not signer or current is None or not current.fresh():
            current = start_session(
                public_key=key.public_key, model_id=name, signer=signer, suite=key.suite
            )
            self._sessions[slot] = (signer, current)
        return seal_in_session(current, body, header_length=header_length)

    def _send_sealed(self, name: str, sealed: bytes) -> httpx.Response:
        from sealfn.sealed_request import CONTENT_TYPE

        return self._call(
            "POST",
            f"/v2/models/{name}/infer",
            content=sealed,
            headers={"content-type": CONTENT_TYPE},
            sealed_ok=True,
        )

    def sealed(self, keyservice: str, signer: Signer, policy: Policy) -> SealedSession:
        """A session for sealed calls: it verifies the KeyService's attestation of each model's
        deployment key (once per model) under ``policy``, then seals, sends and opens."""
        return SealedSession(self, keyservice, signer, policy)

    def metadata(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v2/models/{name}").json()
        return result

    def deploy(self, name: str, model: Path | None, **settings: Any) -> dict[str, Any]:
        """Deploy ``model`` (ONNX, or sealed with ``sealed=True``); ``model=None`` with
        ``model_store=URL``: the enclave fetches the sealed model from the store itself."""
        headers = {"x-sealfn-spec": json.dumps(settings)}
        content = model.read_bytes() if model is not None else b""
        reply = self._call("PUT", f"/admin/functions/{name}", content=content, headers=headers)
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

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if path.startswith("/admin/") and self._admin_token is not None:
            # Only admin calls carry the token: inference requests never do.
            kwargs["headers"] = {
                **kwargs.get("headers", {}),
                **admintoken.header(self._admin_token),
            }
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # A pooled keep-alive connection the server closed just as we reused it: safe to
            # send an idempotent GET again on a fresh one; anything else is the caller's call.
            if method != "GET":
                raise
            return self._http.request(method, path, **kwargs)

    def _call(
        self, method: str, path: str, *, sealed_ok: bool = False, **kwargs: Any
    ) -> httpx.Response:
        try:
            reply = self._send(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"cannot reach sealfn at {self.url}: is `sealfn serve` running?"
            ) from exc
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"{method} {path} timed out") from exc
        sealed = reply.headers.get("content-type", "").startswith(SEALED_CONTENT_TYPE)
        if sealed_ok and sealed:
            return reply  # a sealed refusal: only the sender can read why
        if reply.status_code >= 400:
            raise _error(reply)
        return reply


def _error(reply: httpx.Response) -> SealfnError:
    """The server's typed error (by its ``type``, else by status); crypto failures stay opaque."""
    try:
        doc = reply.json()
        message, kind = str(doc.get("error", reply.text)), str(doc.get("type", ""))
    except (ValueError, AttributeError):
        message, kind = reply.text, ""
    if message == EnvelopeError().message:
        return EnvelopeError()
    named = getattr(errors, kind, None)
    if isinstance(named, type) and issubclass(named, SealfnError):
        return named(message)
    return _ERRORS.get(reply.status_code, SealfnError)(message)


class SealedSession:
    """Sealed inference as one call: ``session.infer(name, {"input": x})``."""

    def __init__(self, client: Client, keyservice: str, signer: Signer, policy: Policy) -> None:
        from sealfn.keyservice.client import KeyServiceClient

        self._client = client
        self._keyservice = KeyServiceClient(keyservice)
        self._signer = signer
        self._policy = policy
        self._keys: dict[str, DeploymentKey] = {}

    def __enter__(self) -> SealedSession:
        return self

    def __exit__(self, *_: object) -> None:
        self._keyservice.close()

    def key(self, name: str) -> DeploymentKey:
        """The deployment key of ``name``, attested by the KeyService (cached per session)."""
        if name not in self._keys:
            self._keys[name] = self._keyservice.deployment_key(name, policy=self._policy)
        return self._keys[name]

    def infer(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._client.infer_sealed(name, inputs, key=self.key(name), signer=self._signer)


def _tensors(inputs: Mapping[str, np.ndarray]) -> list[oip.Tensor]:
    return [oip.Tensor(k, datatype_of(v.dtype), tuple(v.shape), v) for k, v in inputs.items()]
