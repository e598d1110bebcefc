"""The discrete-event core every policy runs on: a clock with an event queue (time is injected,
nothing sleeps), and the ledger that measures one replay (GB-seconds, starts, loads, latency,
peaks)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sealfn.runtime.cost import CostMeter


@dataclass(frozen=True)
class Request:
    id: int
    model: str
    arrived: float  # simulated seconds


class Policy(Protocol):
    """A placement policy driving its own simulated pool; it reports to the ledger."""

    def arrive(self, request: Request) -> None: ...


class Sim:
    """Simulated time: actions run in time order (ties in the order they were scheduled)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (max(when, self.now), next(self._seq), action))

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action)

    def every(self, period: float, action: Callable[[], None]) -> None:
        """Run ``action`` every ``period`` seconds from now on, for as long as the sim runs."""

        def tick() -> None:
            action()
            self.after(period, tick)

        self.after(period, tick)

    def run(self, done: Callable[[], bool]) -> None:
        """Run events until ``done()`` or none are left."""
        while self._events and not done():
            when, _, action = heapq.heappop(self._events)
            self.now = when
            action()


@dataclass
class _Footprint:
    billed_mb: int
    models: tuple[str, ...] = ()  # loaded, or being loaded


@dataclass
class Ledger:
    """What one replay cost and how it served; instances report start, stop and what they hold."""

    base_mb: float  # an instance's own memory before models
    model_mb: Mapping[str, float]  # what each model holds once loaded
    meter: CostMeter = field(default_factory=CostMeter)
    arrived: int = 0
    starts: int = 0
    loads: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)  # served requests, seconds
    peak_instances: int = 0
    peak_billed_mb: int = 0
    peak_resident_mb: float = 0.0
    peak_placement: list[list[str]] = field(default_factory=list)  # at peak resident memory
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (t, alive) on change
    _alive: dict[str, _Footprint] = field(default_factory=dict)

    @property
    def outstanding(self) -> int:
        return self.arrived - len(self.latencies) - self.failures

    def started(self, instance: str, billed_mb: int, models: Iterable[str], now: float) -> None:
        self.starts += 1
        self.meter.instance_started(instance, billed_mb, now)
        self._alive[instance] = _Footprint(billed_mb)
        self.timeline.append((now, len(self._alive)))
        self.holds(instance, models)

    def stopped(self, instance: str, now: float) -> None:
        self.meter.instance_stopped(instance, now)
        del self._alive[instance]
        self.timeline.append((now, len(self._alive)))

    def holds(self, instance: str, models: Iterable[str]) -> None:
        """``instance`` now holds (or is loading) ``models``."""
        self._alive[instance].models = tuple(sorted(models))
        self._track_peaks()

    def loaded(self) -> None:
        self.loads += 1

    def served(self, request: Request, now: float) -> None:
        self.latencies.append(now - request.arrived)

    def failed(self) -> None:
        self.failures += 1

    def close(self, now: float) -> None:
        """Stop billing every instance still alive at the end of the replay."""
        for instance in list(self._alive):
            self.stopped(instance, now)

    def summary(self, now: float) -> dict[str, Any]:
        lat = np.array(self.latencies) if self.latencies else np.array([np.nan])
        return {
            "gb_s": self.meter.gb_seconds(now),
            "requests": self.arrived,
            "served": len(self.latencies),
            "failures": self.failures,
            "unserved": self.outstanding,
            "cold_starts": self.starts,
            "model_loads": self.loads,
            "p50_s": float(np.percentile(lat, 50)),
            "p99_s": float(np.percentile(lat, 99)),
            "p999_s": float(np.percentile(lat, 99.9)),
            "mean_s": float(lat.mean()),
            "max_s": float(lat.max()),
            "peak_instances": self.peak_instances,
            "peak_billed_mb": self.peak_billed_mb,
            "peak_resident_mb": self.peak_resident_mb,
            "peak_placement": self.peak_placement,
        }

    def _track_peaks(self) -> None:
        alive = self._alive.values()
        self.peak_instances = max(self.peak_instances, len(self._alive))
        self.peak_billed_mb = max(self.peak_billed_mb, sum(f.billed_mb for f in alive))
        resident = sum(self.base_mb + sum(self.model_mb[m] for m in f.models) for f in alive)
        if resident > self.peak_resident_mb:
            self.peak_resident_mb = resident
            self.peak_placement = [list(f.models) for f in alive]


def replay(
    arrivals: Iterable[tuple[float, str]],
    make: Callable[[Sim, Ledger], Policy],
    ledger: Ledger,
    duration_s: float,
    drain_limit_s: float = 600.0,
) -> tuple[dict[str, Any], Policy]:
    """Feed ``arrivals`` (time, model) to the policy ``make`` builds, run until every request
    is served or failed (at most ``drain_limit_s`` past the trace), then bill to that moment.
    Returns the summary and the policy (for what it recorded about itself)."""
    sim = Sim()
    policy = make(sim, ledger)
    for index, (at, model) in enumerate(arrivals):
        request = Request(index, model, at)
        sim.at(at, lambda r=request: _arrive(policy, ledger, r))  # type: ignore[misc]
    end = duration_s + drain_limit_s
    sim.run(lambda: sim.now >= end or (sim.now >= duration_s and ledger.outstanding == 0))
    now = sim.now
    ledger.close(now)
    return {**ledger.summary(now), "end_s": now, "timeline": ledger.timeline}, policy


def _arrive(policy: Policy, ledger: Ledger, request: Request) -> None:
    ledger.arrived += 1
    policy.arrive(request)
