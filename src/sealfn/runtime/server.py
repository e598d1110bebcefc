"""`sealfn serve`: the gateway on uvicorn (uvloop + httptools), stopped cleanly by signals."""

from __future__ import annotations

import logging

from sealfn.config import ServerConfig
from sealfn.http_api import run_server
from sealfn.runtime.gateway import create_app


def serve(config: ServerConfig, log_level: str = "warning") -> None:
    """Run until SIGINT/SIGTERM; then uvicorn drains connections and the pool stops instances."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    banner = f"sealfn serving on http://{config.host}:{config.port} (state in {config.state_dir})"
    run_server(
        create_app(config),
        config.host,
        config.port,
        log_level=log_level,
        lifespan="on",
        banner=banner,
        grace_s=10,
    )
