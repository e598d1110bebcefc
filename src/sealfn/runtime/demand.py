"""Recent peak request rates per model, for `packer.replicate`: time is injected, nothing sleeps.

Arrivals are counted in buckets of ``bucket_s``; a model's peak rate is its fullest bucket within
the last ``window_s`` divided by ``bucket_s``. A peak, not a mean: bursts decide how many copies
of a model must be loaded before they come, and a burst seen once is likely to come back within
the window (the instances holding the copies are kept that long anyway).
"""

from __future__ import annotations

from collections import deque

from sealfn.errors import ConfigError


class DemandMeter:
    """Counts each model's arrivals and answers its peak rate over the recent window."""

    def __init__(self, window_s: float = 60.0, bucket_s: float = 1.0) -> None:
        if not 0 < bucket_s <= window_s:
            raise ConfigError(
                f"demand meter: need 0 < bucket_s <= window_s, got {bucket_s}, {window_s}"
            )
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._buckets: dict[str, deque[list[float]]] = {}  # model -> [[bucket start, count], ...]

    def arrived(self, model: str, now: float, count: int = 1) -> None:
        """Record ``count`` requests of ``model`` arriving at ``now`` (monotonic seconds)."""
        start = now - now % self.bucket_s
        buckets = self._buckets.setdefault(model, deque())
        if buckets and buckets[-1][0] == start:
            buckets[-1][1] += count
        else:
            buckets.append([start, float(count)])
        self._expire(buckets, now)

    def forget(self, model: str) -> None:
        self._buckets.pop(model, None)

    def peak_rps(self, now: float) -> dict[str, float]:
        """Each model's peak requests per second over the last ``window_s`` (models with none
        left in the window are dropped)."""
        peaks = {}
        for model, buckets in list(self._buckets.items()):
            self._expire(buckets, now)
            if buckets:
                peaks[model] = max(count for _, count in buckets) / self.bucket_s
            else:
                del self._buckets[model]
        return peaks

    def _expire(self, buckets: deque[list[float]], now: float) -> None:
        while buckets and buckets[0][0] + self.bucket_s <= now - self.window_s:
            buckets.popleft()
