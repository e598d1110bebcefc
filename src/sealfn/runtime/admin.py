"""The admin API the CLI uses: deploy, undeploy, list and status, as small JSON endpoints."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sealfn import admintoken
from sealfn.config import FunctionSpec, ServerConfig
from sealfn.errors import ConfigError, SealfnError
from sealfn.http_api import error_response, json_response, read_body
from sealfn.runtime.cost import cost_report
from sealfn.runtime.function import Function
from sealfn.runtime.metrics import Metrics
from sealfn.runtime.pool import Pool
from sealfn.runtime.registry import Registry

SPEC_HEADER = "x-sealfn-spec"
Endpoint: TypeAlias = Callable[[Request], Awaitable[Response]]


def routes(
    pool: Pool, registry: Registry, metrics: Metrics, config: ServerConfig, token: str
) -> list[Route]:
    """The admin endpoints; each refuses (401) a call without ``Authorization: Bearer token``."""

    async def deploy(request: Request) -> Response:
        """PUT /admin/functions/{name}: body = the ONNX model, header x-sealfn-spec = settings."""
        try:
            spec = _spec(request)
            model = await read_body(request, config.max_model_bytes)
            if not model and not spec.model_store:
                raise ConfigError("the request body must be the ONNX model")
            created = spec.name not in pool.functions
            deployment = await asyncio.to_thread(registry.save, spec, model)
            function = pool.deploy(deployment.spec, deployment.model_path, deployment.signature)
        except SealfnError as exc:
            return error_response(exc)
        return json_response(describe(function, config, time.monotonic()), 201 if created else 200)

    async def undeploy(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            pool.function(name)
            await asyncio.to_thread(registry.remove, name)
            await pool.undeploy(name)
        except SealfnError as exc:
            return error_response(exc)
        metrics.forget(name)
        return json_response({"undeployed": name})

    async def status(_: Request) -> Response:
        now = time.monotonic()
        functions = [describe(f, config, now) for f in pool.functions.values()]
        return json_response({"functions": functions, "prices": vars(config.prices)})

    async def get_function(request: Request) -> Response:
        try:
            function = pool.function(request.path_params["name"])
        except SealfnError as exc:
            return error_response(exc)
        return json_response(describe(function, config, time.monotonic()))

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def checked(request: Request) -> Response:
            try:
                admintoken.check(request.headers.get("authorization"), token)
            except SealfnError as exc:
                return error_response(exc)
            return await endpoint(request)

        return checked

    return [
        Route("/admin/status", guarded(status)),
        Route("/admin/functions", guarded(status)),
        Route("/admin/functions/{name}", guarded(deploy), methods=["PUT"]),
        Route("/admin/functions/{name}", guarded(undeploy), methods=["DELETE"]),
        Route("/admin/functions/{name}", guarded(get_function), methods=["GET"]),
    ]


def describe(function: Function, config: ServerConfig, now: float) -> dict[str, Any]:
    """Everything `sealfn status` shows about one function."""
    p50, p99 = function.percentiles()
    report = cost_report(function.gb_seconds(now), function.cost.requests, config.prices)
    starts = list(function.cold_start_s)
    return {
        "name": function.name,
        "spec": function.spec.to_dict(),
        "signature": function.signature.to_dict(),
        "instances": function.by_state(),
        "instance_list": [
            {
                "id": i.id,
                "pid": i.worker.pid if i.worker is not None else None,
                "state": i.state.value,
                "in_flight": i.in_flight,
                "models": sorted(i.models),
            }
            for i in function.holders()
        ],
        "group": function.group.name if function.group is not None else None,
        "queue": len(function.queue),
        "in_flight": function.in_flight_requests,
        "requests": function.cost.requests,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "cold_starts": function.cold_starts,
        "cold_start_ms": sum(starts) / len(starts) * 1000 if starts else None,
        "last_cold_start": function.last_start,
        "gb_seconds": report.gb_seconds,
        "usd": report.usd,
        "usd_per_1000": report.usd_per_1000,
    }


def _spec(request: Request) -> FunctionSpec:
    raw = request.headers.get(SPEC_HEADER, "{}")
    try:
        settings = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"header {SPEC_HEADER} is not valid JSON") from exc
    if not isinstance(settings, dict):
        raise ConfigError(f"header {SPEC_HEADER} must be a JSON object")
    try:
        return FunctionSpec.from_dict({**settings, "name": request.path_params["name"]})
    except TypeError as exc:
        raise ConfigError(f"invalid deployment settings: {exc}") from exc
