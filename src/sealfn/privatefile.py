"""Files that hold keys at rest: owner-only (mode 0600), versioned JSON."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from sealfn.errors import ConfigError


def read_private_json(path: Path, version: int, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ConfigError if others can read it, or it is not ``what``
    at ``version``. (FileNotFoundError passes through for the caller to translate.)"""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is open to other users (mode {mode:o}); chmod 600 it")
    try:
        doc = json.loads(path.read_bytes())
        if not isinstance(doc, dict) or doc.get("version") != version:
            raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else None!r}")
    except ValueError as exc:
        raise ConfigError(f"{path} is not {what}: {exc}") from exc
    return doc
