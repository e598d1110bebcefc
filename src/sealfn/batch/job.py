"""The root of a batch job: deal partitions in rounds, gather results, redo what a death lost.

Each round the root deals the partitions it does not hold yet over the live instances, joins the
round's group as rank 0 and gathers every instance's results (the communicator's gather: results
never go through storage polling). If an instance dies the group breaks, the round's gather
fails, a replacement instance starts, and the next round deals the missing partitions again:
finished ones come back from their checkpoints, the one the dead instance was running is run
once more. Nothing is lost (every partition is delivered) or duplicated (each is accepted once).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from sealfn.batch.dealer import Dealer, Grant
from sealfn.batch.fleet import Fleet
from sealfn.batch.messages import Event, EventKind, Order
from sealfn.batch.partitions import Partition, pending, split
from sealfn.batch.results import PartitionResult
from sealfn.collective import Communicator, RendezvousServer, TcpChannel
from sealfn.collective.payload import Bundle
from sealfn.errors import ConfigError, PeerLost, ProtocolError, Unavailable

Array = np.ndarray[Any, Any]
Observer = Callable[[Event], None]
START_TIMEOUT_S = 120.0  # seconds an instance may take to load the model
GROUP_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class JobConfig:
    instances: int
    partition_records: int = 512
    max_rounds: int = 0  # 0: instances + 3
    progress: bool = True
    sealed: bool = False  # results are sealed to the user: the root keeps them as they came

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ConfigError(f"instances must be >= 1, got {self.instances}")
        if self.partition_records < 1:
            raise ConfigError(f"partition_records must be >= 1, got {self.partition_records}")


@dataclass
class InstanceLog:
    """What the root saw of one instance (unix seconds)."""

    started: float
    stopped: float = 0.0
    loads: int = 0
    died: bool = False
    partitions: list[tuple[int, bool, float, float]] = field(default_factory=list)
    # (partition, computed, started, finished)


@dataclass
class JobResult:
    outputs: dict[str, Array]  # output name -> (records, ...), in record order ({} if sealed)
    blobs: dict[int, bytes]  # partition -> its result bytes as delivered (sealed: ciphertext)
    partitions: int
    records: int
    rounds: int
    started: float  # unix seconds
    finished: float
    instances: dict[str, InstanceLog]

    @property
    def wall_s(self) -> float:
        return self.finished - self.started

    def computed(self) -> dict[int, int]:
        """How often each partition was run to completion (a checkpoint written)."""
        counts = dict.fromkeys(range(self.partitions), 0)
        for log in self.instances.values():
            for index, computed, _, _ in log.partitions:
                counts[index] += int(computed)
        return counts


def run_job(
    fleet: Fleet,
    records: int,
    config: JobConfig,
    observer: Observer | None = None,
    *,
    partitions: list[Partition] | None = None,
) -> JobResult:
    """Run the whole job on ``fleet`` over a dataset of ``records`` records, cut into partitions
    of ``config.partition_records`` (or into ``partitions``: a sealed dataset's own)."""
    plan = split(records, config.partition_records) if partitions is None else partitions
    return _Root(fleet, config, observer).run(plan, records)


class _Root:
    def __init__(self, fleet: Fleet, config: JobConfig, observer: Observer | None) -> None:
        self._fleet = fleet
        self._config = config
        self._observer = observer
        self._logs: dict[str, InstanceLog] = {}
        self._live: list[str] = []
        self._delivered: dict[int, bytes] = {}  # partition -> its result, as the instance sent it
        self._job = uuid.uuid4().hex[:12]
        self._bar: tqdm[Any] | None = None
        self._rounds = 0  # rounds run so far
        self._done: set[int] = set()  # partitions some instance finished (for the progress bar)

    def run(self, partitions: list[Partition], records: int) -> JobResult:
        started = time.time()
        rounds = self._config.max_rounds or self._config.instances + 3
        bar = tqdm(total=len(partitions), unit="part", disable=not self._config.progress)
        with RendezvousServer() as rendezvous, bar:
            self._bar = bar
            try:
                for number in range(rounds):
                    todo = pending(partitions, self._delivered)
                    if not todo:
                        break
                    self._fill()
                    self._round(number, todo, rendezvous)
                else:
                    if pending(partitions, self._delivered):
                        raise Unavailable(f"the job did not finish in {rounds} rounds")
            finally:
                self._stop_all()
        return JobResult(
            self._assemble(partitions),
            dict(sorted(self._delivered.items())),
            len(partitions),
            records,
            self._rounds,
            started,
            time.time(),
            self._logs,
        )

    # ---- steps ---------------------------------------------------------------------------

    def _fill(self) -> None:
        """Start instances until ``instances`` are live and loaded."""
        starting: list[str] = []
        while len(self._live) + len(starting) < self._config.instances:
            name = f"i{len(self._logs)}"
            self._logs[name] = InstanceLog(started=time.time())
            self._fleet.start(name)
            starting.append(name)
        deadline = time.monotonic() + START_TIMEOUT_S
        while starting:
            if time.monotonic() > deadline:
                raise Unavailable(f"instances {starting} did not load the model in time")
            event = self._next_event(0.1)
            if event is None:
                continue
            if event.kind is EventKind.LOADED and event.instance in starting:
                starting.remove(event.instance)
                self._live.append(event.instance)
            elif event.kind is EventKind.EXITED and event.instance in starting:
                raise Unavailable(f"instance {event.instance} failed to start: {event.detail}")

    def _round(self, number: int, todo: list[Partition], rendezvous: RendezvousServer) -> None:
        self._rounds += 1
        members = list(self._live)
        dealer = Dealer(todo, members)
        group = f"{self._job}/{number}"
        ranks = {name: rank for rank, name in enumerate(members, start=1)}
        header = (number, group, rendezvous.address)

        def send(name: str, grant: Grant) -> None:
            order = Order(*header, ranks[name], len(members) + 1, grant.partitions, grant.final)
            self._fleet.order(name, order)

        for name, grant in dealer.start().items():
            send(name, grant)
        gathered: list[object] = []
        gather = threading.Thread(
            target=self._gather,
            args=(rendezvous.address, group, len(members) + 1, gathered),
            daemon=True,
        )
        gather.start()
        waiting = set(members)
        while waiting or gather.is_alive():
            event = self._next_event(0.1)
            if event is None or event.instance not in ranks:
                continue
            if event.kind is EventKind.PARTITION and (more := dealer.done(event.instance)):
                send(event.instance, more)
            if event.kind in (EventKind.ROUND_END, EventKind.EXITED):
                waiting.discard(event.instance)
            if event.kind is EventKind.EXITED:
                rendezvous.abort(group)  # ranks still assembling must not wait for the dead
                for name, last in dealer.stop().items():  # the round is lost: wind it up
                    send(name, last)
        gather.join()
        if gathered and isinstance(gathered[0], list):
            self._accept(gathered[0])

    def _gather(self, address: tuple[str, int], group: str, size: int, out: list[object]) -> None:
        try:
            channel = TcpChannel.join(address, group, 0, size, timeout=GROUP_TIMEOUT_S)
        except PeerLost as exc:
            out.append(exc)
            return
        comm = Communicator(channel)
        try:
            out.append(comm.gather(Bundle(()).to_bytes(), root=0))
        except PeerLost as exc:
            out.append(exc)
        finally:
            comm.close()

    def _accept(self, gathered: list[Any]) -> None:
        for raw in gathered[1:]:
            for index, (data,) in Bundle.from_bytes(raw).parts:
                if index in self._delivered:
                    raise ProtocolError(f"partition {index} was delivered twice")
                self._delivered[index] = bytes(data)

    def _next_event(self, timeout: float) -> Event | None:
        """The next event from the fleet, bookkept; None if none came within ``timeout``."""
        try:
            event = self._fleet.events.get(timeout=timeout)
        except queue.Empty:
            return None
        self._book(event)
        return event

    def _book(self, event: Event) -> None:
        log = self._logs.get(event.instance)
        if log is None:
            return
        if event.kind is EventKind.LOADED:
            log.loads = event.loads
        elif event.kind is EventKind.PARTITION:
            log.partitions.append((event.partition, event.computed, event.started, event.finished))
            if event.partition not in self._done:
                self._done.add(event.partition)
                if self._bar is not None:
                    self._bar.update(1)
        elif event.kind is EventKind.EXITED:
            log.stopped = time.time()
            log.died = event.instance in self._live
            if event.instance in self._live:
                self._live.remove(event.instance)
        if self._observer is not None:
            self._observer(event)

    def _stop_all(self) -> None:
        self._fleet.close()
        now = time.time()
        for log in self._logs.values():
            log.stopped = log.stopped or now

    def _assemble(self, partitions: list[Partition]) -> dict[str, Array]:
        """Plain jobs: every output's records in order. Sealed jobs: nothing (only the user can
        open the results; ``JobResult.blobs`` holds them)."""
        if not partitions or self._config.sealed:
            return {}
        ordered = [PartitionResult.from_bytes(self._delivered[p.index]) for p in partitions]
        names = [name for name, _ in ordered[0].outputs]
        return {name: np.concatenate([dict(r.outputs)[name] for r in ordered]) for name in names}
