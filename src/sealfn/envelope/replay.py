"""Replay protection: each (user id, nonce) is accepted once while its timestamp is fresh."""

from __future__ import annotations

import heapq
import threading

from sealfn.envelope._failure import check_type, reject
from sealfn.envelope.format import RequestHeader

_Key = tuple[str, bytes]  # (user id, nonce)


class ReplayGuard:
    """Rejects a (user, nonce) seen within the freshness window; memory bounded.

    A request is fresh while ``|now - timestamp| <= window_s``, so its (user, nonce) must be
    remembered until ``timestamp + window_s``; older entries are dropped on each check. Past
    ``max_entries`` live entries the guard fails closed: it refuses new requests rather than
    forget one still inside its window (forgetting would let that request be replayed). At the
    default 30 s window, 2**18 entries admit about 8,700 requests/s per guard.

    Keyed by (user id, nonce): the nonce is a per-user freshness token, so the same 16 bytes from
    two users are two requests. Only authenticated requests (after HPKE open) should be checked,
    or forged headers could fill the guard. Thread-safe.
    """

    def __init__(self, *, window_s: float = 30.0, max_entries: int = 1 << 18) -> None:
        check_type("window_s", window_s, (int, float))
        check_type("max_entries", max_entries, int)
        if not window_s > 0 or max_entries <= 0:
            raise ValueError(
                f"window_s and max_entries must be positive: {window_s}, {max_entries}"
            )
        self.window_s = float(window_s)  # seconds
        self.max_entries = max_entries
        self._seen: set[_Key] = set()
        self._expiry: list[tuple[float, _Key]] = []  # min-heap of (forget-after time, key)
        self._lock = threading.Lock()

    @property
    def entries(self) -> int:
        """(user, nonce) pairs held now; not ``__len__``, so an empty guard is still truthy."""
        return len(self._seen)

    def check(self, header: RequestHeader, now: float) -> None:
        """Accept ``header`` once, or raise the opaque ``EnvelopeError``."""
        check_type("header", header, RequestHeader)
        check_type("now", now, (int, float))
        sent = header.timestamp_ms / 1000  # seconds
        key = (header.user_id, header.nonce)
        with self._lock:
            self._forget_before(now)
            if abs(now - sent) > self.window_s:
                raise reject("timestamp outside the replay window")
            if key in self._seen:
                raise reject("replayed (user, nonce)")
            if len(self._seen) >= self.max_entries:
                raise reject("replay guard full")
            self._seen.add(key)
            heapq.heappush(self._expiry, (sent + self.window_s, key))

    def _forget_before(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, key = heapq.heappop(self._expiry)
            self._seen.discard(key)
