"""How many instances a function should have, Knative-KPA style: ``decide(samples, ..., now)``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sealfn.errors import ConfigError

# Averages like 0.1 + 0.2 land a hair above a whole multiple of the target; without this slack
# ceil() would ask for one instance too many.
_CEIL_SLACK = 1e-9


@dataclass(frozen=True)
class AutoscalerConfig:
    """Scaling knobs of one function; windows and keep-alive are in seconds."""

    target_concurrency: float  # in-flight+queued requests per instance we aim for
    min_instances: int
    max_instances: int
    keep_alive_s: float  # seconds an instance outlives the last request
    stable_window_s: float = 6.0  # averaging window for ordinary scaling
    panic_window_s: float = 1.0  # short window that catches bursts
    panic_threshold: float = 2.0  # panic when the burst asks for this many times current

    def __post_init__(self) -> None:
        _require(self.target_concurrency > 0, "target_concurrency", self.target_concurrency)
        _require(self.min_instances >= 0, "min_instances", self.min_instances)
        _require(
            self.max_instances >= max(self.min_instances, 1), "max_instances", self.max_instances
        )
        _require(self.keep_alive_s >= 0, "keep_alive_s", self.keep_alive_s)
        _require(self.stable_window_s > 0, "stable_window_s", self.stable_window_s)
        _require(
            0 < self.panic_window_s <= self.stable_window_s, "panic_window_s", self.panic_window_s
        )
        _require(self.panic_threshold >= 1, "panic_threshold", self.panic_threshold)


@dataclass(frozen=True)
class Sample:
    """Observed in-flight + queued requests of the function at time ``at`` (monotonic seconds)."""

    at: float
    concurrency: float


@dataclass(frozen=True)
class AutoscalerState:
    """What `decide` carries from one call to the next; the default means not in panic."""

    panic_since: float | None = None  # when the current panic began
    last_panic_at: float | None = None  # last time the panic condition held


@dataclass(frozen=True)
class ScaleDecision:
    """The outcome of one `decide` call."""

    desired: int  # instances the function should have
    panic: bool
    state: AutoscalerState  # pass to the next `decide`
    reason: str  # short, for logs and metrics


def decide(  # noqa: PLR0917 - the loop passes plain data positionally; time is last
    samples: Sequence[Sample],
    current: int,
    last_request_at: float | None,
    config: AutoscalerConfig,
    state: AutoscalerState,
    now: float,
) -> ScaleDecision:
    """Return how many instances to run now, from concurrency samples and ``current`` instances.

    Ordinary scaling follows the stable-window average; a burst that asks for ``panic_threshold``
    times ``current`` over the panic window scales up at once and forbids scaling down until a
    full stable window passes without the burst condition. Keep-alive holds one instance for
    ``keep_alive_s`` after the last request; after that an idle function falls to the minimum.
    """
    target = config.target_concurrency
    desired_stable = _instances_for(_mean(samples, now, config.stable_window_s), target)
    desired_panic = _instances_for(_mean(samples, now, config.panic_window_s), target)
    state = _next_panic_state(state, desired_panic, current, config, now)
    panic = state.panic_since is not None
    if panic:
        desired, reason = max(current, desired_panic), "panic"
    else:
        desired, reason = desired_stable, "stable"
    demand = _latest_concurrency(samples, now) > 0
    if demand and current == 0:
        desired, reason = max(desired, 1), "scale from zero"
    in_keep_alive = last_request_at is not None and now - last_request_at < config.keep_alive_s
    if desired == 0 and in_keep_alive and (current >= 1 or demand):
        desired, reason = 1, "keep-alive"
    if desired == 0:
        reason = "idle → min"
    desired, reason = _clamp(desired, reason, config)
    return ScaleDecision(desired=desired, panic=panic, state=state, reason=reason)


def prune(samples: Sequence[Sample], now: float, horizon_s: float) -> tuple[Sample, ...]:
    """Drop samples at or before ``now - horizon_s``; keeps exactly what a window that long uses."""
    return tuple(s for s in samples if s.at > now - horizon_s)


def _next_panic_state(
    state: AutoscalerState, desired_panic: int, current: int, config: AutoscalerConfig, now: float
) -> AutoscalerState:
    burst = desired_panic > current and desired_panic / max(current, 1) >= config.panic_threshold
    if burst:
        since = now if state.panic_since is None else state.panic_since
        return AutoscalerState(panic_since=since, last_panic_at=now)
    if state.panic_since is None:
        return state
    last = state.panic_since if state.last_panic_at is None else state.last_panic_at
    if now - last >= config.stable_window_s:
        return AutoscalerState()  # a whole stable window without a burst: calm again
    return state


def _mean(samples: Sequence[Sample], now: float, window_s: float) -> float:
    """Mean concurrency of the samples in (now - window_s, now]; 0 when there are none."""
    inside = [s.concurrency for s in samples if now - window_s < s.at <= now]
    return sum(inside) / len(inside) if inside else 0.0


def _latest_concurrency(samples: Sequence[Sample], now: float) -> float:
    seen = [s for s in samples if s.at <= now]
    return max(seen, key=lambda s: s.at).concurrency if seen else 0.0


def _instances_for(concurrency: float, target: float) -> int:
    return max(0, math.ceil(concurrency / target - _CEIL_SLACK))


def _clamp(desired: int, reason: str, config: AutoscalerConfig) -> tuple[int, str]:
    if desired > config.max_instances:
        return config.max_instances, f"{reason}, capped at max"
    if desired < config.min_instances and desired > 0:
        return config.min_instances, f"{reason}, raised to min"
    return max(desired, config.min_instances), reason


def _require(ok: bool, key: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"autoscaler setting {key} has a bad value: {value!r}")
