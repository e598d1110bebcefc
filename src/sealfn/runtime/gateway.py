"""The gateway: KServe v2 Open Inference Protocol, Prometheus metrics and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sealfn import __version__, admintoken, oip
from sealfn.config import ServerConfig
from sealfn.errors import InvalidInput, SealfnError
from sealfn.he.keystore import KeyPolicy, KeyStore
from sealfn.http_api import EXCEPTION_HANDLERS, error_response, json_response, read_body
from sealfn.ipc import trace
from sealfn.runtime import admin, he_api
from sealfn.runtime.executors.base import Executor
from sealfn.runtime.executors.local import LocalExecutor
from sealfn.runtime.function import Function
from sealfn.runtime.metrics import CONTENT_TYPE, Metrics
from sealfn.runtime.modelcheck import check_loads
from sealfn.runtime.pool import Pool
from sealfn.runtime.registry import Registry
from sealfn.signature import datatype_of, validate

log = logging.getLogger("sealfn.gateway")
HEADER_LENGTH = "inference-header-content-length"
SEALED_CONTENT_TYPE = "application/vnd.sealfn.sealed"  # = sealed_request.CONTENT_TYPE
SEALED = "sealed"  # the one uint8 tensor a sealed request/reply travels as (= instance.loop)


class Gateway:
    """Holds the pool, registry and metrics; its methods are the HTTP endpoints."""

    def __init__(self, config: ServerConfig, executor: Executor | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        check = functools.partial(check_loads, host_optimized=config.host_optimized)
        self.registry = Registry(config.state_dir, check)
        # public evaluation keys of HE functions' users, bounded as the config says
        self.he_keys = KeyStore(config.state_dir, KeyPolicy.from_config(config))
        self.admin_token = config.admin_token or admintoken.load_or_create(config.state_dir)
        self.pool = Pool(config, executor or LocalExecutor(), self.metrics)
        self.metrics.watch(
            lambda: list(self.pool.functions.values()), time.monotonic, config.prices
        )
        self.ready = False

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        self.registry.cleanup()
        for deployment in self.registry.load_all():
            self.pool.deploy(deployment.spec, deployment.model_path, deployment.signature)
        await self.pool.start()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            await self.pool.close()

    # ---- Open Inference Protocol -----------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        """Decode → validate → queue on the pool → encode; errors mapped in one place."""
        name = request.path_params["name"]
        started = time.perf_counter()
        stamps = {"g_enter": trace.now()} if trace.ENABLED else None
        code = 200
        try:
            function = self.pool.function(name)
            if function.spec.he:  # ciphertexts are spooled as they arrive, never buffered whole
                response = await he_api.infer_streamed(
                    self.pool, self.he_keys, self.config, request
                )
            else:
                body = await read_body(request, self.config.max_body_bytes)
                trace.mark(stamps, "g_body")
                sealed = request.headers.get("content-type", "").startswith(SEALED_CONTENT_TYPE)
                if function.spec.sealed or sealed:
                    response = await self._infer_sealed(function, body, sealed)
                else:
                    response = await self._infer_plain(function, request, body, stamps)
            code = response.status_code
            return response
        except SealfnError as exc:
            failure = error_response(exc)
            code = failure.status_code
            return failure
        finally:
            if name in self.pool.functions:
                # counted once the reply is on its way: Starlette writes it in this same step,
                # and the next loop turn runs this before it reads any other request
                elapsed = time.perf_counter() - started
                asyncio.get_running_loop().call_soon(self.metrics.request, name, code, elapsed)
            if stamps is not None:
                trace.write(stamps | {"g_end": trace.now(), "status": code})

    async def _infer_plain(
        self,
        function: Function,
        request: Request,
        body: bytes,
        stamps: dict[str, int] | None,
    ) -> Response:
        # unaligned binary tensors stay views of the body: the pool copies them to the instance
        parsed = oip.decode_request(body, _header_length(request), aligned=False)
        trace.mark(stamps, "g_decoded")
        validate(parsed.inputs, function.signature, [o.name for o in parsed.outputs])
        trace.mark(stamps, "g_validated")
        reply = await self.pool.infer(function.name, {t.name: t.data for t in parsed.inputs})
        trace.mark(stamps, "g_replied")
        response = oip.InferResponse(function.name, "1", parsed.id, _tensors(reply.outputs))
        content, headers = oip.encode_response(response, parsed)
        if stamps is not None:
            stamps |= (reply.stamps or {}) | {"g_encoded": trace.now()}
        return Response(content, headers=headers)

    async def _infer_sealed(self, function: Function, body: bytes, sealed: bool) -> Response:
        """Move the sealed bytes to an enclave and its sealed reply back; never parse them."""
        if not function.spec.sealed:
            raise InvalidInput(f"function {function.name!r} is not sealed: send a plain request")
        if not sealed:
            raise InvalidInput(
                f"function {function.name!r} is sealed: send a sealed request "
                f"(content-type {SEALED_CONTENT_TYPE}; sealfn invoke --sealed does it)"
            )
        reply = await self.pool.infer(function.name, {SEALED: np.frombuffer(body, np.uint8)})
        if SEALED in reply.outputs:
            content = reply.outputs[SEALED].tobytes()
            return Response(content, reply.status, media_type=SEALED_CONTENT_TYPE)
        return json_response({"error": reply.message}, reply.status)

    async def model_metadata(self, request: Request) -> Response:
        try:
            function = self.pool.function(request.path_params["name"])
        except SealfnError as exc:
            return error_response(exc)
        return json_response(oip.model_metadata(function.name, function.signature))

    async def model_ready(self, request: Request) -> Response:
        # Scale-from-zero: a deployed function is ready even with no instance running.
        name = request.path_params["name"]
        ready = self.ready and name in self.pool.functions
        return json_response({"name": name, "ready": ready}, 200 if ready else 404)

    async def server_metadata(self, _: Request) -> Response:
        return json_response(
            {"name": "sealfn", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def live(self, _: Request) -> Response:
        return json_response({"live": True})

    async def server_ready(self, _: Request) -> Response:
        return json_response({"ready": self.ready}, 200 if self.ready else 503)

    async def prometheus(self, _: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    def routes(self) -> list[Route]:
        model = "/v2/models/{name}"
        versioned = "/v2/models/{name}/versions/{version}"
        # Starlette tries routes in order (a regex match each): the data path's come first.
        return [
            Route(f"{model}/infer", self.infer, methods=["POST"]),
            Route(f"{versioned}/infer", self.infer, methods=["POST"]),
            Route("/v2", self.server_metadata),
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.server_ready),
            Route(model, self.model_metadata),
            Route(versioned, self.model_metadata),
            Route(f"{model}/ready", self.model_ready),
            Route(f"{versioned}/ready", self.model_ready),
            Route("/metrics", self.prometheus),
            *he_api.routes(self.pool, self.he_keys, self.config),
            *admin.routes(self.pool, self.registry, self.metrics, self.config, self.admin_token),
        ]


def create_app(config: ServerConfig, executor: Executor | None = None) -> Starlette:
    gateway = Gateway(config, executor)
    app = Starlette(
        routes=gateway.routes(), lifespan=gateway.lifespan, exception_handlers=EXCEPTION_HANDLERS
    )
    app.state.gateway = gateway
    return app


def _header_length(request: Request) -> int | None:
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidInput(f"{HEADER_LENGTH} {raw!r} is not a number")
    return int(raw)


def _tensors(outputs: dict[str, np.ndarray]) -> tuple[oip.Tensor, ...]:
    """Model outputs as OIP tensors; `encode_response` keeps those the request asked for."""
    return tuple(
        oip.Tensor(name, datatype_of(array.dtype), array.shape, array)
        for name, array in outputs.items()
    )
