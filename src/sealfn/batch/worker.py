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
from typing import Any

import numpy as np

from sealfn.batch.checkpoint import Checkpoints
from sealfn.batch.dataset import Dataset
from sealfn.batch.messages import Event, EventKind, Order
from sealfn.batch.partitions import Partition
from sealfn.batch.results import PartitionResult
from sealfn.collective import Communicator, TcpChannel
from sealfn.collective.payload import Bundle
from sealfn.errors import PeerLost, SealfnError
from sealfn.instance.models import ModelHost

log = logging.getLogger("sealfn.batch")
MODEL = "model"
GROUP_TIMEOUT_S = 3600.0  # a peer silent this long counts as lost (partitions can be long)

Emit = Callable[[Event], None]
Array = np.ndarray[Any, Any]


class PartitionWorker:
    """One instance of a batch job; the model is loaded in the constructor, once."""

    def __init__(
        self,
        instance: str,
        model: Path,
        data: Path,
        checkpoints: Path,
        *,
        threads: int = 1,
        batch_size: int = 256,
        host: str = "127.0.0.1",
    ) -> None:
        self.instance = instance
        self._host = host
        self._batch = batch_size
        self._models = ModelHost(threads)
        self._model = self._models.load(MODEL, model)
        self.loads = 1
        self._data = Dataset.open(data)
        self._checkpoints = Checkpoints(checkpoints)

    def loaded(self) -> Event:
        return Event(
            EventKind.LOADED, self.instance, loads=self.loads, detail=f"{self._model.load_s:.3f}"
        )

    def run_round(self, order: Order, emit: Emit) -> None:
        """Join the round's group, do the partitions, gather to the root; always ends the round."""
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
            results = [self._partition(p, emit) for p in order.partitions]
            bundle = Bundle(tuple((r.partition, (r.to_bytes(),)) for r in results))
            comm.gather(bundle.to_bytes(), root=0)
        except PeerLost as exc:
            emit(Event(EventKind.ROUND_END, self.instance, ok=False, detail=exc.message))
            return
        finally:
            comm.close()
        emit(Event(EventKind.ROUND_END, self.instance))

    def _partition(self, partition: Partition, emit: Emit) -> PartitionResult:
        started = time.time()
        result = self._checkpoints.load(partition.index)
        computed = result is None
        if result is None:
            result = self._infer(partition)
            self._checkpoints.save(result)
        emit(
            Event(
                EventKind.PARTITION, self.instance, partition.index, computed, started, time.time()
            )
        )
        return result

    def _infer(self, partition: Partition) -> PartitionResult:
        """Run the model over the partition in batches of ``batch_size`` records."""
        pieces: list[dict[str, Array]] = []
        for start in range(partition.start, partition.stop, self._batch):
            stop = min(start + self._batch, partition.stop)
            feeds = self._data.feeds(start, stop, self._model.input_names)
            pieces.append(self._models.run_batch(MODEL, [feeds])[0])
        outputs = tuple(
            (name, np.concatenate([piece[name] for piece in pieces]))
            for name in self._model.output_names
        )
        return PartitionResult(partition.index, outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sealfn.batch.worker")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="batch instance %(process)d %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the root owns the lifecycle
    out = sys.stdout.buffer

    def emit(event: Event) -> None:
        out.write(event.to_bytes())
        out.flush()

    try:
        worker = PartitionWorker(
            args.instance,
            args.model,
            args.data,
            args.checkpoints,
            threads=args.threads,
            batch_size=args.batch_size,
        )
    except SealfnError as exc:
        log.error("cannot start: %s", exc.message)
        return 1
    emit(worker.loaded())
    for line in sys.stdin.buffer:  # one order per line until the root closes stdin
        worker.run_round(Order.from_bytes(line), emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
