"""The gateway's HE endpoints: evaluation keys in (once per session), ciphertexts through.

The gateway reads only an HE request's key id (to refuse a request whose keys were never
uploaded before it queues); the ciphertext goes to the instance untouched, like a sealed body.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sealfn.config import ServerConfig
from sealfn.errors import InvalidInput, SealfnError
from sealfn.he.graph import NetGraph
from sealfn.he.keystore import KeyStore
from sealfn.he.plan import compile_graph, requirements
from sealfn.he.protocol import CONTENT_TYPE, FUNCTIONS_PATH, KEYS_PATH, Requirements, peek_key_id
from sealfn.http_api import error_response, json_response
from sealfn.runtime.function import Function
from sealfn.runtime.pool import Pool

OPAQUE = "sealed"  # the one uint8 tensor opaque bodies travel as (= instance.loop.SEALED)


async def infer(
    pool: Pool, keys: KeyStore, function: Function, request: Request, body: bytes
) -> Response:
    """An HE function's request: check its key id is known, run, return the encrypted reply."""
    if not request.headers.get("content-type", "").startswith(CONTENT_TYPE):
        raise InvalidInput(
            f"function {function.name!r} serves an HE network: send content-type {CONTENT_TYPE} "
            "(sealfn he infer, or sealfn.he.client)"
        )
    keys.path(peek_key_id(body))  # NotFound before it queues
    reply = await pool.infer(function.name, {OPAQUE: np.frombuffer(body, np.uint8)})
    if OPAQUE in reply.outputs:
        return Response(reply.outputs[OPAQUE].tobytes(), reply.status, media_type=CONTENT_TYPE)
    return json_response({"error": reply.message}, reply.status)


def routes(pool: Pool, keys: KeyStore, config: ServerConfig) -> list[Route]:
    """``PUT /v2/he/keys`` (streamed body → ``{"key_id"}``), ``GET``/``DELETE .../{key_id}``;
    ``GET /v2/he/functions/{name}``: the depth and layout keys and ciphertexts must fit."""

    async def function_requirements(request: Request) -> Response:
        try:
            function = pool.function(request.path_params["name"])
            if not function.spec.he:
                raise InvalidInput(f"function {function.name!r} is not an HE function")
            needs = await asyncio.to_thread(_requirements, function.model_path)
        except SealfnError as exc:
            return error_response(exc)
        return json_response(needs.to_dict())

    async def upload(request: Request) -> Response:
        try:
            key_id = await keys.save(request.stream(), config.max_model_bytes)
        except SealfnError as exc:
            return error_response(exc)
        return json_response({"key_id": key_id}, 201)

    async def describe(request: Request) -> Response:
        try:
            path = keys.path(request.path_params["key_id"])
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
        Route(KEYS_PATH, upload, methods=["PUT"]),
        Route(KEYS_PATH + "/{key_id}", describe, methods=["GET"]),
        Route(KEYS_PATH + "/{key_id}", delete, methods=["DELETE"]),
    ]


def _requirements(path: Path) -> Requirements:
    return requirements(compile_graph(NetGraph.from_bytes(path.read_bytes())))
