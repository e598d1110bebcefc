"""HTTP plumbing every sealfn app shares (gateway, KeyService): the one error→status table,
JSON replies, and request bodies bounded before they are buffered."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sealfn.errors import (
    AccessDenied,
    AttestationError,
    ConfigError,
    Conflict,
    DeadlineExceeded,
    EnvelopeError,
    InvalidInput,
    ModelError,
    NotFound,
    PayloadTooLarge,
    SealfnError,
    StorageError,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("sealfn.http")

# The one place errors become HTTP status codes; the most specific class wins (MRO order).
STATUS: dict[type[SealfnError], int] = {
    Unauthenticated: 401,
    AttestationError: 403,
    AccessDenied: 403,
    EnvelopeError: 400,
    PayloadTooLarge: 413,
    InvalidInput: 400,
    ConfigError: 400,
    NotFound: 404,
    Conflict: 409,
    ModelError: 422,
    Unavailable: 503,
    DeadlineExceeded: 504,
    StorageError: 507,
    SealfnError: 500,
}


def status_for(error: SealfnError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


# What the caller sees instead of the message: no oracle on why evidence or an envelope failed.
OPAQUE: dict[type[SealfnError], str] = {
    AttestationError: "attestation failed",
    EnvelopeError: "cannot open envelope",
}


def error_response(error: SealfnError) -> Response:
    """``{"error": message, "type": class}`` with the error's status; crypto failures opaque."""
    status = status_for(error)
    public = next((OPAQUE[c] for c in type(error).__mro__ if c in OPAQUE), error.message)
    if public != error.message:
        log.debug("%s: %s", type(error).__name__, error.message)
    elif status >= 500:
        log.warning("%s: %s", type(error).__name__, error.message)
    response = json_response({"error": public, "type": type(error).__name__}, status)
    if status == 401:
        response.headers["www-authenticate"] = 'Bearer realm="sealfn admin"'
    return response


async def route_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the same JSON shape as ours."""
    if not isinstance(exc, HTTPException):
        raise exc
    reason = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    doc = {"error": f"{reason}: {request.method} {request.url.path}", "type": "RouteError"}
    response = json_response(doc, exc.status_code)
    response.headers.update(exc.headers or {})  # 405 names the allowed methods
    return response


# Pass as ``Starlette(exception_handlers=EXCEPTION_HANDLERS)``: every refusal is JSON.
EXCEPTION_HANDLERS: dict[Any, Any] = {HTTPException: route_error}


def json_response(content: Any, status: int = 200) -> Response:
    body = json.dumps(content, separators=(",", ":")).encode()
    return Response(body, status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before buffering it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput(f"content-length {declared!r} is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body of {int(declared)} bytes exceeds the {limit}-byte limit")
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def run_server(
    app: Any,
    host: str,
    port: int,
    *,
    log_level: str,
    lifespan: Literal["on", "off"],
    banner: str,
    grace_s: int,
) -> None:
    """Run an ASGI app on uvicorn (uvloop + httptools) until SIGINT/SIGTERM, then exit 0."""
    import signal

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan=lifespan,
            ws="none",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=grace_s,
        )
    )
    # uvicorn re-raises the signal it caught once it has shut down; these handlers absorb it so
    # SIGINT/SIGTERM end the process with status 0 after a clean shutdown.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    print(banner, flush=True)
    server.run()
