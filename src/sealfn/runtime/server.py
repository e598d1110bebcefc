"""`sealfn serve`: the gateway on uvicorn (uvloop + httptools), stopped cleanly by signals."""

from __future__ import annotations

import logging

from sealfn.config import ServerConfig
from sealfn.http_api import run_server
from sealfn.runtime.executors.base import Executor
from sealfn.runtime.gateway import create_app


def serve(config: ServerConfig, log_level: str = "warning") -> None:
    """Run until SIGINT/SIGTERM; then uvicorn drains connections and the pool stops instances."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    banner = f"sealfn serving on http://{config.host}:{config.port} (state in {config.state_dir})"
    run_server(
        create_app(config, executor_for(config)),
        config.host,
        config.port,
        log_level=log_level,
        lifespan="on",
        banner=banner,
        grace_s=10,
    )


def executor_for(config: ServerConfig) -> Executor | None:
    """The executor ``config.engine`` names; None: the gateway's default (local processes)."""
    if config.engine == "ray":
        from sealfn.runtime.executors.ray import RayExecutor  # the optional extra

        return RayExecutor()
    return None
