"""Cost: GB-seconds, pricing, and the meter that accumulates them."""

from __future__ import annotations

import pytest

from sealfn.config import PriceConfig
from sealfn.errors import Conflict
from sealfn.runtime.cost import CostMeter, CostReport, cost_report, gb_seconds

# Round prices so expected values read off directly.
PRICES = PriceConfig(usd_per_gb_second=0.001, usd_per_million_requests=2.0)


@pytest.mark.parametrize(
    ("memory_mb", "seconds", "expected"),
    [
        pytest.param(1024, 1.0, 1.0, id="1gb-1s"),
        pytest.param(512, 4.0, 2.0, id="half-gb-4s"),
        pytest.param(128, 0.5, 0.0625, id="128mb-half-second"),
        pytest.param(2048, 0.0, 0.0, id="zero-time"),
    ],
)
def test_gb_seconds(memory_mb: int, seconds: float, expected: float) -> None:
    assert gb_seconds(memory_mb, seconds) == expected


@pytest.mark.parametrize(
    ("gb_s", "requests", "expected"),
    [
        pytest.param(0.0, 0, CostReport(0.0, 0, 0.0, 0.0), id="nothing"),
        pytest.param(10.0, 0, CostReport(10.0, 0, 0.01, 0.0), id="no-requests"),
        pytest.param(0.0, 1_000_000, CostReport(0.0, 1_000_000, 2.0, 0.002), id="requests-only"),
        pytest.param(10.0, 1000, CostReport(10.0, 1000, 0.012, 0.012), id="both"),
    ],
)
def test_cost_report(gb_s: float, requests: int, expected: CostReport) -> None:
    report = cost_report(gb_s, requests, PRICES)
    assert report.gb_seconds == expected.gb_seconds
    assert report.requests == expected.requests
    assert report.usd == pytest.approx(expected.usd)
    assert report.usd_per_1000 == pytest.approx(expected.usd_per_1000)


def test_default_prices_are_lambda_like() -> None:
    report = cost_report(1.0, 1_000_000, PriceConfig())
    assert report.usd == pytest.approx(0.0000166667 + 0.20)


def test_meter_counts_running_and_stopped_instances() -> None:
    meter = CostMeter()
    meter.instance_started("a", 1024, now=0.0)
    meter.instance_started("b", 512, now=2.0)
    assert meter.gb_seconds(now=2.0) == pytest.approx(2.0)
    meter.instance_stopped("a", now=4.0)
    assert meter.gb_seconds(now=6.0) == pytest.approx(4.0 + 2.0)  # a: 1 GB x 4 s, b: 0.5 GB x 4 s
    meter.instance_stopped("b", now=6.0)
    assert meter.gb_seconds(now=100.0) == pytest.approx(6.0)  # nothing running, nothing accrues


def test_meter_report() -> None:
    meter = CostMeter()
    meter.instance_started("a", 2048, now=10.0)
    meter.request()
    meter.request(3)
    assert meter.requests == 4
    report = meter.report(now=15.0, prices=PRICES)
    assert report.gb_seconds == pytest.approx(10.0)
    assert report.requests == 4
    assert report.usd == pytest.approx(10.0 * 0.001 + 4 * 2.0 / 1e6)
    assert report.usd_per_1000 == pytest.approx(report.usd / 4 * 1000)


@pytest.mark.parametrize(
    ("stops", "expected"),
    [
        pytest.param([("a", 5.0)], 5.0, id="stop-once"),
        pytest.param([("a", 5.0), ("a", 9.0)], 5.0, id="second-stop-is-no-op"),
        pytest.param([("zzz", 5.0)], 10.0, id="unknown-stop-is-no-op"),
        pytest.param([("a", -1.0)], 0.0, id="clock-step-back-bills-nothing"),
    ],
)
def test_meter_stop(stops: list[tuple[str, float]], expected: float) -> None:
    meter = CostMeter()
    meter.instance_started("a", 1024, now=0.0)
    for instance_id, at in stops:
        meter.instance_stopped(instance_id, now=at)
    assert meter.gb_seconds(now=10.0) == pytest.approx(expected)


def test_meter_rejects_double_start() -> None:
    meter = CostMeter()
    meter.instance_started("a", 1024, now=0.0)
    with pytest.raises(Conflict, match="'a'"):
        meter.instance_started("a", 1024, now=1.0)


def test_meter_rejects_negative_requests() -> None:
    with pytest.raises(ValueError):
        CostMeter().request(-1)


def test_meter_restart_after_stop() -> None:
    meter = CostMeter()
    meter.instance_started("a", 1024, now=0.0)
    meter.instance_stopped("a", now=1.0)
    meter.instance_started("a", 1024, now=5.0)
    assert meter.gb_seconds(now=7.0) == pytest.approx(3.0)
