"""Autoscaler: stable and panic windows, scale from zero, keep-alive, idle to min, clamps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from sealfn.errors import ConfigError
from sealfn.runtime.autoscaler import (
    AutoscalerConfig,
    AutoscalerState,
    Sample,
    decide,
    prune,
)

CONFIG = AutoscalerConfig(
    target_concurrency=1.0, min_instances=0, max_instances=10, keep_alive_s=30
)
NOW = 100.0
CALM = AutoscalerState()


def load(level: float, start: float, end: float = NOW, step: float = 0.5) -> list[Sample]:
    """Samples of ``level`` every ``step`` seconds in (start, end]."""
    count = round((end - start) / step)
    return [Sample(at=end - step * i, concurrency=level) for i in reversed(range(count))]


def steady(level: float) -> list[Sample]:
    return load(level, NOW - CONFIG.stable_window_s)


# Load of 2 for the stable window, doubled to 4 over the last (panic) second.
DOUBLED = load(2, NOW - 6, NOW - 1) + load(4, NOW - 1)


@dataclass(frozen=True)
class Case:
    """One `decide` call and what it should answer."""

    samples: list[Sample]
    current: int
    expect: tuple[int, bool, str]  # (desired, panic, reason)
    last_request_at: float | None = NOW
    config: AutoscalerConfig = CONFIG
    state: AutoscalerState = CALM


TARGET_2 = replace(CONFIG, target_concurrency=2)
MIN_2 = replace(CONFIG, min_instances=2)
IN_PANIC = AutoscalerState(panic_since=NOW - 3, last_panic_at=NOW - 2)
PANIC_OVER = AutoscalerState(panic_since=NOW - 8, last_panic_at=NOW - 6)
ZERO_THEN_TINY = [*load(0, NOW - 6, NOW - 0.5), Sample(NOW, 0.2)]
FALLING = load(8, NOW - 6, NOW - 3) + load(2, NOW - 3)  # avg 5 over the stable window
RISE_BY_HALF = load(2, NOW - 6, NOW - 1) + load(3, NOW - 1)
IDLE = "idle → min"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            Case([Sample(NOW, 1)], 0, (1, False, "scale from zero")), id="scale-from-zero"
        ),
        pytest.param(Case(ZERO_THEN_TINY, 0, (1, False, "scale from zero")), id="tiny-demand"),
        pytest.param(Case([Sample(NOW, 5)], 0, (5, True, "scale from zero")), id="burst-from-zero"),
        pytest.param(Case(steady(3), 3, (3, False, "stable")), id="steady-at-target"),
        pytest.param(Case(steady(2.5), 2, (3, False, "stable")), id="steady-above-target"),
        pytest.param(Case(steady(0.3), 1, (1, False, "stable")), id="fraction-rounds-up"),
        pytest.param(Case(steady(6), 3, (3, False, "stable"), config=TARGET_2), id="target-2"),
        pytest.param(Case(steady(6), 1, (3, True, "panic"), config=TARGET_2), id="target-2-panic"),
        pytest.param(Case(DOUBLED, 2, (4, True, "panic")), id="doubling-panics"),
        pytest.param(Case(RISE_BY_HALF, 2, (3, False, "stable")), id="rise-below-threshold"),
        pytest.param(Case(steady(1), 4, (4, True, "panic"), state=IN_PANIC), id="panic-holds"),
        pytest.param(Case(steady(1), 4, (1, False, "stable"), state=PANIC_OVER), id="panic-ends"),
        pytest.param(Case(FALLING, 8, (5, False, "stable")), id="scale-down-by-stable-average"),
        pytest.param(Case([], 1, (1, False, "keep-alive"), NOW - 20), id="keep-alive-holds-1"),
        pytest.param(Case(steady(0), 3, (1, False, "keep-alive"), NOW - 20), id="keep-alive-to-1"),
        pytest.param(Case([], 0, (0, False, IDLE), NOW - 20), id="keep-alive-starts-nothing"),
        pytest.param(Case(steady(0), 1, (0, False, IDLE), NOW - 31), id="idle-to-zero"),
        pytest.param(Case([], 1, (0, False, IDLE), NOW - 30), id="keep-alive-boundary"),
        pytest.param(Case([], 1, (0, False, IDLE), None), id="never-requested"),
        pytest.param(Case([], 0, (2, False, IDLE), None, MIN_2), id="idle-min-floor"),
        pytest.param(
            Case(steady(1), 2, (2, False, "stable, raised to min"), config=MIN_2),
            id="min-floor-under-load",
        ),
        pytest.param(Case(steady(15), 10, (10, False, "stable, capped at max")), id="max-cap"),
        pytest.param(Case(steady(50), 2, (10, True, "panic, capped at max")), id="max-cap-panic"),
        pytest.param(Case([Sample(NOW - 10, 4)], 4, (1, False, "keep-alive")), id="old-samples"),
        pytest.param(
            Case([*steady(2), Sample(NOW + 1, 9)], 2, (2, False, "stable")), id="future-samples"
        ),
    ],
)
def test_decide(case: Case) -> None:
    decision = decide(
        case.samples, case.current, case.last_request_at, case.config, case.state, now=NOW
    )
    assert (decision.desired, decision.panic, decision.reason) == case.expect


def test_panic_state_is_carried() -> None:
    entered = decide(DOUBLED, 2, NOW, CONFIG, CALM, now=NOW)
    assert entered.state == AutoscalerState(panic_since=NOW, last_panic_at=NOW)
    later = decide(DOUBLED + load(8, NOW, NOW + 1), 4, NOW + 1, CONFIG, entered.state, now=NOW + 1)
    assert later.state == AutoscalerState(panic_since=NOW, last_panic_at=NOW + 1)
    assert later.desired == 8


def test_burst_then_calm_timeline() -> None:
    """Panic scales up within the panic window, holds while load falls, then scales down."""
    samples = load(2, NOW - 6, NOW)
    state, current = CALM, 2
    timeline: list[tuple[float, int, bool]] = []
    for tick in range(1, 16):
        now = NOW + tick
        level = 8 if tick <= 2 else 1  # a 2-second burst, then light load
        samples = list(prune([*samples, *load(level, now - 1, now)], now, horizon_s=6))
        decision = decide(samples, current, now, CONFIG, state, now=now)
        state, current = decision.state, decision.desired
        timeline.append((now - NOW, current, decision.panic))
    assert timeline[0] == (1, 8, True)  # scaled up one second into the burst
    in_panic = [c for _, c, p in timeline if p]
    assert in_panic == [8] * len(in_panic)  # never scales down while panicking
    # The burst condition last held at t=1 (at t=2 the 8 instances already match the load), so
    # panic lasts through t=6 and ends at t=7, a full stable window later.
    assert timeline[5] == (6, 8, True)
    assert timeline[6][2] is False
    assert timeline[-1] == (15, 1, False)  # settled at the light load


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"target_concurrency": 0}, id="zero-target"),
        pytest.param({"min_instances": -1}, id="negative-min"),
        pytest.param({"min_instances": 5, "max_instances": 4}, id="max-below-min"),
        pytest.param({"max_instances": 0}, id="zero-max"),
        pytest.param({"keep_alive_s": -1}, id="negative-keep-alive"),
        pytest.param({"stable_window_s": 0}, id="zero-stable-window"),
        pytest.param({"panic_window_s": 0}, id="zero-panic-window"),
        pytest.param({"panic_window_s": 7}, id="panic-window-over-stable"),
        pytest.param({"panic_threshold": 0.5}, id="threshold-below-1"),
    ],
)
def test_config_rejects_bad_values(change: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        replace(CONFIG, **change)


@pytest.mark.parametrize(
    ("horizon_s", "kept"),
    [
        pytest.param(10, [95.0, 99.0, 100.0], id="all-inside"),
        pytest.param(5, [99.0, 100.0], id="boundary-excluded"),
        pytest.param(0.5, [100.0], id="latest-only"),
        pytest.param(0, [], id="zero-horizon"),
    ],
)
def test_prune(horizon_s: float, kept: list[float]) -> None:
    samples = [Sample(95.0, 1), Sample(99.0, 2), Sample(100.0, 3)]
    assert [s.at for s in prune(samples, NOW, horizon_s)] == kept
