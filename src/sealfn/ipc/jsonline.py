"""Control messages as versioned JSON lines (batch orders and events, rendezvous registrations).

``{"v": VERSION, ...}\\n`` per message. Reading one checks it is a JSON object at the expected
version and nothing else; every fault is a ``ProtocolError`` naming what was being read.
"""

from __future__ import annotations

import json
from typing import Any

from sealfn.errors import ProtocolError


def load(line: bytes, version: int, what: str) -> dict[str, Any]:
    """The message in ``line``, a JSON object at ``version``; ProtocolError otherwise."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, too deep
        raise ProtocolError(f"malformed {what}") from exc
    if not isinstance(raw, dict) or raw.get("v") != version:
        raise ProtocolError(f"unsupported {what} version")
    return raw
