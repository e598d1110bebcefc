"""``python -m sealfn.keyservice``: the same as ``sealfn keyservice``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sealfn.errors import SealfnError
from sealfn.keyservice.config import DEFAULT_DB, DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sealfn keyservice",
        description="Run the KeyService: it releases model keys only to attested enclaves.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `sealfn keyservice` (shared with the `sealfn` CLI)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"default {DEFAULT_DB}")
    parser.add_argument(
        "--accept-simulated",
        action="store_true",
        help="release keys to SIMULATED enclaves (no isolation; development only)",
    )
    parser.add_argument(
        "--platform-dir",
        type=Path,
        default=None,
        help="the simulated TEE platform (default ~/.sealfn/simulated-platform)",
    )
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    from sealfn.keyservice.server import serve_keyservice  # uvicorn etc.: only when serving

    try:
        serve_keyservice(
            args.host,
            args.port,
            args.db,
            args.accept_simulated,
            args.platform_dir,
            log_level=args.log_level,
        )
    except SealfnError as exc:
        print(f"sealfn keyservice: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
