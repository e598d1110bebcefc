"""Batcher: adaptive batch size for one free slot, and the learned execution-time estimate."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sealfn.errors import ConfigError
from sealfn.runtime.batcher import (
    MAX_SAMPLE_SIZES,
    BatchPolicy,
    ExecEstimate,
    next_batch,
    observe,
)

POLICY = BatchPolicy(max_batch=8, slo_s=1.0)
NOW = 10.0
NO_RUNS = ExecEstimate()
# t(b) = 0.25 + 0.0625 b seconds; binary fractions so SLO sums compare exactly.
LEARNED = ExecEstimate(fixed_s=0.25, per_item_s=0.0625, samples=((1, 0.3125), (8, 0.75)))


def arrivals(count: int, oldest: float = NOW) -> list[float]:
    """``count`` requests that all arrived at ``oldest`` (only the oldest matters to the SLO)."""
    return [oldest] * count


@pytest.mark.parametrize(
    ("queue", "free_slots", "estimate", "expected"),
    [
        pytest.param([], 1, NO_RUNS, 0, id="empty-queue"),
        pytest.param(arrivals(3), 0, NO_RUNS, 0, id="no-free-slot"),
        pytest.param(arrivals(3), -1, NO_RUNS, 0, id="negative-free-slots"),
        pytest.param(arrivals(1), 1, NO_RUNS, 1, id="single-request-dispatched-at-once"),
        pytest.param(arrivals(1), 1, LEARNED, 1, id="single-request-learned"),
        pytest.param(arrivals(5), 1, NO_RUNS, 5, id="queue-grows-batch"),
        pytest.param(arrivals(20), 1, NO_RUNS, 8, id="max-batch-cap"),
        pytest.param(arrivals(10), 4, NO_RUNS, 3, id="spread-over-free-slots"),
        pytest.param(arrivals(3), 4, NO_RUNS, 1, id="more-slots-than-requests"),
        pytest.param(arrivals(8, oldest=9.75), 1, LEARNED, 8, id="slo-met-full-batch"),
        # waited 0.5 s: 0.5 + 0.25 + 0.0625 n <= 1.0 gives n <= 4
        pytest.param(arrivals(8, oldest=9.5), 1, LEARNED, 4, id="slo-shrinks-batch"),
        pytest.param([*arrivals(8, oldest=9.5), NOW], 1, LEARNED, 4, id="slo-uses-oldest"),
        # waited 0.75 s: even n=1 needs 1.0625 s
        pytest.param(arrivals(8, oldest=9.25), 1, LEARNED, 8, id="n1-misses-slo-drain-full"),
        pytest.param(arrivals(8, oldest=8.0), 1, LEARNED, 8, id="oldest-already-late-drain"),
        pytest.param(arrivals(8, oldest=8.0), 1, NO_RUNS, 8, id="no-estimate-no-shrink"),
    ],
)
def test_next_batch(
    queue: Sequence[float], free_slots: int, estimate: ExecEstimate, expected: int
) -> None:
    assert next_batch(queue, free_slots, POLICY, estimate, now=NOW) == expected


@pytest.mark.parametrize(
    ("max_batch", "slo_s"),
    [
        pytest.param(0, 1.0, id="zero-batch"),
        pytest.param(4, 0.0, id="zero-slo"),
        pytest.param(4, -1.0, id="negative-slo"),
    ],
)
def test_policy_rejects_bad_values(max_batch: int, slo_s: float) -> None:
    with pytest.raises(ConfigError):
        BatchPolicy(max_batch=max_batch, slo_s=slo_s)


def fold(runs: Sequence[tuple[int, float]], alpha: float = 0.2) -> ExecEstimate:
    estimate = ExecEstimate()
    for batch, seconds in runs:
        estimate = observe(estimate, batch, seconds, alpha=alpha)
    return estimate


@pytest.mark.parametrize(
    ("runs", "fixed_s", "per_item_s"),
    [
        pytest.param([(1, 0.3)], 0.3, 0.0, id="one-size-1-all-overhead"),
        pytest.param([(4, 0.8)], 0.4, 0.1, id="one-size-4-split-half"),
        pytest.param([(1, 0.3), (4, 0.6)], 0.2, 0.1, id="two-sizes-exact-line"),
        pytest.param([(1, 1.1), (2, 1.9), (3, 3.0)], 0.1, 0.95, id="least-squares"),
        pytest.param([(1, 0.5), (4, 0.3)], 0.4, 0.0, id="negative-slope-clamped-flat"),
        pytest.param([(2, 0.1), (4, 0.5)], 0.0, 0.11, id="negative-fixed-through-origin"),
        pytest.param([(2, 1.0), (2, 2.0), (4, 1.4)], 1.0, 0.1, id="ewma-per-size"),
    ],
)
def test_observe_fits_line(
    runs: list[tuple[int, float]], fixed_s: float, per_item_s: float
) -> None:
    estimate = fold(runs)
    assert estimate.fixed_s == pytest.approx(fixed_s)
    assert estimate.per_item_s == pytest.approx(per_item_s)


@pytest.mark.parametrize(
    ("runs", "alpha", "samples"),
    [
        pytest.param([(2, 1.0)], 0.2, ((2, 1.0),), id="first-run-taken-as-is"),
        pytest.param([(2, 1.0), (2, 2.0)], 0.2, ((2, 1.2),), id="ewma-alpha-0.2"),
        pytest.param([(2, 1.0), (2, 2.0)], 1.0, ((2, 2.0),), id="alpha-1-latest-only"),
        pytest.param(
            [(4, 1.0), (1, 0.5), (2, 0.7)], 0.2, ((1, 0.5), (2, 0.7), (4, 1.0)), id="sorted"
        ),
    ],
)
def test_observe_samples(
    runs: list[tuple[int, float]], alpha: float, samples: tuple[tuple[int, float], ...]
) -> None:
    got = fold(runs, alpha=alpha).samples
    assert [b for b, _ in got] == [b for b, _ in samples]
    assert [t for _, t in got] == pytest.approx([t for _, t in samples])


def test_observe_keeps_a_bounded_spread_of_sizes() -> None:
    estimate = fold([(b, 0.1 + 0.01 * b) for b in range(1, 41)])
    sizes = [b for b, _ in estimate.samples]
    assert len(sizes) == MAX_SAMPLE_SIZES
    assert sizes[0] == 1  # the ends anchor the slope
    assert sizes[-1] == 40
    assert estimate.fixed_s == pytest.approx(0.1)
    assert estimate.per_item_s == pytest.approx(0.01)


def test_observe_never_evicts_the_size_just_seen() -> None:
    estimate = fold([(b, 1.0) for b in range(1, MAX_SAMPLE_SIZES + 1)])
    estimate = observe(estimate, 100, 2.0)
    estimate = observe(estimate, 2, 1.0)
    assert 2 in dict(estimate.samples)
    assert len(estimate.samples) == MAX_SAMPLE_SIZES


@pytest.mark.parametrize(
    ("batch", "seconds", "alpha"),
    [
        pytest.param(0, 1.0, 0.2, id="zero-batch"),
        pytest.param(1, -0.1, 0.2, id="negative-seconds"),
        pytest.param(1, 1.0, 0.0, id="zero-alpha"),
        pytest.param(1, 1.0, 1.5, id="alpha-over-1"),
    ],
)
def test_observe_rejects_bad_arguments(batch: int, seconds: float, alpha: float) -> None:
    with pytest.raises(ValueError):
        observe(ExecEstimate(), batch, seconds, alpha=alpha)


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        pytest.param(1, 0.3125, id="b1"),
        pytest.param(4, 0.5, id="b4"),
        pytest.param(8, 0.75, id="b8"),
    ],
)
def test_predict(batch: int, expected: float) -> None:
    assert LEARNED.predict(batch) == expected


def test_batches_grow_while_slots_are_busy() -> None:
    # One slot, busy for 0.5 s; requests arrive every 0.1 s and pile up meanwhile.
    queue = [NOW + 0.1 * i for i in range(6)]
    assert next_batch(queue[:1], 1, POLICY, LEARNED, now=NOW) == 1
    assert next_batch(queue[1:], 1, POLICY, LEARNED, now=NOW + 0.5) == 5
