"""The gateway's HE endpoints: evaluation keys in (once per session), ciphertexts through.

The gateway reads only an HE request's key id (to refuse a request whose keys were never
uploaded before it queues); the ciphertext goes to the instance untouched, like a sealed body.
``POST /v2/he/functions/{name}/infer`` streams both ways: the request is spooled as it arrives
(memory, then an unlinked temp file past ``he_spool_memory_bytes``; ``max_body_bytes`` bounds
it), its key id checked as soon as its first 38 bytes are in; the reply is sent in chunks.
``POST /v2/models/{name}/infer`` (the gateway's buffered body) serves the same messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sealfn.config import ServerConfig
from sealfn.errors import InvalidInput, PayloadTooLarge, SealfnError
from sealfn.he.graph import NetGraph
from sealfn.he.keystore import KeyStore
from sealfn.he.plan import compile_graph, requirements
from sealfn.he.protocol import (
    CONTENT_TYPE,
    FUNCTIONS_PATH,
    HEAD_BYTES,
    INFER_PATH,
    KEYS_PATH,
    Requirements,
    peek_key_id,
)
from sealfn.he.spool import SPOOL_DIR, Spool
from sealfn.http_api import error_response, json_response
from sealfn.runtime.function import Function
from sealfn.runtime.pool import Pool

OPAQUE = "sealed"  # the one uint8 tensor opaque bodies travel as (= instance.loop.SEALED)
REPLY_CHUNK = 1 << 20  # bytes per chunk of a streamed reply


async def infer_streamed(
    pool: Pool, keys: KeyStore, config: ServerConfig, request: Request
) -> Response:
    """Spool the request (bounded, one copy), check its key id early, run, stream the reply."""
    function = pool.function(request.path_params["name"])
    if not function.spec.he:
        raise InvalidInput(f"function {function.name!r} is not an HE function")
    _check_content_type(function, request)
    limit = config.max_body_bytes
    _declared_length(request, limit, "the HE request", "max_body_bytes")
    with Spool(limit, config.he_spool_memory_bytes, config.state_dir / SPOOL_DIR) as spool:
        key_id = await _receive(request, spool, keys)
        return await _run(pool, keys, function, key_id, spool.array())


async def _receive(request: Request, spool: Spool, keys: KeyStore) -> str:
    key_id = None
    try:
        async for chunk in request.stream():
            spool.write(chunk)
            if key_id is None and spool.size > HEAD_BYTES:
                key_id = peek_key_id(spool.head(HEAD_BYTES + 1))
                keys.use(key_id)  # NotFound before the rest of the ciphertext is read
    except ClientDisconnect as exc:
        raise InvalidInput("the HE request was cut short: the client disconnected") from exc
    if key_id is None:
        raise InvalidInput(f"the body is not an HE message ({CONTENT_TYPE})")
    return key_id


async def _run(
    pool: Pool, keys: KeyStore, function: Function, key_id: str, body: np.ndarray
) -> Response:
    with keys.pinned(key_id):  # not evicted while the request is queued or running
        reply = await pool.infer(function.name, {OPAQUE: body})
    if OPAQUE not in reply.outputs:
        return json_response({"error": reply.message}, reply.status)
    data = np.ascontiguousarray(reply.outputs[OPAQUE], np.uint8).data.cast("B")
    headers = {"content-length": str(len(data))}
    return StreamingResponse(_chunks(data), reply.status, headers, media_type=CONTENT_TYPE)


async def _chunks(data: memoryview) -> AsyncIterator[memoryview]:
    for start in range(0, len(data), REPLY_CHUNK):
        yield data[start : start + REPLY_CHUNK]


def _check_content_type(function: Function, request: Request) -> None:
    if not request.headers.get("content-type", "").startswith(CONTENT_TYPE):
        raise InvalidInput(
            f"function {function.name!r} serves an HE network: send content-type {CONTENT_TYPE} "
            "(sealfn he infer, or sealfn.he.client)"
        )


def _declared_length(request: Request, limit: int, what: str, setting: str) -> int | None:
    """The content-length, if any; ``PayloadTooLarge`` before reading a body over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise InvalidInput(f"content-length {declared!r} is not a number")
    if int(declared) > limit:
        raise PayloadTooLarge(
            f"{what} of {int(declared)} bytes exceeds the {limit}-byte limit ({setting})"
        )
    return int(declared)


def routes(pool: Pool, keys: KeyStore, config: ServerConfig) -> list[Route]:
    """``PUT /v2/he/keys`` (streamed body → ``{"key_id"}``), ``GET``/``DELETE .../{key_id}``;
    ``GET /v2/he/functions/{name}``: the depth and layout keys and ciphertexts must fit;
    ``POST /v2/he/functions/{name}/infer``: a streamed request and reply."""

    async def function_requirements(request: Request) -> Response:
        try:
            function = pool.function(request.path_params["name"])
            if not function.spec.he:
                raise InvalidInput(f"function {function.name!r} is not an HE function")
            needs = await asyncio.to_thread(_requirements, function.model_path)
        except SealfnError as exc:
            return error_response(exc)
        return json_response(needs.to_dict())

    async def infer_endpoint(request: Request) -> Response:
        name, started, code = request.path_params["name"], time.perf_counter(), 200
        try:
            response = await infer_streamed(pool, keys, config, request)
        except SealfnError as exc:
            response = error_response(exc)
        code = response.status_code
        if name in pool.functions:
            pool.metrics.request(name, code, time.perf_counter() - started)
        return response

    async def upload(request: Request) -> Response:
        try:
            limit = config.max_model_bytes
            expected = _declared_length(request, limit, "evaluation keys", "max_model_bytes")
            key_id = await keys.save(request.stream(), limit, expected)
        except ClientDisconnect:
            return error_response(InvalidInput("the key upload was cut short"))
        except SealfnError as exc:
            return error_response(exc)
        return json_response({"key_id": key_id}, 201)

    async def describe(request: Request) -> Response:
        try:
            path = keys.use(request.path_params["key_id"])
        except SealfnError as exc:
            return error_response(exc)
        return json_response({"key_id": path.name, "bytes": path.stat().st_size})

    async def delete(request: Request) -> Response:
        try:
            keys.delete(request.path_params["key_id"])
        except SealfnError as exc:
            return error_response(exc)
        return json_response({"deleted": request.path_params["key_id"]})

    return [
        Route(FUNCTIONS_PATH + "/{name}", function_requirements, methods=["GET"]),
        Route(INFER_PATH, infer_endpoint, methods=["POST"]),
        Route(KEYS_PATH, upload, methods=["PUT"]),
        Route(KEYS_PATH + "/{key_id}", describe, methods=["GET"]),
        Route(KEYS_PATH + "/{key_id}", delete, methods=["DELETE"]),
    ]


def _requirements(path: Path) -> Requirements:
    return requirements(compile_graph(NetGraph.from_bytes(path.read_bytes())))
