"""A batch instance: load the model once, then per round join the group, run the partitions
dealt to it (or restore their checkpoints), and hand the results to the root by gather.

Run as ``python -m sealfn.batch.worker`` (the local engine; orders on stdin, events on stdout)
or inside a Ray actor (the ray engine calls :class:`PartitionWorker` directly).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sealfn.batch.checkpoint import Checkpoints
from sealfn.batch.messages import Event, EventKind, Order, WorkerSpec
from sealfn.batch.partitions import Partition
from sealfn.batch.processor import PlainProcessor, Processor
from sealfn.collective import Communicator, TcpChannel
from sealfn.collective.payload import Bundle
from sealfn.errors import PeerLost, SealfnError

log = logging.getLogger("sealfn.batch")
GROUP_TIMEOUT_S = 3600.0  # a peer silent this long counts as lost (partitions can be long)

Emit = Callable[[Event], None]
NextOrder = Callable[[], Order]  # blocks for the round's next order


class PartitionWorker:
    """One instance of a batch job; its processor loads the model once, when it is made."""

    def __init__(
        self, instance: str, processor: Processor, checkpoints: Path, *, host: str = "127.0.0.1"
    ) -> None:
        self.instance = instance
        self._host = host
        self._processor = processor
        self._checkpoints = Checkpoints(checkpoints)

    @classmethod
    def from_spec(cls, instance: str, spec: WorkerSpec) -> PartitionWorker:
        processor: Processor
        if spec.keyservice is not None:
            from sealfn.batch.sealed import SealedProcessor  # the enclave's imports, only here

            processor = SealedProcessor(spec, spec.keyservice)
        else:
            processor = PlainProcessor(
                spec.model, spec.data, threads=spec.threads, batch_size=spec.batch_size
            )
        return cls(instance, processor, spec.checkpoints)

    def loaded(self) -> Event:
        processor = self._processor
        return Event(
            EventKind.LOADED, self.instance, loads=processor.loads, detail=f"{processor.load_s:.3f}"
        )

    def run_round(self, order: Order, emit: Emit, next_order: NextOrder) -> None:
        """Join the round's group, do the partitions dealt (``next_order`` waits for the round's
        further orders), gather to the root; always ends the round with a ROUND_END event."""
        try:
            channel = TcpChannel.join(
                order.rendezvous,
                order.group,
                order.rank,
                order.size,
                host=self._host,
                timeout=GROUP_TIMEOUT_S,
            )
        except PeerLost as exc:
            emit(Event(EventKind.ROUND_END, self.instance, ok=False, detail=exc.message))
            return
        comm = Communicator(channel)
        try:
            results = [(p.index, (self._partition(p, emit),)) for p in order.partitions]
            while not order.final:
                order = next_order()
                results += [(p.index, (self._partition(p, emit),)) for p in order.partitions]
            bundle = Bundle(tuple(results))
            comm.gather(bundle.to_bytes(), root=0)
        except PeerLost as exc:
            emit(Event(EventKind.ROUND_END, self.instance, ok=False, detail=exc.message))
            return
        finally:
            comm.close()
        emit(Event(EventKind.ROUND_END, self.instance))

    def _partition(self, partition: Partition, emit: Emit) -> bytes:
        started = time.time()
        result = self._checkpoints.load(partition.index)
        computed = result is None
        if result is None:
            result = self._processor.process(partition)
            self._checkpoints.save(partition.index, result)
        emit(
            Event(
                EventKind.PARTITION, self.instance, partition.index, computed, started, time.time()
            )
        )
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sealfn.batch.worker")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--spec", required=True, help="the job's WorkerSpec as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="batch instance %(process)d %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the root owns the lifecycle
    out = sys.stdout.buffer

    def emit(event: Event) -> None:
        out.write(event.to_bytes())
        out.flush()

    try:
        worker = PartitionWorker.from_spec(args.instance, WorkerSpec.from_json(args.spec))
    except SealfnError as exc:
        log.error("cannot start: %s", exc.message)
        return 1
    emit(worker.loaded())
    orders = sys.stdin.buffer

    def next_order() -> Order:
        line = orders.readline()
        if not line:
            raise PeerLost("the root closed the control pipe mid-round")
        return Order.from_bytes(line)

    for line in orders:  # a round's first order, until the root closes stdin
        worker.run_round(Order.from_bytes(line), emit, next_order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
