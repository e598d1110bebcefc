"""Talk to a KeyService: verify its attestation, owner/user calls signed by a local
:class:`~sealfn.keyservice.principal.Principal`, and the enclave calls (challenge, release, renew).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from sealfn.attestation import Policy, verify
from sealfn.envelope import Suite, seal_request
from sealfn.errors import (
    AccessDenied,
    AttestationError,
    ConfigError,
    Conflict,
    EnvelopeError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SealfnError,
    Unavailable,
)
from sealfn.keyservice.keys import DeploymentKey, KeyServiceKey, suite_of
from sealfn.keyservice.principal import Principal
from sealfn.keyservice.release import renewal_mac
from sealfn.keyservice.wire import b64, check_id, dumps, get, loads, unb64

DEFAULT_URL = "http://127.0.0.1:8090"
NONCE_SIZE = 32  # bytes of the nonces this client makes to check the KeyService's evidence

# A server's error "type" back to the class, so callers catch what the service raised.
_ERRORS: dict[str, type[SealfnError]] = {
    cls.__name__: cls
    for cls in (
        ConfigError,
        InvalidInput,
        PayloadTooLarge,
        NotFound,
        Conflict,
        AttestationError,
        AccessDenied,
        EnvelopeError,
        Unavailable,
    )
}
_BY_STATUS: dict[int, type[SealfnError]] = {
    400: InvalidInput,
    403: AccessDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    503: Unavailable,
}


class KeyServiceClient:
    """One KeyService at ``url``. ``http`` injects an httpx client (e.g. Starlette's
    TestClient); otherwise one is made and closed with this object."""

    def __init__(
        self, url: str = DEFAULT_URL, *, timeout: float = 10.0, http: httpx.Client | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> KeyServiceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- trust in the KeyService ---------------------------------------------------------------

    def attest(self, policy: Policy) -> KeyServiceKey:
        """The KeyService's HPKE key, once its evidence for a fresh nonce passes ``policy``."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        doc = self._call("GET", "/attestation", params={"nonce": nonce.hex()})
        key = KeyServiceKey(
            unb64(doc.get("public_key"), "public_key"),
            suite_of(doc.get("suite")),
            get(doc, "simulated", bool),
        )
        evidence = unb64(doc.get("evidence"), "evidence")
        verify(evidence, nonce=nonce, public_key=key.public_key, policy=policy)
        return key

    # ---- owners and users ----------------------------------------------------------------------

    def register(self, principal: Principal) -> None:
        """Register ``principal``'s name, kind and public key (trust on first use)."""
        body = {
            "name": principal.name,
            "kind": principal.kind.value,
            "public_key": b64(principal.public_key),
        }
        self._signed(principal, "POST", "/v1/principals", body)

    def upload_model_key(
        self,
        owner: Principal,
        model_id: str,
        model_key: bytes,
        keyservice: KeyServiceKey,
        *,
        suite: Suite | None = None,
    ) -> DeploymentKey:
        """Hand ``model_key`` to the KeyService sealed to its attested key (see :meth:`attest`);
        the model's deployment key comes back: users seal requests to it."""
        sealed, _ = seal_request(
            model_key,
            keyservice.public_key,
            model_id=check_id("model id", model_id),
            user_id=owner.name,
            suite=keyservice.suite,
        )
        body: dict[str, Any] = {"sealed_key": b64(sealed)}
        if suite is not None:
            body["suite"] = int(suite)
        doc = self._signed(owner, "POST", f"/v1/models/{model_id}/key", body)
        return DeploymentKey.from_json(doc)

    def deployment_key(self, model_id: str, *, policy: Policy | None = None) -> DeploymentKey:
        """The key to seal requests for ``model_id`` to. With ``policy``, the KeyService must
        also attest it (fresh nonce), so no one on the path can substitute their own key."""
        path = f"/v1/models/{check_id('model id', model_id)}/public-key"
        if policy is None:
            return DeploymentKey.from_json(self._call("GET", path))
        nonce = secrets.token_bytes(NONCE_SIZE)
        doc = self._call("GET", path, params={"nonce": nonce.hex()})
        key = DeploymentKey.from_json(doc)
        if key.model_id != model_id:
            raise AttestationError("attestation failed")
        evidence = unb64(doc.get("evidence"), "evidence")
        verify(evidence, nonce=nonce, public_key=key.binding(), policy=policy)
        return key

    def grant(
        self, owner: Principal, model_id: str, user_id: str, measurements: Iterable[bytes]
    ) -> None:
        """Let ``user_id`` use ``model_id`` on enclaves of these measurements."""
        path = f"/v1/models/{check_id('model id', model_id)}/grants/{check_id('user', user_id)}"
        self._signed(owner, "PUT", path, {"measurements": [m.hex() for m in measurements]})

    def revoke(self, owner: Principal, model_id: str, user_id: str) -> None:
        path = f"/v1/models/{check_id('model id', model_id)}/grants/{check_id('user', user_id)}"
        self._signed(owner, "DELETE", path, None)

    # ---- enclaves ------------------------------------------------------------------------------

    def challenge(self) -> bytes:
        """A single-use nonce to bind into evidence."""
        return unb64(self._call("POST", "/v1/attest/challenge").get("nonce"), "nonce")

    def release(
        self,
        evidence: bytes,
        nonce: bytes,
        public_key: bytes,
        model_ids: Sequence[str],
        *,
        suite: Suite = Suite.X25519_SHA256_AES256GCM,
    ) -> bytes:
        """The key release sealed to ``public_key`` (open with ``release.open_release``)."""
        body = {
            "evidence": b64(evidence),
            "nonce": b64(nonce),
            "public_key": b64(public_key),
            "suite": int(suite),
            "model_ids": list(model_ids),
        }
        return unb64(self._call("POST", "/v1/attest/release", body).get("sealed"), "sealed")

    def renew(self, session_id: str, session_secret: bytes, *, now: float | None = None) -> bytes:
        """A fresh release for the session (current grants, new lease), sealed as before."""
        timestamp = int((time.time() if now is None else now) * 1000)
        body = {
            "session_id": session_id,
            "timestamp_ms": timestamp,
            "mac": b64(renewal_mac(session_secret, session_id, timestamp)),
        }
        return unb64(self._call("POST", "/v1/attest/renew", body).get("sealed"), "sealed")

    def stats(self) -> dict[str, int]:
        """Calls per KeyService operation since it started."""
        calls = get(self._call("GET", "/stats"), "calls", dict)
        return {str(k): int(v) for k, v in calls.items()}

    # ---- plumbing ------------------------------------------------------------------------------

    def _signed(
        self, principal: Principal, method: str, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        raw = dumps(body) if body is not None else b""
        call = principal.sign(method, path, raw)
        return self._send(method, path, content=raw, headers=call.headers())

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        raw = dumps(body) if body is not None else None
        return self._send(method, path, content=raw, params=params)

    def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        try:
            reply = self._http.request(method, self.url + path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the KeyService at {self.url}: {exc}") from exc
        if reply.status_code >= 400:
            raise _error(reply)
        return loads(reply.content, "KeyService reply")


def verify_keyservice(url: str, policy: Policy) -> bytes:
    """The HPKE public key of the KeyService at ``url``, if its attestation passes ``policy``."""
    with KeyServiceClient(url) as client:
        return client.attest(policy).public_key


def _error(reply: httpx.Response) -> SealfnError:
    try:
        doc = json.loads(reply.content)
        message, kind = str(doc["error"]), str(doc.get("type", ""))
    except (ValueError, KeyError, TypeError):
        message, kind = f"KeyService answered {reply.status_code}", ""
    cls = _ERRORS.get(kind) or _BY_STATUS.get(reply.status_code, SealfnError)
    return cls(message)
