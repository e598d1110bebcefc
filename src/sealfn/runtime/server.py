"""`sealfn serve`: the gateway on uvicorn (uvloop + httptools), stopped cleanly by signals."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sealfn.config import ServerConfig
from sealfn.http_api import run_server
from sealfn.runtime.executors.base import Executor
from sealfn.runtime.gateway import create_app

log = logging.getLogger("sealfn.server")
READ_AHEAD_BYTES = 8 << 20  # body bytes uvicorn may buffer unread (never past max_body_bytes)
_UVICORN_LIMIT = "HIGH_WATER_LIMIT"  # uvicorn's private name for it (see read_ahead)


def serve(config: ServerConfig, log_level: str = "warning") -> None:
    """Run until SIGINT/SIGTERM; then uvicorn drains connections and the pool stops instances."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    banner = f"sealfn serving on http://{config.host}:{config.port} (state in {config.state_dir})"
    with read_ahead(min(config.max_body_bytes, READ_AHEAD_BYTES)):
        run_server(
            create_app(config, executor_for(config)),
            config.host,
            config.port,
            log_level=log_level,
            lifespan="on",
            banner=banner,
            grace_s=10,
        )


@contextlib.contextmanager
def read_ahead(limit: int) -> Iterator[None]:
    """Let uvicorn's httptools protocol buffer up to ``limit`` body bytes before it pauses
    reading the socket, in this process, for as long as the context lasts.

    uvicorn (0.54) pauses once 64 KiB of a body wait unread and resumes when the app asks for
    more, so a 600 KB tensor body arrives in several event-loop turns, each a pause and a resume.
    It has no setting for that limit: it is ``HIGH_WATER_LIMIT``, a private module global of
    ``uvicorn.protocols.http.httptools_impl`` that ``on_body`` reads on every chunk; this sets
    it. The gateway alone does this (one server per process); ``read_body`` and the HE spool
    still refuse a body past ``max_body_bytes``, and ``limit`` never exceeds it.
    tests/runtime/test_server.py fails if uvicorn renames or stops reading the global.
    """
    from uvicorn.protocols.http import httptools_impl

    default = getattr(httptools_impl, _UVICORN_LIMIT, None)
    if not isinstance(default, int):
        log.warning("uvicorn has no httptools_impl.HIGH_WATER_LIMIT: bodies read 64 KiB a turn")
        yield
        return
    setattr(httptools_impl, _UVICORN_LIMIT, max(limit, default))
    try:
        yield
    finally:
        setattr(httptools_impl, _UVICORN_LIMIT, default)


def executor_for(config: ServerConfig) -> Executor | None:
    """The executor ``config.engine`` names; None: the gateway's default (local processes)."""
    if config.engine == "ray":
        from sealfn.runtime.executors.ray import RayExecutor  # the optional extra

        return RayExecutor()
    return None
