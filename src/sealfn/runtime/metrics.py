"""Prometheus metrics: counters on the hot path, gauges read from the pool on each scrape."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sealfn.config import PriceConfig
from sealfn.runtime.cost import cost_report

if TYPE_CHECKING:
    from sealfn.runtime.function import Function

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """sealfn's metrics, in a registry of their own (several gateways may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sealfn_requests",
            "Inference requests by function and HTTP status code",
            ["function", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sealfn_request_latency_seconds",
            "Gateway latency of inference requests, queueing included",
            ["function"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "sealfn_batch_size",
            "Requests per dispatched batch",
            ["function"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.cold_starts = Counter(
            "sealfn_cold_starts", "Instance starts", ["function"], registry=self.registry
        )
        self.cold_start_seconds = Histogram(
            "sealfn_cold_start_seconds",
            "Instance start to ready (process spawn + model load)",
            ["function"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )

    def request(self, function: str, code: int, seconds: float) -> None:
        self.requests.labels(function, str(code)).inc()
        self.latency.labels(function).observe(seconds)

    def batch(self, function: str, size: int) -> None:
        self.batch_size.labels(function).observe(size)

    def cold_start(self, function: str, seconds: float) -> None:
        self.cold_starts.labels(function).inc()
        self.cold_start_seconds.labels(function).observe(seconds)

    def watch(
        self,
        functions: Callable[[], list[Function]],
        clock: Callable[[], float],
        prices: PriceConfig,
    ) -> None:
        """Report the pool's gauges (queue, instances, cost) from ``functions()`` on each scrape."""
        self.registry.register(_PoolCollector(functions, clock, prices))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def forget(self, function: str) -> None:
        """Drop the per-function series of an undeployed function."""
        for metric in (self.latency, self.batch_size, self.cold_starts, self.cold_start_seconds):
            with contextlib.suppress(KeyError):
                metric.remove(function)
        # sealfn_requests is labelled (function, code): drop every code seen for the function.
        codes = {
            sample.labels["code"]
            for family in self.requests.collect()
            for sample in family.samples
            if sample.labels.get("function") == function
        }
        for code in codes:
            with contextlib.suppress(KeyError):
                self.requests.remove(function, code)


class _PoolCollector(Collector):
    def __init__(
        self,
        functions: Callable[[], list[Function]],
        clock: Callable[[], float],
        prices: PriceConfig,
    ) -> None:
        self._functions = functions
        self._clock = clock
        self._prices = prices

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily("sealfn_queue_depth", "Queued requests", labels=["function"])
        in_flight = GaugeMetricFamily(
            "sealfn_in_flight_requests", "Requests running on instances", labels=["function"]
        )
        instances = GaugeMetricFamily(
            "sealfn_instances", "Instances by lifecycle state", labels=["function", "state"]
        )
        gb_s = GaugeMetricFamily(
            "sealfn_gb_seconds", "Billed memory x lifetime of instances", labels=["function"]
        )
        usd = GaugeMetricFamily(
            "sealfn_cost_usd", "Cost at the configured prices", labels=["function"]
        )
        now = self._clock()
        for function in self._functions():
            name = function.name
            queue.add_metric([name], len(function.queue))
            in_flight.add_metric([name], function.in_flight_requests)
            for state, count in function.by_state().items():
                instances.add_metric([name, state], count)
            report = cost_report(function.gb_seconds(now), function.cost.requests, self._prices)
            gb_s.add_metric([name], report.gb_seconds)
            usd.add_metric([name], report.usd)
        yield from (queue, in_flight, instances, gb_s, usd)
