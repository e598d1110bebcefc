"""`sealfn keyservice`: the KeyService on uvicorn, its store sealed under its own TEE's key."""

from __future__ import annotations

import logging
from pathlib import Path

from sealfn.http_api import run_server
from sealfn.keyservice.app import create_app
from sealfn.keyservice.config import DEFAULT_DB, DEFAULT_PORT, KeyServiceConfig
from sealfn.keyservice.service import KeyService
from sealfn.tee import SimulatedPlatform, TeeBackend, backend

log = logging.getLogger("sealfn.keyservice")

# What the KeyService's measurement covers: its own code and everything it imports from sealfn.
# Any change to these files is a new measurement, hence a new sealing key: a store written by
# other code cannot be opened (as with MRENCLAVE-bound sealing on hardware).
PACKAGES = (
    "sealfn.keyservice",
    "sealfn.envelope",
    "sealfn.tee",
    "sealfn.attestation",
    "sealfn.errors",
    "sealfn.types",
    "sealfn.config",  # imported by sealfn/__init__.py, which every sealfn import runs
    "sealfn.http_api",
    "sealfn.privatefile",
)


def keyservice_tee(platform_dir: Path | str | None = None, name: str = "auto") -> TeeBackend:
    """The TEE the KeyService runs in (simulated unless hardware is present)."""
    return backend(
        name, platform_dir=platform_dir, packages=PACKAGES, config={"role": "keyservice"}
    )


def open_keyservice(
    db: Path | str = DEFAULT_DB,
    *,
    accept_simulated: bool = False,
    platform_dir: Path | str | None = None,
    tee: TeeBackend | None = None,
) -> KeyService:
    """A KeyService on ``db``. ``accept_simulated`` trusts simulated enclaves of the platform in
    ``platform_dir`` (the one local enclaves use): development only."""
    roots: frozenset[bytes] = frozenset()
    if accept_simulated:
        roots = frozenset({SimulatedPlatform.load_or_create(platform_dir).root_public_key()})
    config = KeyServiceConfig(accept_simulated=accept_simulated, trusted_simulated_roots=roots)
    return KeyService.open(db, tee or keyservice_tee(platform_dir), config)


def serve_keyservice(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    db: Path | str = DEFAULT_DB,
    accept_simulated: bool = False,
    platform_dir: Path | str | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Run the KeyService until SIGINT/SIGTERM."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    service = open_keyservice(db, accept_simulated=accept_simulated, platform_dir=platform_dir)
    mode = "ACCEPTS SIMULATED ENCLAVES" if accept_simulated else "hardware enclaves only"
    banner = f"sealfn keyservice on http://{host}:{port} (store {db}; {mode})"
    try:
        run_server(
            create_app(service),
            host,
            port,
            log_level=log_level,
            lifespan="off",
            banner=banner,
            grace_s=5,
        )
    finally:
        service.close()
