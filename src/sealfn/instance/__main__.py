"""Instance entry point: ``python -m sealfn.instance --fd N [--arena-fd M ...]``."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys

from sealfn.instance.loop import InstanceLoop
from sealfn.instance.models import ModelHost
from sealfn.ipc.arena import Arena, ArenaLayout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sealfn.instance")
    parser.add_argument("--fd", type=int, required=True, help="socket to the gateway")
    parser.add_argument("--arena-fd", type=int, default=-1)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--slot-bytes", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--inline-bytes", type=int, default=64 << 10)
    parser.add_argument("--share-weights", action="store_true", help="map weights, shared")
    parser.add_argument(
        "--host-optimized", action="store_true", help="load models optimized for this host"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="instance %(process)d %(message)s")
    # The gateway owns the lifecycle: ^C in the terminal must not kill instances mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    arena = None
    if args.arena_fd >= 0:
        arena = Arena(args.arena_fd, ArenaLayout(args.slots, args.slot_bytes))
    host = ModelHost(
        args.threads,
        shared_pool=True,
        share_weights=args.share_weights,
        host_optimized=args.host_optimized,
    )
    InstanceLoop(sock, arena, host, args.slots, args.inline_bytes).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
