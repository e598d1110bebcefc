"""How envelope calls fail: TypeError early for a caller's bug, one opaque error for bad input.

Every reason a sealed message is refused (tampered, truncated, replayed, stale, wrong key, ...)
becomes the same ``EnvelopeError()``, so a sender learns nothing about which check failed (no
oracle). The reason goes to the ``sealfn.envelope`` debug log; reasons are fixed strings that
never carry plaintext or key material.
"""

from __future__ import annotations

import logging

from sealfn.errors import EnvelopeError

log = logging.getLogger("sealfn.envelope")


def reject(reason: str) -> EnvelopeError:
    """Log why a sealed message is refused and return the opaque error to raise."""
    log.debug("envelope refused: %s", reason)
    return EnvelopeError()


def check_type(name: str, value: object, expected: type | tuple[type, ...]) -> None:
    """Raise ``TypeError`` naming the argument, in the style of pyca's ``_check_bytes``.

    ``bool`` is refused even where ``int`` is expected: ``True`` is never a timestamp.
    """
    if isinstance(value, bool) or not isinstance(value, expected):
        kinds = (expected,) if isinstance(expected, type) else expected
        raise TypeError(f"{name} must be {' or '.join(k.__name__ for k in kinds)}")
