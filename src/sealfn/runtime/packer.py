"""Fn-Packer: which instance of a packed pool serves a model's request: ``place(model, ...)``.

A packed pool holds identical instances that can each load several models of one runtime
(SeSeMI's Fn-Packer). `place` decides, for one request of a model, in this order:

1. RUN on a free serving instance that has the model loaded.
2. QUEUE for a busy or starting instance that has it, when it is expected free no later than
   loading the model elsewhere would take (switch cost vs wait) and the model is not hot. A
   busy instance is expected free when its running batch has had its exec_s (the pool reports
   when each model's oldest batch started; without that, a whole exec_s from now). An
   instance starting with the model covers its requests: no second start while one is coming.
3. LOAD_AND_RUN on a free instance that fits the model after evicting idle models: the fewest
   that make room, copies with a twin on another instance before last copies, least recently
   used among as few; never a model with work in flight, never the claimant of a live claim;
   and when the model has a holder already (the load only saves a wait), only twinned copies.
4. QUEUE for a full instance that fits the model after evicting idle models, when it is expected
   free no later than a new instance could start (wait + switch <= start_s + switch).
5. START_INSTANCE while the pool is below ``max_instances``.
6. QUEUE: for the nearest instance with the model, or, when none has it, on a free instance
   claimed by another model (a claim yields rather than starve a model), or for any slot.

A model is hot when more than ``spread_queue`` of its requests wait per instance that has it
(or would have it, in step 4); a hot model spreads, loading or starting elsewhere, over waiting.

`replicate` works ahead of requests: when an instance is idle and nothing waits, it names one
model to load there as a replica, so a burst finds a free instance that already holds its model
(waiting for a holder, or loading after the request came, both show in the tail). A model's need
is its recent peak offered load (peak request rate x exec_s, Erlangs); it gets replicas while an
M/M/c queue over its holders would make more than ``replica_wait`` of its requests wait
(Erlang C), most waits avoided per second first. Replicas fill memory the instance is billed for
anyway; they only evict replicas another model's load does not need, never a model's last copy.

Claims (SeSeMI): a model that runs under concurrency (another of its requests queued or in
flight) claims the instance; no other model loads there while the claim is live, that is while
the claimant is in flight or was used less than ``claim_factor`` x its exec_s ago.

It never fails for lack of capacity (SeSeMI's prototype answered "all busy"): the caller keeps
the request queued and calls `place` again when an instance frees up or becomes ready.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate

from sealfn.errors import ConfigError
from sealfn.runtime.lifecycle import ALIVE, SERVING, InstanceState
from sealfn.types import InstanceId

# Sums like 0.1 + 0.2 MB land a hair above an exact fit; without this slack a model that fits
# would look too big.
_MB_SLACK = 1e-9
# Seconds within which two waits count as equal: ``ready_at - now`` is a rounding step off the
# ``start_s + switch_s`` it was set from, and must not make a start look faster than itself.
_S_SLACK = 1e-6


@dataclass(frozen=True)
class ModelCost:
    """What a model costs an instance; the pool learns the times from observed runs."""

    name: str
    memory_mb: float  # MB it holds while loaded
    switch_s: float  # seconds to load (and decrypt) it into an instance that lacks it
    exec_s: float  # seconds one batch runs (last or EWMA)

    def __post_init__(self) -> None:
        for key in ("memory_mb", "switch_s", "exec_s"):
            value = getattr(self, key)
            if not value >= 0:
                raise ConfigError(f"model {self.name!r}: {key} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded in an instance."""

    name: str
    memory_mb: float  # MB it holds there (its ModelCost.memory_mb when it was loaded)
    last_used: float  # monotonic seconds of its last dispatch or batch completion there
    in_flight: int = 0  # its batches running there now
    running_since: float | None = None  # when its oldest running batch started; None: unknown


@dataclass(frozen=True)
class PackedInstance:
    """What the packer needs to know about one instance, copied out of the pool."""

    id: InstanceId
    state: InstanceState
    capacity: int  # batches it may run at once, >= 1
    loaded: tuple[LoadedModel, ...] = ()  # a STARTING instance lists the model it is loading
    claimed_by: str | None = None  # model that claimed it; live or lapsed, see `claim_holds`
    ready_at: float | None = None  # STARTING only: expected ready (monotonic s); None = soon

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ConfigError(f"instance {self.id!r}: capacity must be >= 1, not {self.capacity}")

    @property
    def in_flight(self) -> int:
        """Batches running now, over all its models."""
        return sum(m.in_flight for m in self.loaded)

    def model(self, name: str) -> LoadedModel | None:
        """The loaded model called ``name``, or None."""
        return next((m for m in self.loaded if m.name == name), None)


@dataclass(frozen=True)
class PackerPolicy:
    """Knobs of one packed pool; times in seconds, memory in MB."""

    max_instances: int  # alive instances (starting and draining included) the pool may hold
    memory_budget_mb: float  # MB for loaded models in each instance (instances are identical)
    claim_factor: float = 2.0  # a claim lapses after claim_factor x exec_s idle (SeSeMI: 2)
    spread_queue: int = 4  # queued requests per instance holding a model before it spreads
    start_s: float = 0.0  # seconds to start an instance before it can load a model
    replica_wait: float = 0.01  # `replicate`: the share of a model's requests allowed to wait
    start_wait: float = 0.05  # `replicate` starts an instance for a replica only over this share

    def __post_init__(self) -> None:
        _require(self.max_instances >= 1, "max_instances", self.max_instances)
        _require(self.memory_budget_mb > 0, "memory_budget_mb", self.memory_budget_mb)
        _require(self.claim_factor >= 0, "claim_factor", self.claim_factor)
        _require(self.spread_queue >= 1, "spread_queue", self.spread_queue)
        _require(self.start_s >= 0, "start_s", self.start_s)
        _require(0 < self.replica_wait <= 1, "replica_wait", self.replica_wait)
        _require(0 < self.start_wait <= 1, "start_wait", self.start_wait)


class PlacementKind(enum.Enum):
    """What the pool should do with the request."""

    RUN = "run"  # dispatch to `instance`, which has the model loaded
    LOAD_AND_RUN = "load_and_run"  # unload `evict` from `instance`, load the model, dispatch
    START_INSTANCE = "start_instance"  # start a new instance that loads the model
    QUEUE = "queue"  # keep it queued; `instance`, if set, is the one expected to serve it


@dataclass(frozen=True)
class Placement:
    """The outcome of one `place` call."""

    kind: PlacementKind
    instance: InstanceId | None  # None for START_INSTANCE, and for QUEUE with no likely server
    reason: str  # short, for logs and metrics
    evict: tuple[str, ...] = ()  # LOAD_AND_RUN: models to unload first, least recently used first
    claim: bool = False  # RUN/LOAD_AND_RUN: record the instance as claimed by the model


@dataclass(frozen=True)
class Replica:
    """The outcome of `replicate`: load ``model`` on ``instance`` (after unloading ``evict``)
    ahead of its requests."""

    instance: InstanceId | None  # None: start a new instance that loads the model
    model: str
    reason: str
    evict: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Ask:
    """One `place` call's inputs that every step reads."""

    model: ModelCost
    policy: PackerPolicy
    costs: Mapping[str, ModelCost]
    now: float
    copied: frozenset[str] = frozenset()  # models more than one alive instance holds


def place(  # noqa: PLR0917 - the loop passes plain data positionally; time is last but one
    model: ModelCost,
    instances: Sequence[PackedInstance],
    queued: int,
    policy: PackerPolicy,
    now: float,
    costs: Mapping[str, ModelCost],
) -> Placement:
    """Decide where one request of ``model`` goes; see the module docstring for the order.

    ``instances`` are the pool's instances (GONE ones are ignored); ``queued`` counts the
    model's waiting requests, this one included; ``costs`` gives the exec time of the other
    loaded models (one missing is taken as instant: it holds no claim and frees at once).
    Ties go to the most recently used instance, then the smallest id, so the answer does not
    depend on the order of ``instances``. Raises `ConfigError` when the model is bigger than
    an instance's memory budget: no placement could ever serve it.
    """
    _check_fits(model, policy)
    alive = [i for i in instances if i.state in ALIVE]
    ask = _Ask(model, policy, {**costs, model.name: model}, now, _copied(alive))
    concurrent = queued > 1 or any(_running(i, model.name) for i in alive)
    run = _run_target(ask, alive)
    if run is not None:
        return _dispatch(PlacementKind.RUN, run, (), ask, concurrent, "loaded on a free instance")
    return _place_elsewhere(ask, alive, queued, concurrent)


def claim_holds(
    instance: PackedInstance, costs: Mapping[str, ModelCost], policy: PackerPolicy, now: float
) -> bool:
    """Whether ``instance``'s claim is live: its claimant is loaded there and in flight, or was
    used less than ``claim_factor`` x its exec_s ago."""
    claimant = instance.model(instance.claimed_by) if instance.claimed_by else None
    if claimant is None:
        return False
    if claimant.in_flight > 0:
        return True
    cost = costs.get(claimant.name)
    linger = policy.claim_factor * cost.exec_s if cost is not None else 0.0
    return now - claimant.last_used < linger


def expire_claims(
    instances: Iterable[PackedInstance],
    costs: Mapping[str, ModelCost],
    policy: PackerPolicy,
    now: float,
) -> tuple[InstanceId, ...]:
    """Ids of instances whose claim has lapsed (sorted); the pool clears their ``claimed_by``.

    `place` already ignores lapsed claims; this only keeps the pool's record tidy.
    """
    lapsed = (i.id for i in instances if i.claimed_by and not claim_holds(i, costs, policy, now))
    return tuple(sorted(lapsed))


def unload_idle(
    instances: Iterable[PackedInstance], keep_alive_s: float, now: float
) -> tuple[tuple[InstanceId, str], ...]:
    """(instance id, model) pairs to unload: serving instances' models with nothing in flight,
    last used ``keep_alive_s`` or more ago. Per model: an instance's busy or recently used
    models do not keep its idle ones loaded. Sorted by instance id, then model."""
    pairs = (
        (i.id, m.name)
        for i in instances
        if i.state in SERVING
        for m in i.loaded
        if m.in_flight == 0 and now - m.last_used >= keep_alive_s
    )
    return tuple(sorted(pairs))


def replicate(
    instances: Sequence[PackedInstance],
    peak_rps: Mapping[str, float],
    costs: Mapping[str, ModelCost],
    policy: PackerPolicy,
    now: float,
) -> Replica | None:
    """One replica to load now ahead of requests, or None. Call it when nothing is queued
    (requests come first).

    ``peak_rps`` is each model's recent peak request rate (requests/s; `DemandMeter` keeps it);
    a model's need is that rate x its exec_s in Erlangs. Models are taken in order of the
    requests per second that would wait on their current holders (rate x Erlang C), those over
    ``replica_wait`` only; a model no instance holds is left to `place`. The target is an idle
    serving instance without the model (and with no other model's live claim) that fits it,
    unloading only idle *surplus* replicas — copies their model would not miss, by the same
    test — fewest evictions, then most free memory, then smallest id. When no instance can
    take the first wanted model and its waiting share is over ``start_wait``, the answer is a
    new instance (``instance`` None) if the pool is below ``max_instances`` and none is starting:
    memory already billed is filled freely, new spend needs the stronger signal.
    """
    alive = [i for i in instances if i.state in ALIVE]
    holders = {name: sum(_holds(i, name) for i in alive) for name in costs}
    waiting = {}  # model -> the share of its requests that would wait on its holders
    for name, rate in peak_rps.items():
        cost = costs.get(name)
        if cost is not None and rate > 0 and holders[name] > 0:  # none loaded: `place` loads
            waiting[name] = erlang_c(holders[name], rate * cost.exec_s)
    wanted = sorted(
        (-peak_rps[name] * share, name)
        for name, share in waiting.items()
        if share > policy.replica_wait
    )
    surplus = _surplus(holders, peak_rps, costs, policy)
    for _, name in wanted:
        target = _replica_target(_Ask(costs[name], policy, costs, now), alive, surplus)
        if target is not None:
            instance, evict = target
            why = f"{holders[name]} holders at {peak_rps[name]:.3g} req/s peak"
            return Replica(instance.id, name, why, evict)
    starting = any(i.state is InstanceState.STARTING for i in alive)
    urgent = [name for _, name in wanted if waiting[name] > policy.start_wait]
    if urgent and not starting and len(alive) < policy.max_instances:
        name = urgent[0]
        why = f"{holders[name]} holders at {peak_rps[name]:.3g} req/s peak, no room: start one"
        return Replica(None, name, why)
    return None


def erlang_c(servers: int, load: float) -> float:
    """Probability that a request waits in an M/M/c queue of ``servers`` at ``load`` Erlangs
    (1 when the load is at or over capacity, 0 with no load)."""
    if servers <= 0 or load >= servers:
        return 1.0
    if load <= 0:
        return 0.0
    blocking = 1.0  # Erlang B by its recursion, numerically stable for any c
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    return servers * blocking / (servers - load * (1 - blocking))


def _surplus(
    holders: Mapping[str, int],
    peak_rps: Mapping[str, float],
    costs: Mapping[str, ModelCost],
    policy: PackerPolicy,
) -> frozenset[str]:
    """Models with a copy to spare: more than one holder, and one fewer would still keep their
    waiting share within ``replica_wait``."""
    spare = set()
    for name, count in holders.items():
        cost = costs.get(name)
        load = peak_rps.get(name, 0.0) * (cost.exec_s if cost is not None else 0.0)
        if count > 1 and erlang_c(count - 1, load) <= policy.replica_wait:
            spare.add(name)
    return frozenset(spare)


def _replica_target(
    ask: _Ask, alive: Sequence[PackedInstance], surplus: frozenset[str]
) -> tuple[PackedInstance, tuple[str, ...]] | None:
    """An idle serving instance without the model that fits it after unloading idle surplus
    replicas (least recently used first), or None."""
    options = []
    for instance in alive:
        idle = instance.state in SERVING and instance.in_flight == 0
        if not idle or instance.model(ask.model.name) is not None:
            continue
        if _claimed_by_other(instance, ask):
            continue
        spare = [m for m in instance.loaded if m.name in surplus]
        need = sum(m.memory_mb for m in instance.loaded) + ask.model.memory_mb
        need -= ask.policy.memory_budget_mb + _MB_SLACK
        victims = _fewest_victims(spare, need) if need > 0 else []
        if victims is None:
            continue
        free = ask.policy.memory_budget_mb - sum(m.memory_mb for m in instance.loaded)
        evict = tuple(m.name for m in sorted(victims, key=_lru))
        options.append(((len(evict), -free, instance.id), instance, evict))
    best = min(options, key=lambda o: o[0], default=None)
    return None if best is None else (best[1], best[2])


# ---- the steps of `place` -----------------------------------------------------------------


def _place_elsewhere(
    ask: _Ask, alive: Sequence[PackedInstance], queued: int, concurrent: bool
) -> Placement:
    """Steps 2-6: no free instance has the model loaded."""
    holder, wait = _nearest_holder(ask, alive)
    holders = sum(_holds(i, ask.model.name) for i in alive)
    hot = _hot(ask, queued, holders)
    # With a copy of the model somewhere, loading another only saves waiting: it may unload
    # copies that have a twin elsewhere, never another model's last copy.
    load = _load_target(
        ask, alive, yield_claims=False, only=ask.copied if holder is not None else None
    )
    # A request that already has a start coming waits for it unless the model is hot: were
    # starts compared by ready_at, one a rounding step later than a new start's would be
    # started again for the same request, once per call, up to max_instances.
    covered = not hot and any(_starting_with(i, ask.model.name) for i in alive)
    can_start = len(alive) < ask.policy.max_instances and not covered
    alternative = _cheapest_alternative(ask, load is not None, can_start)
    if holder is not None and not hot and wait <= alternative + _S_SLACK:
        return _queue(holder, f"{holder} frees in ~{wait:.3g}s <= {alternative:.3g}s elsewhere")
    if load is not None:
        why = "hot model spreads" if hot and holder is not None else "load on a free instance"
        return _dispatch(PlacementKind.LOAD_AND_RUN, *load, ask, concurrent, why)
    if can_start:
        why = "hot model spreads" if hot and holder is not None else "no free instance fits"
        return _wait_or_start(ask, alive, _hot(ask, queued, holders + 1), why)
    if holder is not None:
        return _queue(holder, "hot, but no room to spread: wait for an instance that has it")
    return _starving(ask, alive, concurrent)


def _wait_or_start(
    ask: _Ask, alive: Sequence[PackedInstance], hot_for_one_more: bool, why: str
) -> Placement:
    """Steps 4-5: wait for a full instance to free and load there, when that comes no later
    than a new instance would start and one more instance with the model is enough; else start.
    """
    busy = None if hot_for_one_more else _busy_target(ask, alive)
    if busy is not None and busy[1] <= ask.policy.start_s + _S_SLACK:
        instance, wait = busy
        return _queue(instance.id, f"{instance.id} frees in ~{wait:.3g}s, before a start")
    return Placement(PlacementKind.START_INSTANCE, None, f"{why}; start one")


def _starving(ask: _Ask, alive: Sequence[PackedInstance], concurrent: bool) -> Placement:
    """No instance has the model and the pool is full: a claimed instance with room yields
    (alongside its claimant, never evicting it) rather than leave the model waiting forever."""
    load = _load_target(ask, alive, yield_claims=True)
    if load is not None:
        why = "claim yields: nothing else can serve it"
        return _dispatch(PlacementKind.LOAD_AND_RUN, *load, ask, concurrent, why)
    return _queue(None, "all instances busy or full, pool at max_instances")


def _run_target(ask: _Ask, alive: Sequence[PackedInstance]) -> PackedInstance | None:
    """A free serving instance with the model loaded: unclaimed by others first, then least
    loaded, then the model's most recent use, then the smallest id."""
    name = ask.model.name
    ready = [i for i in alive if _free(i) and i.model(name) is not None]
    return min(
        ready,
        key=lambda i: (
            _claimed_by_other(i, ask),
            Fraction(i.in_flight, i.capacity),
            -_last_used(i, name),
            i.id,
        ),
        default=None,
    )


def _nearest_holder(ask: _Ask, alive: Sequence[PackedInstance]) -> tuple[InstanceId | None, float]:
    """The busy or starting instance with the model expected to serve it soonest, and the
    seconds until then; (None, inf) when no instance has it."""
    name = ask.model.name
    holders = [i for i in alive if _holds(i, name)]
    if not holders:
        return None, math.inf
    best = min(holders, key=lambda i: (_wait(i, ask), -_last_used(i, name), i.id))
    return best.id, _wait(best, ask)


def _wait(instance: PackedInstance, ask: _Ask) -> float:
    """Seconds until ``instance`` can take a batch. Starting: until ``ready_at`` (None: now).
    Busy: the soonest end expected among its running models' oldest batches: what is left of
    exec_s since the batch started, or the whole exec_s when the start is not known."""
    if instance.state is InstanceState.STARTING:
        return 0.0 if instance.ready_at is None else max(0.0, instance.ready_at - ask.now)
    return min((_left(m, ask) for m in instance.loaded if m.in_flight > 0), default=0.0)


def _left(model: LoadedModel, ask: _Ask) -> float:
    """Seconds until the oldest running batch of ``model`` is expected to end (an unknown
    model counts as instant; an overrun batch as ending now)."""
    cost = ask.costs.get(model.name)
    if cost is None:
        return 0.0
    if model.running_since is None:
        return cost.exec_s
    return max(0.0, model.running_since + cost.exec_s - ask.now)


def _busy_target(ask: _Ask, alive: Sequence[PackedInstance]) -> tuple[PackedInstance, float] | None:
    """The full serving instance without the model expected free soonest (then most recently
    used, then smallest id) that fits it after evicting its idle models, and the seconds until
    then; None if there is none. Its running models count as staying (we do not know which
    batch ends first); another model's live claim rules the instance out."""
    options = [
        (i, _wait(i, ask))
        for i in alive
        if i.state in SERVING
        and not _free(i)
        and i.model(ask.model.name) is None
        and not _claimed_by_other(i, ask)
        and _evictions(i, ask) is not None
    ]
    return min(options, key=lambda o: (o[1], -_recency(o[0]), o[0].id), default=None)


def _cheapest_alternative(ask: _Ask, can_load: bool, can_start: bool) -> float:
    """Seconds until the model could run if not on an instance that already has it."""
    if can_load:
        return ask.model.switch_s
    if can_start:
        return ask.policy.start_s + ask.model.switch_s
    return math.inf


def _load_target(
    ask: _Ask,
    alive: Sequence[PackedInstance],
    *,
    yield_claims: bool,
    only: frozenset[str] | None = None,
) -> tuple[PackedInstance, tuple[str, ...]] | None:
    """A free serving instance the model fits into, with its evictions: fewest evictions, then
    least loaded, then most recently used, then smallest id. Live claims of other models are
    skipped unless ``yield_claims``; ``only``, when given, names the models that may go."""
    options = [
        (i, evict)
        for i in alive
        if _free(i) and (yield_claims or not _claimed_by_other(i, ask))
        for evict in [_evictions(i, ask, only)]
        if evict is not None
    ]
    return min(
        options,
        key=lambda o: (
            len(o[1]),
            Fraction(o[0].in_flight, o[0].capacity),
            -_recency(o[0]),
            o[0].id,
        ),
        default=None,
    )


def _evictions(
    instance: PackedInstance, ask: _Ask, only: frozenset[str] | None = None
) -> tuple[str, ...] | None:
    """Idle models to unload so the model fits, least recently used first; None if it cannot.

    Models with work in flight and the claimant of a live claim are never evicted, nor models
    outside ``only`` when it is given.
    """
    need = sum(m.memory_mb for m in instance.loaded) + ask.model.memory_mb  # MB
    need -= ask.policy.memory_budget_mb + _MB_SLACK
    if need <= 0:
        return ()
    protected = instance.claimed_by if _claim_live(instance, ask) else None
    idle = [
        m
        for m in instance.loaded
        if m.in_flight == 0 and m.name != protected and (only is None or m.name in only)
    ]
    # Copies with a twin elsewhere go first: unloading them costs no model its last copy.
    victims = _fewest_victims([m for m in idle if m.name in ask.copied], need)
    if victims is None:
        victims = _fewest_victims(idle, need)
    return None if victims is None else tuple(m.name for m in sorted(victims, key=_lru))


def _fewest_victims(idle: list[LoadedModel], need: float) -> list[LoadedModel] | None:
    """The fewest of ``idle`` that free ``need`` MB, least recently used among as few; None
    when even all of them fall short.

    Greedy, exact for the count (the k largest show the fewest k that can do it), so a big model
    that must go anyway goes alone rather than after every smaller one. Then for each of the k
    places in turn, the least recently used model that still lets the largest others finish the
    job. Memory freed beyond ``need`` is not minimised: sizes are measured floats that rarely tie,
    so that would override recency. O(k n log n) for n idle models.
    """
    sizes = sorted((m.memory_mb for m in idle), reverse=True)
    count = next((k for k, total in enumerate(accumulate(sizes), 1) if total >= need), None)
    if count is None:
        return None
    left = sorted(idle, key=_lru)
    victims: list[LoadedModel] = []
    for places in range(count, 0, -1):
        largest = sorted((m.memory_mb for m in left), reverse=True)[: places - 1]
        room = sum(v.memory_mb for v in victims) + sum(largest)
        # A model among the largest is counted twice here; it passes either way (the largest
        # ``places`` free enough), so the test stays exact.
        victim = min(left, key=lambda m: (room + m.memory_mb < need, *_lru(m)))
        victims.append(victim)
        left.remove(victim)
    return victims


def _dispatch(  # noqa: PLR0917 - a private step, called with the decision in order
    kind: PlacementKind,
    instance: PackedInstance,
    evict: tuple[str, ...],
    ask: _Ask,
    concurrent: bool,
    reason: str,
) -> Placement:
    """RUN or LOAD_AND_RUN; under concurrency the model claims the instance unless another
    model's claim is live there (SeSeMI: a hot model keeps its instance warm)."""
    claim = concurrent and not _claimed_by_other(instance, ask)
    return Placement(kind, instance.id, reason, evict=evict, claim=claim)


def _queue(instance: InstanceId | None, reason: str) -> Placement:
    return Placement(PlacementKind.QUEUE, instance, reason)


# ---- small facts about one instance -------------------------------------------------------


def _free(instance: PackedInstance) -> bool:
    return instance.state in SERVING and instance.in_flight < instance.capacity


def _holds(instance: PackedInstance, name: str) -> bool:
    """Has ``name`` loaded (or is loading it) and will serve: serving or starting."""
    serving = instance.state in SERVING or instance.state is InstanceState.STARTING
    return serving and instance.model(name) is not None


def _starting_with(instance: PackedInstance, name: str) -> bool:
    """Starting, and will load ``name`` once up: a request of ``name`` already has a start."""
    return instance.state is InstanceState.STARTING and instance.model(name) is not None


def _hot(ask: _Ask, queued: int, holders: int) -> bool:
    """More requests of the model wait than ``holders`` instances with it take before spreading."""
    return queued > ask.policy.spread_queue * holders


def _copied(alive: Sequence[PackedInstance]) -> frozenset[str]:
    """Models held by more than one serving or starting instance."""
    counts: dict[str, int] = {}
    for instance in alive:
        for model in instance.loaded:
            if _holds(instance, model.name):
                counts[model.name] = counts.get(model.name, 0) + 1
    return frozenset(name for name, count in counts.items() if count > 1)


def _running(instance: PackedInstance, name: str) -> bool:
    loaded = instance.model(name)
    return loaded is not None and loaded.in_flight > 0


def _claim_live(instance: PackedInstance, ask: _Ask) -> bool:
    return claim_holds(instance, ask.costs, ask.policy, ask.now)


def _claimed_by_other(instance: PackedInstance, ask: _Ask) -> bool:
    return instance.claimed_by != ask.model.name and _claim_live(instance, ask)


def _lru(model: LoadedModel) -> tuple[float, str]:
    """Sort key: least recently used first, then by name."""
    return model.last_used, model.name


def _last_used(instance: PackedInstance, name: str) -> float:
    loaded = instance.model(name)
    return -math.inf if loaded is None else loaded.last_used


def _recency(instance: PackedInstance) -> float:
    """When any model of the instance was last used; -inf for an empty instance."""
    return max((m.last_used for m in instance.loaded), default=-math.inf)


def _check_fits(model: ModelCost, policy: PackerPolicy) -> None:
    if model.memory_mb > policy.memory_budget_mb + _MB_SLACK:
        raise ConfigError(
            f"model {model.name!r} needs {model.memory_mb:g} MB, more than the "
            f"{policy.memory_budget_mb:g} MB memory budget of an instance"
        )


def _require(ok: bool, key: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"packer setting {key} has a bad value: {value!r}")
