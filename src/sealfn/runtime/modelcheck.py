"""Deploy-time check that an instance can load a model, run in a throwaway process.

The gateway never loads onnxruntime sessions itself (memory, and a crashing model must not take the
gateway down), so it asks a short-lived `python -m sealfn.instance.check` instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sealfn.errors import ModelError

CHECK_TIMEOUT_S = 120.0


def check_loads(path: Path, *, host_optimized: bool = False) -> None:
    """Raise ModelError (with onnxruntime's reason) unless the model loads in an instance; with
    ``host_optimized``, leave the model's host-optimized copy built beside it."""
    flags = ["--host-optimized"] if host_optimized else []
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sealfn.instance.check", str(path), *flags],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"loading the model took over {CHECK_TIMEOUT_S:g} s") from exc
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        raise ModelError(reason[0].replace("'check'", "the model"))
