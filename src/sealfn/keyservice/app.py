"""The KeyService over HTTP: JSON bodies (bytes in base64), errors mapped to status codes here.

    POST   /v1/principals                     register (signed by the key being registered)
    POST   /v1/models/{id}/key                owner uploads a sealed model key (signed)
    GET    /v1/models/{id}/public-key         the deployment key; ?nonce=HEX adds evidence
    PUT    /v1/models/{id}/grants/{user}      owner grants a user on measurements (signed)
    DELETE /v1/models/{id}/grants/{user}      owner revokes (signed)
    POST   /v1/attest/challenge               enclave: a single-use nonce
    POST   /v1/attest/release                 enclave: evidence → keys sealed to its key
    POST   /v1/attest/renew                   enclave: MAC'd renewal → current grants, new lease
    GET    /attestation?nonce=HEX             the KeyService's own evidence and HPKE key
    GET    /stats   GET /health

Attestation and envelope failures answer with one opaque message each; details stay in the
server's debug log. Nothing here logs a key, a secret or a body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sealfn.errors import (
    InvalidInput,
    SealfnError,
)
from sealfn.http_api import EXCEPTION_HANDLERS, error_response, json_response, read_body
from sealfn.keyservice.auth import SignedCall
from sealfn.keyservice.keys import get_suite, suite_of
from sealfn.keyservice.principal import PrincipalKind
from sealfn.keyservice.service import KeyService
from sealfn.keyservice.wire import b64, get, loads, unb64, unhex

log = logging.getLogger("sealfn.keyservice")

MAX_BODY_BYTES = 1 << 20  # evidence is at most 64 KiB; nothing legitimate comes near this

Result = tuple[int, dict[str, Any]]
Handler = Callable[[Request, bytes], Awaitable[Result]]


def create_app(
    service: KeyService,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The KeyService's ASGI app; ``clock`` gives unix seconds (tests inject it)."""

    async def run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, *args, **kwargs)  # SQLite and crypto block

    async def register(request: Request, body: bytes) -> Result:
        doc, call = loads(body), _signed(request, body)
        if get(doc, "name", str) != call.principal:
            raise InvalidInput("'name' must be the principal that signs the registration")
        kind = _kind(get(doc, "kind", str))
        public_key = unb64(doc.get("public_key"), "public_key")
        record = await run(service.register, call, kind, public_key, clock())
        return 201, {"name": record.name, "kind": record.kind.value}

    async def upload_key(request: Request, body: bytes) -> Result:
        doc, call = loads(body), _signed(request, body)
        sealed = unb64(doc.get("sealed_key"), "sealed_key")
        suite = suite_of(doc["suite"]) if doc.get("suite") is not None else None
        model_id = request.path_params["model_id"]
        key = await run(service.upload_model_key, call, model_id, sealed, now=clock(), suite=suite)
        return 201, key.to_json()

    async def public_key(request: Request, _: bytes) -> Result:
        model_id = request.path_params["model_id"]
        nonce = request.query_params.get("nonce")
        if nonce is None:
            return 200, (await run(service.deployment_key, model_id)).to_json()
        key, evidence = await run(service.attest_deployment_key, model_id, unhex(nonce, "nonce"))
        return 200, {**key.to_json(), "evidence": b64(evidence)}

    async def grant(request: Request, body: bytes) -> Result:
        doc, call = loads(body), _signed(request, body)
        listed = get(doc, "measurements", list)
        measurements = [unhex(m, "measurement") for m in listed]
        model_id, user = request.path_params["model_id"], request.path_params["user"]
        record = await run(service.grant, call, model_id, user, measurements, clock())
        hexes = sorted(m.hex() for m in record.measurements)
        return 200, {"model_id": model_id, "user_id": user, "measurements": hexes}

    async def revoke(request: Request, body: bytes) -> Result:
        call = _signed(request, body)
        model_id, user = request.path_params["model_id"], request.path_params["user"]
        await run(service.revoke, call, model_id, user, clock())
        return 200, {"model_id": model_id, "revoked": user}

    async def challenge(_: Request, __: bytes) -> Result:
        return 200, {"nonce": b64(await run(service.challenge, clock()))}

    async def release(_: Request, body: bytes) -> Result:
        doc = loads(body)
        sealed = await run(
            service.release,
            unb64(doc.get("evidence"), "evidence"),
            unb64(doc.get("nonce"), "nonce"),
            unb64(doc.get("public_key"), "public_key"),
            get(doc, "model_ids", list),
            now=clock(),
            suite=get_suite(doc),
        )
        return 200, {"sealed": b64(sealed)}

    async def renew(_: Request, body: bytes) -> Result:
        doc = loads(body)
        session_id, timestamp = get(doc, "session_id", str), get(doc, "timestamp_ms", int)
        mac = unb64(doc.get("mac"), "mac")
        sealed = await run(service.renew, session_id, timestamp, mac, clock())
        return 200, {"sealed": b64(sealed)}

    async def attestation(request: Request, _: bytes) -> Result:
        nonce = unhex(request.query_params.get("nonce"), "nonce")
        key, evidence = await run(service.attestation, nonce)
        return 200, {
            "evidence": b64(evidence),
            "public_key": b64(key.public_key),
            "suite": int(key.suite),
            "simulated": key.simulated,
        }

    async def stats(_: Request, __: bytes) -> Result:
        return 200, {"calls": service.stats()}

    async def health(_: Request, __: bytes) -> Result:
        return 200, {"status": "ok"}

    def route(path: str, handler: Handler, method: str) -> Route:
        return Route(path, _endpoint(handler, max_body_bytes), methods=[method])

    return Starlette(
        exception_handlers=EXCEPTION_HANDLERS,
        routes=[
            route("/v1/principals", register, "POST"),
            route("/v1/models/{model_id}/key", upload_key, "POST"),
            route("/v1/models/{model_id}/public-key", public_key, "GET"),
            route("/v1/models/{model_id}/grants/{user}", grant, "PUT"),
            route("/v1/models/{model_id}/grants/{user}", revoke, "DELETE"),
            route("/v1/attest/challenge", challenge, "POST"),
            route("/v1/attest/release", release, "POST"),
            route("/v1/attest/renew", renew, "POST"),
            route("/attestation", attestation, "GET"),
            route("/stats", stats, "GET"),
            route("/health", health, "GET"),
        ],
    )


def _endpoint(handler: Handler, limit: int) -> Callable[[Request], Awaitable[Response]]:
    """Read the bounded body, run the handler, and map every sealfn error to its status."""

    async def endpoint(request: Request) -> Response:
        try:
            status, doc = await handler(request, await read_body(request, limit))
        except SealfnError as exc:
            return error_response(exc)
        return json_response(doc, status)

    return endpoint


def _signed(request: Request, body: bytes) -> SignedCall:
    return SignedCall.from_headers(request.method, request.url.path, body, request.headers)


def _kind(value: str) -> PrincipalKind:
    try:
        return PrincipalKind(value)
    except ValueError:
        kinds = ", ".join(k.value for k in PrincipalKind)
        raise InvalidInput(f"kind {value!r} is not one of {kinds}") from None
