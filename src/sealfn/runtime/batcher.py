"""Adaptive batch sizing: how many queued requests to send to one free slot, now."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sealfn.errors import ConfigError

MAX_SAMPLE_SIZES = 16
"""Distinct batch sizes an `ExecEstimate` remembers; enough for a line fit, bounded memory."""


@dataclass(frozen=True)
class BatchPolicy:
    """Limits on one batch of a function."""

    max_batch: int  # requests per batch, >= 1
    slo_s: float  # seconds from arrival to result the oldest request should meet

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch!r}")
        if not self.slo_s > 0:
            raise ConfigError(f"slo_s must be > 0 seconds, got {self.slo_s!r}")


@dataclass(frozen=True)
class ExecEstimate:
    """Learned batch execution time t(b) = fixed_s + per_item_s * b, from observed runs."""

    fixed_s: float = 0.0  # seconds per batch, whatever its size
    per_item_s: float = 0.0  # seconds per request in the batch
    samples: tuple[tuple[int, float], ...] = ()  # (batch size, EWMA seconds), sorted by size

    def predict(self, batch: int) -> float:
        """Seconds a batch of ``batch`` requests is expected to run."""
        return self.fixed_s + self.per_item_s * batch


def observe(estimate: ExecEstimate, batch: int, seconds: float, alpha: float = 0.2) -> ExecEstimate:
    """Fold one observed run (``batch`` requests took ``seconds``) into ``estimate``.

    Each batch size keeps an EWMA of its run time (weight ``alpha`` on the new run), so a
    one-off stall fades; then fixed/per-item are refit over all sizes by least squares.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch!r}")
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    samples = dict(estimate.samples)
    old = samples.get(batch)
    samples[batch] = seconds if old is None else (1 - alpha) * old + alpha * seconds
    points = _bounded(sorted(samples.items()), keep=batch)
    fixed_s, per_item_s = _fit(points)
    return ExecEstimate(fixed_s=fixed_s, per_item_s=per_item_s, samples=tuple(points))


def next_batch(
    queued_arrivals: Sequence[float],
    free_slots: int,
    policy: BatchPolicy,
    estimate: ExecEstimate,
    now: float,
) -> int:
    """Return how many requests to take from the head of the queue for ONE free slot.

    ``queued_arrivals`` are arrival times (monotonic seconds), oldest first. 0 means nothing to
    do. Never waits for a batch to fill: a free slot and a queued request mean dispatch now;
    batches grow by themselves because requests pile up while every slot is busy.
    """
    if free_slots < 1 or not queued_arrivals:
        return 0
    queued = len(queued_arrivals)
    # Spread the queue over the free slots: several medium batches run in parallel and finish
    # sooner than one big batch while the other slots sit idle.
    n = min(queued, policy.max_batch, math.ceil(queued / free_slots))
    if not estimate.samples:
        return n  # no runs seen yet: nothing to shrink against
    waited = now - queued_arrivals[0]  # seconds the oldest request has already spent
    for size in range(n, 0, -1):
        if waited + estimate.predict(size) <= policy.slo_s:
            return size
    # The oldest is late whatever we do: a smaller batch would not save it and would cut
    # throughput exactly when the queue is overloaded, making everyone behind it late too.
    return n


def _bounded(points: list[tuple[int, float]], keep: int) -> list[tuple[int, float]]:
    """Drop sizes past `MAX_SAMPLE_SIZES`, keeping the fit's spread.

    The ends anchor the slope and ``keep`` (the size just observed) is fresh, so the victim is
    the interior size whose neighbours are closest together: it adds the least information.
    """
    while len(points) > MAX_SAMPLE_SIZES:
        interior = [i for i in range(1, len(points) - 1) if points[i][0] != keep]
        victim = min(interior, key=lambda i: (points[i + 1][0] - points[i - 1][0], points[i][0]))
        del points[victim]
    return points


def _fit(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares (fixed_s, per_item_s) over ``points``, both clamped to >= 0.

    With one size there is no slope to fit. At size 1 all of it is taken as fixed overhead
    (flat), which errs optimistic for bigger batches: those get tried and supply the slope.
    At a size b > 1 the time is split half overhead, half per item, midway between an
    overhead-bound and a compute-bound model, and exact at b.
    """
    if len(points) == 1:
        size, seconds = points[0]
        if size == 1:
            return seconds, 0.0
        return seconds / 2, seconds / (2 * size)
    count = len(points)
    mean_b = sum(b for b, _ in points) / count
    mean_t = sum(t for _, t in points) / count
    var_b = sum((b - mean_b) ** 2 for b, _ in points)
    per_item = sum((b - mean_b) * (t - mean_t) for b, t in points) / var_b
    fixed = mean_t - per_item * mean_b
    if per_item < 0:
        return mean_t, 0.0  # bigger batches ran faster (noise): best flat line
    if fixed < 0:
        # Best line through the origin: t = per_item * b.
        return 0.0, sum(b * t for b, t in points) / sum(b * b for b, _ in points)
    return fixed, per_item
