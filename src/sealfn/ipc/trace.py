"""Opt-in per-phase timestamps of one request's data path, for ``benchmarks/latency.py --trace``.

Off unless ``SEALFN_TRACE_PHASES`` names a file (read once, at import; instances inherit the
gateway's environment). When on, the gateway appends one JSON line per plain inference request
to that file: the gateway's timestamps and the instance's, all ``CLOCK_MONOTONIC`` nanoseconds
(``time.monotonic_ns``, one clock for every process on the host). Timestamps only: never tensors,
names of inputs or anything a request carries.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

PATH = os.environ.get("SEALFN_TRACE_PHASES") or None
ENABLED = PATH is not None
now = time.monotonic_ns  # ns, CLOCK_MONOTONIC: comparable across processes


def write(record: dict[str, Any]) -> None:
    """Append one request's timestamps (gateway-side; the file is opened per line, it is rare)."""
    if PATH is not None:
        with open(PATH, "a") as out:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


def mark(stamps: dict[str, int] | None, key: str) -> None:
    """Record now under ``key`` when tracing (``stamps`` is None when it is off)."""
    if stamps is not None:
        stamps[key] = now()
