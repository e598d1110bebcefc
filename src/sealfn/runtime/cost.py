"""What serving costs, priced like a serverless platform: GB-seconds of memory plus requests."""

from __future__ import annotations

from dataclasses import dataclass

from sealfn.config import PriceConfig
from sealfn.errors import Conflict

_MB_PER_GB = 1024


def gb_seconds(memory_mb: int, seconds: float) -> float:
    """GB-seconds of ``memory_mb`` megabytes held for ``seconds`` (1 GB = 1024 MB, as Lambda)."""
    return memory_mb / _MB_PER_GB * seconds


@dataclass(frozen=True)
class CostReport:
    """Usage and its price over some period."""

    gb_seconds: float
    requests: int
    usd: float
    usd_per_1000: float  # USD per 1000 requests; 0.0 when there were none


def cost_report(gb_s: float, requests: int, prices: PriceConfig) -> CostReport:
    """Price ``gb_s`` GB-seconds and ``requests`` requests."""
    usd = gb_s * prices.usd_per_gb_second + requests * prices.usd_per_million_requests / 1e6
    per_1000 = usd / requests * 1000 if requests else 0.0
    return CostReport(gb_seconds=gb_s, requests=requests, usd=usd, usd_per_1000=per_1000)


class CostMeter:
    """Accumulates GB-seconds of running instances and counts requests (mutable, not pure).

    Times are monotonic seconds passed in by the caller.
    """

    def __init__(self) -> None:
        self._running: dict[str, tuple[int, float]] = {}  # id -> (memory MB, started at)
        self._stopped_gb_s = 0.0  # GB-seconds of instances already stopped
        self._requests = 0

    @property
    def requests(self) -> int:
        """Requests counted so far."""
        return self._requests

    def instance_started(self, instance_id: str, memory_mb: int, now: float) -> None:
        """Start billing ``instance_id``'s memory from ``now``."""
        if instance_id in self._running:
            raise Conflict(f"instance {instance_id!r} is already metered")
        self._running[instance_id] = (memory_mb, now)

    def instance_stopped(self, instance_id: str, now: float) -> None:
        """Stop billing ``instance_id``; a second stop (exit after drain) is a no-op."""
        entry = self._running.pop(instance_id, None)
        if entry is not None:
            self._stopped_gb_s += _held(entry, now)

    def request(self, n: int = 1) -> None:
        """Count ``n`` served requests."""
        if n < 0:
            raise ValueError(f"request count must be >= 0, got {n!r}")
        self._requests += n

    def gb_seconds(self, now: float) -> float:
        """GB-seconds so far, counting running instances up to ``now``."""
        return self._stopped_gb_s + sum(_held(entry, now) for entry in self._running.values())

    def report(self, now: float, prices: PriceConfig) -> CostReport:
        """Price everything metered up to ``now``."""
        return cost_report(self.gb_seconds(now), self._requests, prices)


def _held(entry: tuple[int, float], now: float) -> float:
    memory_mb, started = entry
    return gb_seconds(memory_mb, max(0.0, now - started))  # a clock step back bills nothing
