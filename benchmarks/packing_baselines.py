"""The two baselines of the packing benchmark, each a policy driving its own simulated pool.

(a) `PerModelPools`: OpenWhisk / SeSeMI without a packer. Each model has its own instances,
    one model each, started from zero, unbounded. A request runs on a free warm instance of its
    model (the most recently used); when none is free it starts a new instance and waits for
    it, as OpenWhisk's container pool and Lambda do. With ``fifo=True`` (a sensitivity row,
    kind to (a)) requests instead wait in the model's FIFO queue and take whichever instance
    frees first, and each queued request no starting instance will take starts one more.
(b) `SesemiPacker`: SeSeMI's Fn-Packer as its prototype's Go controller does it
    (nusdbsystem/SeSeMI fnpacker/fnpack/controller.go, ``PickFnInstance``), over a fixed pool
    of ``max_instances`` functions whose containers start on first use and stop after the
    keep-alive. A model with nothing in flight steals the first function that is neither busy
    nor claimed by another model (a claim is exclusive until its model has been idle for 2x its
    last exec time) and fails with "all busy" when there is none; a model's second concurrent
    request claims the function it runs on; every concurrent request goes to that function,
    which runs one at a time. A function's enclave caches ONE model: another replaces it.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from packing_sim import Ledger, Request, Sim
from packing_world import World

# ---- (a) one pool per model --------------------------------------------------------------------


@dataclass(eq=False)
class _Box:
    id: str
    model: str
    bound: Request | None = None  # the request that started it, run once it is ready
    ready: bool = False
    busy: bool = False
    last_used: float = 0.0
    gone: bool = False


class PerModelPools:
    def __init__(self, sim: Sim, ledger: Ledger, world: World, *, fifo: bool = False) -> None:
        self.sim, self.ledger, self.world = sim, ledger, world
        self.fifo = fifo
        self.queues: dict[str, deque[Request]] = {m: deque() for m in world.models}
        self.boxes: dict[str, list[_Box]] = {m: [] for m in world.models}
        self._ids = itertools.count()

    def arrive(self, request: Request) -> None:
        if self.fifo:
            self.queues[request.model].append(request)
            self._pump(request.model)
        elif (box := self._free(request.model)) is not None:
            self._run(box, request)
        else:
            self._start(request.model, request)

    def _pump(self, model: str) -> None:
        """FIFO mode: serve the queue's head on free instances; start one per request left
        over that no starting instance will take."""
        queue = self.queues[model]
        while queue and (box := self._free(model)) is not None:
            self._run(box, queue.popleft())
        starting = sum(not b.ready for b in self.boxes[model])
        for _ in range(len(queue) - starting):
            self._start(model, None)

    def _free(self, model: str) -> _Box | None:
        free = [b for b in self.boxes[model] if b.ready and not b.busy]
        return max(free, key=lambda b: b.last_used, default=None)  # warmest first

    def _start(self, model: str, bound: Request | None) -> None:
        box = _Box(f"a{next(self._ids)}", model, bound)
        self.boxes[model].append(box)
        self.ledger.started(box.id, self.world.per_model_mb[model], (model,), self.sim.now)
        self.ledger.loaded()  # its model loads as part of the start
        spec = self.world.models[model]
        self.sim.after(self.world.start_s + spec.load_s, lambda: self._ready(box))

    def _ready(self, box: _Box) -> None:
        box.ready, box.last_used = True, self.sim.now
        if box.bound is not None:
            self._run(box, box.bound)
        elif self.fifo:
            self._pump(box.model)
        self._reap_later(box)

    def _run(self, box: _Box, request: Request) -> None:
        box.busy = True
        self.sim.after(self.world.models[box.model].exec_s, lambda: self._done(box, request))

    def _done(self, box: _Box, request: Request) -> None:
        box.busy, box.last_used = False, self.sim.now
        self.ledger.served(request, self.sim.now)
        if self.fifo:
            self._pump(box.model)
        self._reap_later(box)

    def _reap_later(self, box: _Box) -> None:
        self.sim.after(self.world.keep_alive_s, lambda: self._reap(box))

    def _reap(self, box: _Box) -> None:
        idle = self.sim.now - box.last_used >= self.world.keep_alive_s
        if not box.gone and not box.busy and idle:
            box.gone = True
            self.boxes[box.model].remove(box)
            self.ledger.stopped(box.id, self.sim.now)


# ---- (b) SeSeMI's Fn-Packer ---------------------------------------------------------------------


@dataclass
class _Stats:
    """The controller's ``DefaultModelStats``: the last call's end and last exec time."""

    last_call: float = -1e18  # Go starts at 0 (the epoch): the first claim check never holds
    exec_s: float = 0.0


@dataclass(eq=False)
class _Function:
    """One pool function: the controller's view (claim, busy) and its container."""

    index: int
    claim: str = ""  # the controller's funcs[i]: model with an exclusive claim, "" for none
    busy: bool = False
    container: str | None = None  # id of its running container; None = cold
    cached: str | None = None  # the one model its enclave holds
    queue: deque[tuple[Request, float]] = field(default_factory=deque)  # (request, picked at)
    running: bool = False
    last_used: float = 0.0


class SesemiPacker:
    def __init__(self, sim: Sim, ledger: Ledger, world: World) -> None:
        self.sim, self.ledger, self.world = sim, ledger, world
        self.functions = [_Function(i) for i in range(world.max_instances)]
        self.stats: dict[str, _Stats] = {}
        self.in_use: dict[str, int] = {}
        self.mapping: dict[str, int] = {}
        self._ids = itertools.count()

    def arrive(self, request: Request) -> None:
        target = self._pick(request.model)
        if target is None:
            self.ledger.failed()  # "failed to allocate fn instance (All Busy)"
            return
        target.queue.append((request, self.sim.now))
        if not target.running:
            self._next(target)

    def _pick(self, model: str) -> _Function | None:
        """``PickFnInstance``: the function the request goes to, or None (all busy)."""
        self.stats.setdefault(model, _Stats())
        self.in_use[model] = self.in_use.get(model, 0) + 1
        if self.in_use[model] >= 2:
            mapped = self.functions[self.mapping[model]]
            if self.in_use[model] == 2:
                mapped.claim = model  # claim ownership under concurrency
            return mapped
        stolen = self._steal(model)
        if stolen is None:
            self.in_use[model] -= 1
            return None
        self.mapping[model] = stolen.index
        return stolen

    def _steal(self, model: str) -> _Function | None:
        for function in self.functions:
            if not self._busy_or_exclusive(function, model):
                function.claim, function.busy = "", True
                return function
        return None

    def _busy_or_exclusive(self, function: _Function, candidate: str) -> bool:
        if function.busy:
            return True
        if function.claim in ("", candidate):
            return False
        stats = self.stats[function.claim]
        return self.sim.now - stats.last_call < 2 * stats.exec_s

    def _next(self, function: _Function) -> None:
        """Run the function's next queued request: start its container if cold, swap the
        enclave's model if it holds another, then execute."""
        if not function.queue:
            function.running = False
            self.sim.after(self.world.keep_alive_s, lambda: self._reap(function))
            return
        function.running = True
        request, picked = function.queue.popleft()
        model = self.world.models[request.model]
        delay = model.exec_s
        if function.container is None:
            function.container, function.cached = f"b{next(self._ids)}", None
            self.ledger.started(function.container, self.world.shared_mb, (), self.sim.now)
            delay += self.world.start_s
        if function.cached != request.model:
            function.cached = request.model
            self.ledger.loaded()
            self.ledger.holds(function.container, (request.model,))
            delay += model.load_s
        self.sim.after(delay, lambda: self._done(function, request, picked))

    def _done(self, function: _Function, request: Request, picked: float) -> None:
        """``ReleaseAndUpdateStats``, then the function's next request."""
        now = self.sim.now
        function.last_used = now
        self.ledger.served(request, now)
        model, stats = request.model, self.stats[request.model]
        self.in_use[model] -= 1
        stats.exec_s = self.world.models[model].exec_s
        if picked > stats.last_call:  # Go: only a call that began after the last one ended
            stats.last_call = now
        if self.in_use[model] == 0:
            self.functions[self.mapping[model]].busy = False
        self._next(function)

    def _reap(self, function: _Function) -> None:
        idle = self.sim.now - function.last_used >= self.world.keep_alive_s
        if function.container is not None and not function.running and idle:
            self.ledger.stopped(function.container, self.sim.now)
            function.container = function.cached = None
