"""`sealfn serve`: the gateway on uvicorn (uvloop + httptools), stopped cleanly by signals."""

from __future__ import annotations

import logging
import signal

import uvicorn

from sealfn.config import ServerConfig
from sealfn.runtime.gateway import create_app


def serve(config: ServerConfig, log_level: str = "warning") -> None:
    """Run until SIGINT/SIGTERM; then uvicorn drains connections and the pool stops instances."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=10,
        )
    )
    # uvicorn re-raises the signal it caught once it has shut down; these handlers absorb it so a
    # SIGINT/SIGTERM ends `sealfn serve` with status 0 after a clean shutdown.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    print(f"sealfn serving on http://{config.host}:{config.port} (state in {config.state_dir})")
    server.run()
