"""Fn-Packer placement: tables of pools and the placement each should get, plus random pools."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from sealfn.errors import ConfigError
from sealfn.runtime.lifecycle import InstanceState
from sealfn.runtime.packer import (
    LoadedModel,
    ModelCost,
    PackedInstance,
    PackerPolicy,
    Placement,
    PlacementKind,
    claim_holds,
    expire_claims,
    place,
    unload_idle,
)

S = InstanceState
K = PlacementKind
NOW = 100.0
BUDGET = 300.0  # MB per instance: three 100 MB models
M = ModelCost("m", memory_mb=100, switch_s=1.0, exec_s=0.1)  # the model being placed
SLOW_M = ModelCost("m", memory_mb=100, switch_s=1.0, exec_s=5.0)  # waits longer than a switch
BIG_M = ModelCost("m", memory_mb=150, switch_s=1.0, exec_s=0.1)
COSTS = {
    "a": ModelCost("a", memory_mb=100, switch_s=1.0, exec_s=0.5),  # a claim lingers 1.0 s
    "b": ModelCost("b", memory_mb=100, switch_s=1.0, exec_s=0.2),
    "c": ModelCost("c", memory_mb=100, switch_s=1.0, exec_s=3.0),
}


def lm(name: str, last_used: float = 50.0, in_flight: int = 0, mb: float = 100) -> LoadedModel:
    return LoadedModel(name=name, memory_mb=mb, last_used=last_used, in_flight=in_flight)


def inst(
    id: str,
    *loaded: LoadedModel,
    state: InstanceState = S.IDLE,
    capacity: int = 2,
    claimed_by: str | None = None,
    ready_at: float | None = None,
) -> PackedInstance:
    return PackedInstance(
        id=id,
        state=state,
        capacity=capacity,
        loaded=loaded,
        claimed_by=claimed_by,
        ready_at=ready_at,
    )


def decide(
    instances: list[PackedInstance],
    queued: int = 1,
    *,
    model: ModelCost = M,
    max_instances: int = 2,
    start_s: float = 0.0,
) -> Placement:
    policy = PackerPolicy(max_instances=max_instances, memory_budget_mb=BUDGET, start_s=start_s)
    return place(model, instances, queued, policy, NOW, COSTS)


def outcome(placement: Placement) -> tuple[PlacementKind, str | None, tuple[str, ...]]:
    return placement.kind, placement.instance, placement.evict


def busy(id: str, name: str = "m", *, capacity: int = 1) -> PackedInstance:
    """An instance running one batch of ``name``; full at the default capacity 1."""
    return inst(id, lm(name, in_flight=1), capacity=capacity)


def started(id: str, since: float, *, other: str | None = None) -> PackedInstance:
    """Full instance holding "m"; "m" (or ``other``, loaded beside it) runs a batch that
    started at ``since``."""
    running = LoadedModel(other or "m", 100, since, in_flight=1, running_since=since)
    models = (running,) if other is None else (running, lm("m"))
    return inst(id, *models, capacity=1)


def claimed(id: str, *others: LoadedModel) -> PackedInstance:
    """Claimed by "a", live: idle 0.5 s of its 1.0 s linger (claim_factor 2 x exec_s 0.5)."""
    return inst(id, lm("a", last_used=NOW - 0.5), *others, claimed_by="a")


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        pytest.param([], (K.START_INSTANCE, None, ()), id="empty-pool-starts"),
        pytest.param([inst("i1")], (K.LOAD_AND_RUN, "i1", ()), id="free-empty-instance-loads"),
        pytest.param([inst("i1", lm("m"))], (K.RUN, "i1", ()), id="loaded-free-runs"),
        pytest.param([inst("i1"), inst("i2", lm("m"))], (K.RUN, "i2", ()), id="loaded-beats-empty"),
        pytest.param(
            [inst("i1", lm("m"), lm("a", in_flight=1)), inst("i2", lm("m"))],
            (K.RUN, "i2", ()),
            id="run-least-loaded",
        ),
        pytest.param(
            [inst("i1", lm("m", 5.0)), inst("i2", lm("m", 9.0)), inst("i3", lm("m", 7.0))],
            (K.RUN, "i2", ()),
            id="run-tie-most-recently-used",
        ),
        pytest.param(
            [inst("i2", lm("m")), inst("i1", lm("m"))], (K.RUN, "i1", ()), id="run-tie-smallest-id"
        ),
        pytest.param(
            [inst("i1", lm("a", 3.0)), inst("i2", lm("b", 7.0))],
            (K.LOAD_AND_RUN, "i2", ()),
            id="load-tie-most-recently-used",
        ),
        pytest.param(
            [inst("i2"), inst("i1")], (K.LOAD_AND_RUN, "i1", ()), id="load-tie-smallest-id"
        ),
        pytest.param(
            [inst("i1", lm("a"), lm("b"), lm("c")), inst("i2", lm("a"))],
            (K.LOAD_AND_RUN, "i2", ()),
            id="load-prefers-no-eviction",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.STARTING), inst("i2", lm("m"), state=S.DRAINING)],
            (K.QUEUE, "i1", ()),
            id="starting-holder-waited-for-draining-ignored",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.DRAINING), inst("i2", lm("m"), state=S.GONE)],
            (K.START_INSTANCE, None, ()),
            id="gone-does-not-count-toward-max",
        ),
    ],
)
def test_first_request_and_run(
    instances: list[PackedInstance], expected: tuple[PlacementKind, str | None, tuple[str, ...]]
) -> None:
    assert outcome(decide(instances)) == expected


@pytest.mark.parametrize(
    ("instances", "max_instances", "expected"),
    [
        pytest.param([busy("i1", "a")], 2, (K.START_INSTANCE, None, ()), id="busy-below-max"),
        pytest.param([busy("i1", "a")], 1, (K.QUEUE, None, ()), id="all-busy-at-max-queues"),
        pytest.param(
            [inst("i1", state=S.DRAINING)], 1, (K.QUEUE, None, ()), id="draining-counts-toward-max"
        ),
        pytest.param(
            [busy("i1", "a"), inst("i2", state=S.STARTING)],
            2,
            (K.QUEUE, None, ()),
            id="starting-instance-counts-toward-max",
        ),
        pytest.param(
            [inst("i1", lm("a", in_flight=1), lm("b", in_flight=1), lm("c", in_flight=1))],
            2,
            (K.START_INSTANCE, None, ()),
            id="free-slot-but-memory-in-flight-starts",
        ),
        pytest.param(
            [
                inst(
                    "i1",
                    lm("a", in_flight=1),
                    lm("b", in_flight=1),
                    lm("c", in_flight=1),
                    capacity=4,
                )
            ],
            1,
            (K.QUEUE, None, ()),
            id="never-evict-in-flight-queues-at-max",
        ),
    ],
)
def test_no_free_instance(
    instances: list[PackedInstance],
    max_instances: int,
    expected: tuple[PlacementKind, str | None, tuple[str, ...]],
) -> None:
    assert outcome(decide(instances, max_instances=max_instances)) == expected


@pytest.mark.parametrize(
    ("instances", "max_instances", "expected"),
    [
        pytest.param([claimed("i1")], 2, (K.START_INSTANCE, None, ()), id="claim-respected-start"),
        pytest.param(
            [claimed("i1"), inst("i2")], 2, (K.LOAD_AND_RUN, "i2", ()), id="claim-respected-other"
        ),
        pytest.param(
            [inst("i1", lm("a", last_used=NOW - 1.0), claimed_by="a")],
            2,
            (K.LOAD_AND_RUN, "i1", ()),
            id="claim-expired-after-2x-exec",
        ),
        pytest.param(
            [inst("i1", lm("a", last_used=0.0, in_flight=1), claimed_by="a")],
            2,
            (K.START_INSTANCE, None, ()),
            id="claim-live-while-in-flight",
        ),
        pytest.param(
            [inst("i1", lm("zz", last_used=NOW), claimed_by="zz")],
            2,
            (K.LOAD_AND_RUN, "i1", ()),
            id="claim-of-model-without-cost-lapses",
        ),
        pytest.param(
            [inst("i1", claimed_by="a")],
            2,
            (K.LOAD_AND_RUN, "i1", ()),
            id="claim-of-unloaded-model-lapses",
        ),
        pytest.param(
            [claimed("i1", lm("m"))], 2, (K.RUN, "i1", ()), id="claim-does-not-block-running"
        ),
        pytest.param(
            [claimed("i1")], 1, (K.LOAD_AND_RUN, "i1", ()), id="claim-yields-when-starving"
        ),
        pytest.param(
            [claimed("i1", lm("b", NOW - 0.1), lm("c", NOW - 0.2))],  # "a" is the LRU
            1,
            (K.LOAD_AND_RUN, "i1", ("c",)),
            id="claim-yields-never-evicts-claimant",
        ),
        pytest.param(
            [inst("i1", lm("a", last_used=NOW - 0.5, mb=300), claimed_by="a")],
            1,
            (K.QUEUE, None, ()),
            id="claim-yields-only-with-room",
        ),
        pytest.param(
            [claimed("i1"), busy("i2")],
            1,
            (K.QUEUE, "i2", ()),
            id="claim-holds-when-a-holder-will-serve",
        ),
    ],
)
def test_claims(
    instances: list[PackedInstance],
    max_instances: int,
    expected: tuple[PlacementKind, str | None, tuple[str, ...]],
) -> None:
    assert outcome(decide(instances, max_instances=max_instances)) == expected


@pytest.mark.parametrize(
    ("instances", "queued", "expected"),
    [
        pytest.param([inst("i1")], 1, False, id="single-request-no-claim"),
        pytest.param([inst("i1")], 2, True, id="queued-behind-claims"),
        pytest.param([inst("i1", lm("m"))], 2, True, id="run-claims"),
        pytest.param([busy("i1", "m", capacity=2)], 1, True, id="in-flight-elsewhere-claims"),
        pytest.param([claimed("i1", lm("m"))], 3, False, id="no-stealing-a-live-claim"),
        pytest.param([claimed("i1")], 3, False, id="yielded-claim-not-taken"),
    ],
)
def test_claim_flag(instances: list[PackedInstance], queued: int, expected: bool) -> None:
    placement = decide(instances, queued, max_instances=1)
    assert placement.kind in {K.RUN, K.LOAD_AND_RUN}
    assert placement.claim is expected


@pytest.mark.parametrize(
    ("instances", "model", "max_instances", "start_s", "expected"),
    [
        pytest.param(
            [busy("i1"), inst("i2")], M, 2, 0.0, (K.QUEUE, "i1", ()), id="switch-short-queues"
        ),
        pytest.param(
            [busy("i1"), inst("i2")],
            ModelCost("m", memory_mb=100, switch_s=0.1, exec_s=0.1),
            2,
            0.0,
            (K.QUEUE, "i1", ()),
            id="wait-equal-to-switch-queues",
        ),
        pytest.param(
            [busy("i1"), inst("i2")],
            SLOW_M,
            2,
            0.0,
            (K.LOAD_AND_RUN, "i2", ()),
            id="switch-long-loads-elsewhere",
        ),
        pytest.param(
            [started("i1", NOW - 4.5), inst("i2")],
            SLOW_M,
            2,
            0.0,
            (K.QUEUE, "i1", ()),
            id="batch-nearly-done-queues-for-holder",
        ),
        pytest.param(
            [started("i1", NOW - 3.5), inst("i2")],
            SLOW_M,
            2,
            0.0,
            (K.LOAD_AND_RUN, "i2", ()),
            id="batch-far-from-done-loads-elsewhere",
        ),
        pytest.param(
            [started("i1", NOW - 60.0), inst("i2")],
            SLOW_M,
            2,
            0.0,
            (K.QUEUE, "i1", ()),
            id="overrun-batch-counts-as-ending-now",
        ),
        pytest.param(
            [started("i1", NOW - 2.5, other="c"), inst("i2")],
            SLOW_M,
            2,
            0.0,
            (K.QUEUE, "i1", ()),
            id="other-models-batch-nearly-done-queues",
        ),
        pytest.param(
            [busy("i1")], SLOW_M, 2, 0.0, (K.START_INSTANCE, None, ()), id="switch-long-starts"
        ),
        pytest.param(
            [busy("i1")], SLOW_M, 2, 10.0, (K.QUEUE, "i1", ()), id="start-slower-than-waiting"
        ),
        pytest.param(
            [busy("i1")], SLOW_M, 1, 0.0, (K.QUEUE, "i1", ()), id="switch-long-at-max-queues"
        ),
        pytest.param(
            [
                inst("i1", lm("m", in_flight=1), lm("b", in_flight=1)),
                inst("i2"),
            ],
            SLOW_M,
            2,
            0.0,
            (K.QUEUE, "i1", ()),
            id="wait-is-shortest-running-batch",
        ),
        pytest.param(
            [inst("i1", lm("m"), lm("c", in_flight=1), capacity=1), busy("i2")],
            M,
            2,
            0.0,
            (K.QUEUE, "i2", ()),
            id="queues-for-nearest-holder",
        ),
        pytest.param(
            [inst("i1", lm("m", in_flight=1), lm("c", in_flight=1)), busy("i2")],
            SLOW_M,
            3,
            0.0,
            (K.START_INSTANCE, None, ()),
            id="nearest-holder-still-too-slow",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.STARTING, ready_at=NOW + 0.5), inst("i2")],
            M,
            2,
            0.0,
            (K.QUEUE, "i1", ()),
            id="starting-holder-ready-soon",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.STARTING, ready_at=NOW + 5.0), inst("i2")],
            M,
            2,
            0.0,
            (K.LOAD_AND_RUN, "i2", ()),
            id="starting-holder-ready-late",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.STARTING, ready_at=NOW + 5.0)],
            M,
            3,
            0.0,
            (K.QUEUE, "i1", ()),
            id="starting-holder-covers-the-request-even-if-later-than-a-new-start",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.STARTING, ready_at=NOW + 0.2), inst("i2")],
            ModelCost("m", memory_mb=100, switch_s=0.2, exec_s=0.1),  # 100.2 - 100 > 0.2
            2,
            0.0,
            (K.QUEUE, "i1", ()),
            id="starting-holder-as-soon-as-a-load-up-to-rounding-queues",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.STARTING, ready_at=NOW + 0.9)],
            M,
            3,
            0.0,
            (K.QUEUE, "i1", ()),
            id="no-second-start-while-one-is-coming",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.STARTING), inst("i2")],
            M,
            2,
            0.0,
            (K.QUEUE, "i1", ()),
            id="starting-holder-unknown-ready-assumed-soon",
        ),
    ],
)
def test_switch_cost_vs_wait(
    instances: list[PackedInstance],
    model: ModelCost,
    max_instances: int,
    start_s: float,
    expected: tuple[PlacementKind, str | None, tuple[str, ...]],
) -> None:
    placement = decide(instances, model=model, max_instances=max_instances, start_s=start_s)
    assert outcome(placement) == expected


@pytest.mark.parametrize(
    ("instances", "queued", "start_s", "expected"),
    [
        pytest.param([busy("i1", "a")], 1, 1.0, (K.QUEUE, "i1", ()), id="frees-before-a-start"),
        pytest.param([busy("i1", "a")], 1, 0.5, (K.QUEUE, "i1", ()), id="frees-as-a-start-queues"),
        pytest.param([busy("i1", "a")], 1, 0.3, (K.START_INSTANCE, None, ()), id="frees-after"),
        pytest.param(
            [busy("i1", "a"), busy("i2", "b")], 1, 1.0, (K.QUEUE, "i2", ()), id="soonest-free"
        ),
        pytest.param(
            [inst("i1", lm("a", in_flight=1), lm("b"), lm("c"), capacity=1)],
            1,
            1.0,
            (K.QUEUE, "i1", ()),
            id="fits-after-evicting-idle-models",
        ),
        pytest.param(
            [inst("i1", lm("a", in_flight=1, mb=250), capacity=1)],
            1,
            1.0,
            (K.START_INSTANCE, None, ()),
            id="in-flight-model-leaves-no-room-starts",
        ),
        pytest.param(
            [inst("i1", lm("a", in_flight=1), capacity=1, claimed_by="a")],
            1,
            1.0,
            (K.START_INSTANCE, None, ()),
            id="claimed-by-another-starts",
        ),
        pytest.param(
            [inst("i1", lm("a", in_flight=1), state=S.DRAINING, capacity=1)],
            1,
            1.0,
            (K.START_INSTANCE, None, ()),
            id="draining-is-not-waited-for",
        ),
        pytest.param([busy("i1", "a")], 5, 1.0, (K.START_INSTANCE, None, ()), id="hot-starts"),
        pytest.param(
            [busy("i1"), busy("i2", "b")],
            5,
            1.0,
            (K.QUEUE, "i2", ()),
            id="hot-spreads-to-a-busy-instance-when-one-more-holder-suffices",
        ),
        pytest.param(
            [busy("i1"), busy("i2", "b")],
            9,
            1.0,
            (K.START_INSTANCE, None, ()),
            id="too-hot-for-one-more-holder-starts",
        ),
    ],
)
def test_wait_for_a_busy_instance(
    instances: list[PackedInstance],
    queued: int,
    start_s: float,
    expected: tuple[PlacementKind, str | None, tuple[str, ...]],
) -> None:
    """No free instance fits the model: waiting for a full one to free and loading there beats
    starting one when it frees no later than the start would take (both then pay switch_s)."""
    placement = decide(instances, queued, max_instances=3, start_s=start_s)
    assert outcome(placement) == expected


@pytest.mark.parametrize(
    ("instances", "queued", "max_instances", "expected"),
    [
        pytest.param([busy("i1"), inst("i2")], 4, 2, (K.QUEUE, "i1", ()), id="at-threshold-queues"),
        pytest.param(
            [busy("i1"), inst("i2")], 5, 2, (K.LOAD_AND_RUN, "i2", ()), id="hot-spreads-by-load"
        ),
        pytest.param([busy("i1")], 5, 2, (K.START_INSTANCE, None, ()), id="hot-spreads-by-start"),
        pytest.param([busy("i1")], 5, 1, (K.QUEUE, "i1", ()), id="hot-at-max-queues-for-holder"),
        pytest.param(
            [busy("i1"), inst("i2", lm("m"), state=S.STARTING, ready_at=NOW + 0.5)],
            8,
            3,
            (K.QUEUE, "i1", ()),
            id="starting-holder-raises-threshold",
        ),
        pytest.param(
            [busy("i1"), busy("i2"), inst("i3")],
            9,
            3,
            (K.LOAD_AND_RUN, "i3", ()),
            id="hot-over-two-holders",
        ),
        pytest.param(
            [inst("i1", lm("m"), state=S.STARTING, ready_at=NOW + 5.0)],
            5,
            3,
            (K.START_INSTANCE, None, ()),
            id="hot-starts-beside-a-starting-holder",
        ),
    ],
)
def test_hot_model_spreads(
    instances: list[PackedInstance],
    queued: int,
    max_instances: int,
    expected: tuple[PlacementKind, str | None, tuple[str, ...]],
) -> None:
    assert outcome(decide(instances, queued, max_instances=max_instances)) == expected


@pytest.mark.parametrize(
    ("instances", "model", "expected"),
    [
        pytest.param(
            [inst("i1", lm("a", 1.0), lm("b", 3.0), lm("c", 2.0))],
            M,
            (K.LOAD_AND_RUN, "i1", ("a",)),
            id="evicts-least-recently-used",
        ),
        pytest.param(
            [inst("i1", lm("a", 1.0), lm("b", 3.0), lm("c", 2.0))],
            BIG_M,
            (K.LOAD_AND_RUN, "i1", ("a", "c")),
            id="evicts-until-it-fits",
        ),
        pytest.param(
            [inst("i1", lm("a", 1.0, in_flight=1), lm("b", 3.0), lm("c", 2.0))],
            M,
            (K.LOAD_AND_RUN, "i1", ("c",)),
            id="never-evicts-in-flight",
        ),
        pytest.param(
            [inst("i1", lm("b", 1.0), lm("a", 1.0), lm("c", 1.0))],
            M,
            (K.LOAD_AND_RUN, "i1", ("a",)),
            id="eviction-tie-by-name",
        ),
        pytest.param(
            [inst("i1", lm("a", mb=100.1), lm("b", mb=99.9))],
            M,
            (K.LOAD_AND_RUN, "i1", ()),
            id="exact-fit-needs-no-eviction",
        ),
        pytest.param(
            [inst("i1", *(lm(f"s{t}", float(t), mb=8) for t in range(6)), lm("big", 10.0, mb=200))],
            ModelCost("m", memory_mb=200, switch_s=1.0, exec_s=0.1),
            (K.LOAD_AND_RUN, "i1", ("big",)),
            id="evicts-one-big-model-not-every-small-one-first",
        ),
        pytest.param(
            [inst("i1", lm("x", 1.0, mb=30), lm("y", 2.0, mb=30), lm("p", 3.0), lm("q", 4.0))],
            BIG_M,  # needs 110 MB more: x + p, not the LRU run x, y, p
            (K.LOAD_AND_RUN, "i1", ("x", "p")),
            id="fewest-evictions-then-least-recently-used",
        ),
        pytest.param(
            [
                inst(
                    "i1",
                    lm("p", 5.0),
                    lm("a", 1.0, mb=60),
                    lm("b", 2.0, mb=60),
                    lm("c", 3.0, mb=60),
                )
            ],
            M,  # needs 80 MB more: p alone (recent) beats a + b (older)
            (K.LOAD_AND_RUN, "i1", ("p",)),
            id="one-recent-eviction-beats-two-older",
        ),
        pytest.param(
            [
                inst("i1", lm("a"), lm("b"), lm("c")),
                inst("i2", lm("a", 60.0), lm("b", 60.0, mb=150)),
            ],
            M,
            (K.LOAD_AND_RUN, "i2", ("a",)),
            id="equal-evictions-most-recently-used",
        ),
    ],
)
def test_memory_budget(
    instances: list[PackedInstance],
    model: ModelCost,
    expected: tuple[PlacementKind, str | None, tuple[str, ...]],
) -> None:
    assert outcome(decide(instances, model=model)) == expected


def test_model_bigger_than_budget_is_a_config_error() -> None:
    huge = ModelCost("huge", memory_mb=301, switch_s=1.0, exec_s=0.1)
    with pytest.raises(ConfigError, match=r"'huge' needs 301 MB.*300 MB"):
        decide([inst("i1")], model=huge)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: PackerPolicy(max_instances=0, memory_budget_mb=1), id="max"),
        pytest.param(lambda: PackerPolicy(max_instances=1, memory_budget_mb=0), id="budget"),
        pytest.param(
            lambda: PackerPolicy(max_instances=1, memory_budget_mb=1, claim_factor=-1),
            id="claim-factor",
        ),
        pytest.param(
            lambda: PackerPolicy(max_instances=1, memory_budget_mb=1, spread_queue=0),
            id="spread-queue",
        ),
        pytest.param(
            lambda: PackerPolicy(max_instances=1, memory_budget_mb=1, start_s=-1), id="start-s"
        ),
        pytest.param(lambda: ModelCost("x", memory_mb=-1, switch_s=0, exec_s=0), id="memory"),
        pytest.param(
            lambda: ModelCost("x", memory_mb=1, switch_s=float("nan"), exec_s=0), id="nan"
        ),
        pytest.param(lambda: PackedInstance("i", S.IDLE, capacity=0), id="capacity"),
    ],
)
def test_bad_settings_are_config_errors(build: Callable[[], object]) -> None:
    with pytest.raises(ConfigError):
        build()


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        pytest.param([inst("i1", lm("a", 40.0))], (("i1", "a"),), id="idle-past-keep-alive"),
        pytest.param([inst("i1", lm("a", 90.0))], (("i1", "a"),), id="exactly-keep-alive"),
        pytest.param([inst("i1", lm("a", 95.0))], (), id="recent-stays"),
        pytest.param([inst("i1", lm("a", 0.0, in_flight=1))], (), id="in-flight-stays"),
        pytest.param(
            [inst("i1", lm("b", 0.0), lm("a", 99.0), lm("c", 1.0, in_flight=1))],
            (("i1", "b"),),
            id="per-model-despite-busy-siblings",
        ),
        pytest.param(
            [inst("i2", lm("b", 0.0), lm("a", 0.0)), inst("i1", lm("a", 0.0))],
            (("i1", "a"), ("i2", "a"), ("i2", "b")),
            id="sorted-by-instance-then-model",
        ),
        pytest.param(
            [
                inst("i1", lm("a", 0.0), state=S.STARTING),
                inst("i2", lm("a", 0.0), state=S.DRAINING),
            ],
            (),
            id="only-serving-instances",
        ),
    ],
)
def test_unload_idle(
    instances: list[PackedInstance], expected: tuple[tuple[str, str], ...]
) -> None:
    assert unload_idle(instances, keep_alive_s=10.0, now=NOW) == tuple(expected)


@pytest.mark.parametrize(
    ("instance", "live"),
    [
        pytest.param(inst("i1", lm("a", NOW - 0.99), claimed_by="a"), True, id="within-2x-exec"),
        pytest.param(inst("i1", lm("a", NOW - 1.0), claimed_by="a"), False, id="at-2x-exec"),
        pytest.param(inst("i1", lm("a", 0.0, in_flight=1), claimed_by="a"), True, id="in-flight"),
        pytest.param(inst("i1", lm("a", NOW)), False, id="unclaimed"),
        pytest.param(inst("i1", lm("b", NOW), claimed_by="a"), False, id="claimant-unloaded"),
    ],
)
def test_claim_holds(instance: PackedInstance, live: bool) -> None:
    policy = PackerPolicy(max_instances=1, memory_budget_mb=BUDGET)
    assert claim_holds(instance, COSTS, policy, NOW) is live


def test_expire_claims_lists_lapsed_sorted() -> None:
    policy = PackerPolicy(max_instances=3, memory_budget_mb=BUDGET)
    pool = [
        inst("i3", lm("a", 0.0), claimed_by="a"),
        claimed("i2"),
        inst("i1", lm("b", 0.0), claimed_by="b"),
        inst("i0", lm("b", 0.0)),
    ]
    assert expire_claims(pool, COSTS, policy, NOW) == ("i1", "i3")


def test_place_ignores_input_order() -> None:
    pool = [
        inst("i3", lm("a", 10.0)),
        inst("i1", lm("b", 10.0)),
        inst("i2", lm("c", 10.0)),
        busy("i4"),
    ]
    first = decide(pool, max_instances=4, model=SLOW_M)
    assert first.instance == "i1"
    for seed in range(20):
        shuffled = random.Random(seed).sample(pool, len(pool))
        assert decide(shuffled, max_instances=4, model=SLOW_M) == first


# ---- cases the trace-driven simulation (benchmarks/packing.py) found ----------------------

TRACE_POLICY = PackerPolicy(max_instances=4, memory_budget_mb=192, start_s=0.19)
TINY = ModelCost("m", memory_mb=8, switch_s=0.013, exec_s=1e-5)


def _starts_for(pool: list[PackedInstance], queued: int) -> int:
    """Place the same queued requests again and again, as the pool's pump does, recording each
    START as a new instance loading the model; how many starts before it settles."""
    pool = list(pool)
    for starts in range(TRACE_POLICY.max_instances + 1):
        placement = place(TINY, pool, queued, TRACE_POLICY, NOW, {})
        if placement.kind is not K.START_INSTANCE:
            return starts
        ready_at = NOW + TRACE_POLICY.start_s + TINY.switch_s  # a rounding step past 0.203 s
        pool.append(inst(f"c{starts}", lm("m", NOW), state=S.STARTING, ready_at=ready_at))
    return TRACE_POLICY.max_instances + 1


@pytest.mark.parametrize(
    ("pool", "queued", "starts"),
    [
        pytest.param([], 1, 1, id="empty-pool-starts-once"),
        pytest.param(
            [inst("c", lm("m", NOW), state=S.STARTING, ready_at=NOW + 0.25)],
            1,
            0,
            id="late-starting-holder-covers-it",
        ),
        pytest.param([], 9, 3, id="hot-starts-one-per-spread-queue"),
    ],
)
def test_one_request_is_not_started_again_and_again(
    pool: list[PackedInstance], queued: int, starts: int
) -> None:
    assert _starts_for(pool, queued) == starts


def test_tiny_batch_is_waited_for_rather_than_a_start() -> None:
    costs = {"m01": ModelCost("m01", memory_mb=8, switch_s=0.005, exec_s=9e-6)}
    m02 = ModelCost("m02", memory_mb=8, switch_s=0.005, exec_s=9e-6)
    pool = [inst("w", lm("m01", NOW, in_flight=1, mb=8), state=S.WARM, capacity=1)]
    placement = place(m02, pool, 1, TRACE_POLICY, NOW, costs)
    assert outcome(placement) == (K.QUEUE, "w", ())


def test_a_big_model_is_evicted_alone_not_after_the_small_ones() -> None:
    small = [lm(f"s{t}", float(t), mb=8) for t in range(6)]
    pool = [inst("i", *small, lm("big_a", 10.0, mb=119))]
    big_b = ModelCost("big_b", memory_mb=119, switch_s=0.1, exec_s=0.01)
    placement = place(big_b, pool, 1, TRACE_POLICY, NOW, {})
    assert outcome(placement) == (K.LOAD_AND_RUN, "i", ("big_a",))


# ---- random pools -------------------------------------------------------------------------

NAMES = ("m", "a", "b", "c", "d")


def _random_pool(rng: random.Random) -> list[PackedInstance]:
    pool = []
    for n in range(rng.randint(0, 5)):
        capacity = rng.randint(1, 3)
        loaded = [
            lm(name, rng.uniform(0, NOW), rng.randint(0, 1), rng.choice((50.0, 100.0, 150.0)))
            for name in rng.sample(NAMES, rng.randint(0, 3))
        ]
        pool.append(
            inst(
                f"i{n}",
                *loaded,
                state=rng.choice(list(S)),
                capacity=capacity,
                claimed_by=rng.choice((None, *NAMES)),
                ready_at=rng.choice((None, NOW + rng.uniform(-1, 5))),
            )
        )
    return pool


def _check(
    placement: Placement, pool: list[PackedInstance], policy: PackerPolicy, queued: int
) -> None:
    by_id = {i.id: i for i in pool}
    alive = [i for i in pool if i.state is not S.GONE]
    if placement.kind is K.START_INSTANCE:
        assert len(alive) < policy.max_instances
        holders = [i for i in alive if i.model("m") is not None and i.state is not S.DRAINING]
        if any(i.state is S.STARTING for i in holders):  # a start is coming: only if hot
            assert queued > policy.spread_queue * len(holders)
        return
    if placement.kind is K.QUEUE:
        assert not placement.evict
        if placement.instance is not None:  # one that has the model, or a full one to load it
            hint = by_id[placement.instance]
            full = hint.state in {S.IDLE, S.WARM} and hint.in_flight >= hint.capacity
            assert hint.model("m") is not None or full
        return
    target = by_id[placement.instance or ""]
    assert target.state in {S.IDLE, S.WARM}
    assert target.in_flight < target.capacity
    evicted = [m for m in target.loaded if m.name in placement.evict]
    assert all(m.in_flight == 0 for m in evicted)
    if claim_holds(target, COSTS, policy, NOW):
        assert target.claimed_by not in placement.evict
    if placement.kind is K.RUN:
        assert target.model("m") is not None and not placement.evict
        return
    assert target.model("m") is None
    kept = sum(m.memory_mb for m in target.loaded if m.name not in placement.evict)
    assert kept + M.memory_mb <= policy.memory_budget_mb + 1e-9


def test_random_pools_keep_the_invariants() -> None:
    rng = random.Random(20240611)
    kinds = set()
    for _ in range(2000):
        pool = _random_pool(rng)
        policy = PackerPolicy(
            max_instances=rng.randint(1, 6),
            memory_budget_mb=BUDGET,
            spread_queue=rng.randint(1, 4),
            start_s=rng.choice((0.0, 2.0)),
        )
        model = ModelCost("m", M.memory_mb, rng.uniform(0, 3), rng.uniform(0, 3))
        queued = rng.randint(1, 12)
        placement = place(model, pool, queued, policy, NOW, COSTS)
        _check(placement, pool, policy, queued)
        kinds.add(placement.kind)
    assert kinds == set(K)  # the loop reached every outcome
