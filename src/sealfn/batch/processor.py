"""What an instance does to one partition: read its records, run the model, encode the result.

``PlainProcessor`` reads plain records and returns a ``PartitionResult``'s bytes; the sealed one
(``batch.sealed.SealedProcessor``) reads sealed partitions inside the enclave and returns the
result sealed to the user. Either way the instance moves bytes it need not understand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sealfn.batch.dataset import Dataset
from sealfn.batch.partitions import Partition
from sealfn.batch.results import PartitionResult
from sealfn.instance.models import LoadedModel, ModelHost

MODEL = "model"
Array = np.ndarray[Any, Any]


class Processor(Protocol):
    loads: int  # model loads in this instance: one, in the constructor
    load_s: float  # seconds the load took

    def process(self, partition: Partition) -> bytes: ...


def run_model(
    host: ModelHost, model: LoadedModel, feeds: dict[str, Array], batch: int
) -> tuple[tuple[str, Array], ...]:
    """The model's outputs over all of ``feeds``' records, run ``batch`` records at a time."""
    records = len(next(iter(feeds.values()))) if feeds else 0
    pieces = [
        host.run_batch(model.name, [{k: v[start : start + batch] for k, v in feeds.items()}])[0]
        for start in range(0, records, batch)
    ]
    return tuple(
        (name, np.concatenate([piece[name] for piece in pieces])) for name in model.output_names
    )


class PlainProcessor:
    def __init__(self, model: Path, data: Path, *, threads: int, batch_size: int) -> None:
        self._host = ModelHost(threads)
        self._model = self._host.load(MODEL, model)
        self.loads = 1
        self.load_s = self._model.load_s
        self._data = Dataset.open(data)
        self._batch = batch_size

    def process(self, partition: Partition) -> bytes:
        feeds = self._data.feeds(partition.start, partition.stop, self._model.input_names)
        outputs = run_model(self._host, self._model, feeds, self._batch)
        return PartitionResult(partition.index, outputs).to_bytes()
