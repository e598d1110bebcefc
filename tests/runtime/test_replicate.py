"""Replicas ahead of demand (`packer.replicate`), Erlang C, the demand meter, and evictions that
spare a model's last copy."""

from __future__ import annotations

import math

import pytest

from sealfn.errors import ConfigError
from sealfn.runtime.demand import DemandMeter
from sealfn.runtime.lifecycle import InstanceState
from sealfn.runtime.packer import (
    LoadedModel,
    ModelCost,
    PackedInstance,
    PackerPolicy,
    PlacementKind,
    Replica,
    erlang_c,
    place,
    replicate,
)

S = InstanceState
NOW = 100.0
HOT = ModelCost("hot", memory_mb=50, switch_s=0.01, exec_s=0.02)  # 25 req/s = 0.5 Erlang
COLD = ModelCost("cold", memory_mb=50, switch_s=0.01, exec_s=0.02)
TINY = ModelCost("tiny", memory_mb=10, switch_s=0.005, exec_s=0.0001)
WARM = ModelCost("warm", memory_mb=50, switch_s=0.01, exec_s=0.02)
COSTS = {c.name: c for c in (HOT, COLD, TINY, WARM)}
POLICY = PackerPolicy(max_instances=4, memory_budget_mb=120, replica_wait=0.01, start_wait=0.05)


def lm(name: str, in_flight: int = 0, last_used: float = 90.0) -> LoadedModel:
    return LoadedModel(name, COSTS[name].memory_mb, last_used, in_flight)


def inst(id: str, *loaded: LoadedModel, state: InstanceState = S.IDLE) -> PackedInstance:
    return PackedInstance(id, state, 1, loaded)


# ---- Erlang C --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: P(wait) = rho
        (1, 0.0, 0.0),
        (2, 1.0, 1 / 3),  # textbook: c=2, a=1 -> 1/3
        (3, 2.0, 4 / 9),  # c=3, a=2 -> 4/9
        (2, 2.0, 1.0),  # at capacity: everyone waits
        (0, 0.1, 1.0),  # no server
    ],
)
def test_erlang_c_matches_closed_forms(servers: int, load: float, expected: float) -> None:
    assert erlang_c(servers, load) == pytest.approx(expected)


def test_erlang_c_falls_with_servers() -> None:
    shares = [erlang_c(c, 0.5) for c in range(1, 6)]
    assert shares == sorted(shares, reverse=True)
    assert shares[-1] < 1e-3


# ---- replicate -------------------------------------------------------------------------------


def test_no_replica_when_demand_is_low() -> None:
    pool = [inst("i1", lm("hot")), inst("i2")]
    assert replicate(pool, {"hot": 0.2}, COSTS, POLICY, NOW) is None  # 0.004 Erlang


def test_busy_model_gets_a_replica_on_an_idle_instance() -> None:
    pool = [inst("i1", lm("hot")), inst("i2", lm("tiny"))]
    assert replicate(pool, {"hot": 25.0}, COSTS, POLICY, NOW) == Replica(
        "i2", "hot", "1 holders at 25 req/s peak"
    )


def test_replicas_grow_until_the_waiting_share_is_met() -> None:
    demand = {"hot": 20.0}  # 0.4 Erlang
    pool = [inst("i1", lm("hot")), inst("i2", lm("hot")), inst("i3")]
    assert erlang_c(2, 0.4) > POLICY.replica_wait  # two holders: ~7% wait, over 1%: a third
    replica = replicate(pool, demand, COSTS, POLICY, NOW)
    assert replica is not None and (replica.instance, replica.model) == ("i3", "hot")
    pool = [inst("i1", lm("hot")), inst("i2", lm("hot")), inst("i3", lm("hot")), inst("i4")]
    assert erlang_c(3, 0.4) <= POLICY.replica_wait
    assert replicate(pool, demand, COSTS, POLICY, NOW) is None


def test_the_model_with_most_waits_goes_first() -> None:
    pool = [inst("i1", lm("hot")), inst("i2", lm("cold")), inst("i3")]
    replica = replicate(pool, {"hot": 25.0, "cold": 5.0}, COSTS, POLICY, NOW)
    assert replica is not None and replica.model == "hot"


@pytest.mark.parametrize(
    "target",
    [
        inst("i2", lm("tiny", in_flight=1), state=S.WARM),  # busy
        inst("i2", state=S.STARTING),  # not serving yet
        inst("i2", state=S.DRAINING),
    ],
)
def test_only_idle_serving_instances_take_replicas(target: PackedInstance) -> None:
    pool = [inst("i1", lm("hot")), target]
    policy = PackerPolicy(max_instances=2, memory_budget_mb=120)
    assert replicate(pool, {"hot": 25.0}, COSTS, policy, NOW) is None


def test_a_replica_never_evicts_a_last_copy() -> None:
    # i2 has room only if cold goes, but it is cold's only copy
    pool = [inst("i1", lm("hot")), inst("i2", lm("cold"))]
    policy = PackerPolicy(max_instances=2, memory_budget_mb=60)
    assert replicate(pool, {"hot": 25.0, "cold": 0.1}, COSTS, policy, NOW) is None


def test_a_replica_evicts_a_surplus_copy() -> None:
    # cold has two copies and little demand: the one on i2 may go for hot
    pool = [
        inst("i1", lm("hot")),
        inst("i2", lm("cold"), lm("tiny")),
        inst("i3", lm("cold")),
    ]
    policy = PackerPolicy(max_instances=3, memory_budget_mb=60)
    replica = replicate(pool, {"hot": 25.0, "cold": 0.5}, COSTS, policy, NOW)
    assert replica == Replica("i3", "hot", "1 holders at 25 req/s peak", ("cold",))


FULL = [inst("i1", lm("hot"), lm("cold")), inst("i2", lm("warm"), lm("tiny"))]  # 100, 60 MB


def test_no_room_anywhere_starts_an_instance_only_past_start_wait() -> None:
    policy = PackerPolicy(max_instances=3, memory_budget_mb=100, start_wait=0.05)
    # 0.5 Erlang on one holder: half its requests wait, over start_wait: start one for it
    start = replicate(FULL, {"hot": 25.0, "cold": 0.1}, COSTS, policy, NOW)
    assert start is not None and (start.instance, start.model) == (None, "hot")
    # 0.04 Erlang: over replica_wait (1%), under start_wait (5%): fill billed memory only
    assert erlang_c(1, 0.04) > policy.replica_wait
    assert replicate(FULL, {"hot": 2.0, "cold": 0.1}, COSTS, policy, NOW) is None


def test_no_start_at_max_instances_or_while_one_starts() -> None:
    at_max = PackerPolicy(max_instances=2, memory_budget_mb=100)
    assert replicate(FULL, {"hot": 25.0}, COSTS, at_max, NOW) is None
    starting = [*FULL, inst("i3", state=S.STARTING)]
    policy = PackerPolicy(max_instances=4, memory_budget_mb=100)
    assert replicate(starting, {"hot": 25.0}, COSTS, policy, NOW) is None


def test_a_model_nobody_holds_is_left_to_place() -> None:
    pool = [inst("i1", lm("tiny")), inst("i2")]
    assert replicate(pool, {"hot": 25.0}, COSTS, POLICY, NOW) is None


def test_replica_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        PackerPolicy(max_instances=1, memory_budget_mb=10, replica_wait=0)
    with pytest.raises(ConfigError):
        PackerPolicy(max_instances=1, memory_budget_mb=10, start_wait=1.5)


# ---- place: loading to avoid a wait spares last copies ------------------------------------------


def test_loading_elsewhere_to_skip_a_wait_takes_only_twin_copies() -> None:
    """hot's holder is busy; i2 could load it by evicting cold, but cold has no other copy."""
    slow = ModelCost("hot", memory_mb=50, switch_s=0.01, exec_s=0.5)  # holder frees in 0.5 s
    costs = {**COSTS, "hot": slow}
    pool = [
        PackedInstance("i1", S.WARM, 1, (LoadedModel("hot", 50, 90.0, 1),)),
        inst("i2", lm("cold"), lm("tiny")),
    ]
    policy = PackerPolicy(max_instances=2, memory_budget_mb=60)
    placement = place(slow, pool, 1, policy, NOW, costs)
    assert placement.kind is PlacementKind.QUEUE and placement.instance == "i1"
    # with a twin of cold on i3, i2's copy may go
    twin = [*pool, PackedInstance("i3", S.WARM, 1, (LoadedModel("cold", 50, 90.0, 1),))]
    placement = place(slow, twin, 1, PackerPolicy(max_instances=3, memory_budget_mb=60), NOW, costs)
    assert (placement.kind, placement.instance, placement.evict) == (
        PlacementKind.LOAD_AND_RUN,
        "i2",
        ("cold",),
    )


def test_a_model_with_no_copy_evicts_twins_before_last_copies() -> None:
    pool = [
        inst("i1", lm("cold", last_used=10.0), lm("tiny", last_used=80.0)),
        PackedInstance("i2", S.WARM, 1, (LoadedModel("tiny", 10, 90.0, 1),)),
    ]
    policy = PackerPolicy(max_instances=2, memory_budget_mb=60)
    placement = place(HOT, pool, 1, policy, NOW, COSTS)
    # tiny has a twin on i2 but its 10 MB are not room enough: cold must go
    assert placement.kind is PlacementKind.LOAD_AND_RUN and placement.evict == ("cold",)
    roomy = PackerPolicy(max_instances=2, memory_budget_mb=110)
    pool = [
        inst("i1", lm("cold", last_used=10.0), lm("warm", last_used=80.0)),
        PackedInstance("i2", S.WARM, 1, (LoadedModel("warm", 50, 90.0, 1),)),
    ]
    placement = place(HOT, pool, 1, roomy, NOW, COSTS)
    assert placement.evict == ("warm",)  # the twin goes, though cold is less recently used


# ---- the demand meter ------------------------------------------------------------------------


def test_peak_rate_is_the_fullest_bucket_in_the_window() -> None:
    meter = DemandMeter(window_s=10.0, bucket_s=1.0)
    for t in (0.1, 0.2, 0.3, 5.5):
        meter.arrived("m", t)
    meter.arrived("n", 5.6, count=2)
    assert meter.peak_rps(6.0) == {"m": 3.0, "n": 2.0}
    assert meter.peak_rps(10.5) == {"m": 3.0, "n": 2.0}  # bucket [0, 1) still in the window
    assert meter.peak_rps(11.5) == {"m": 1.0, "n": 2.0}
    assert meter.peak_rps(16.5) == {}  # everything aged out


def test_bucket_width_scales_the_rate() -> None:
    meter = DemandMeter(window_s=10.0, bucket_s=0.5)
    meter.arrived("m", 1.0)
    meter.arrived("m", 1.2)
    assert meter.peak_rps(1.3) == {"m": 4.0}
    meter.forget("m")
    assert meter.peak_rps(1.3) == {}


@pytest.mark.parametrize(("window", "bucket"), [(10.0, 0.0), (1.0, 2.0), (1.0, -1.0)])
def test_meter_settings_are_checked(window: float, bucket: float) -> None:
    with pytest.raises(ConfigError):
        DemandMeter(window_s=window, bucket_s=bucket)


def test_nan_free() -> None:
    assert not math.isnan(erlang_c(5, 4.999))
