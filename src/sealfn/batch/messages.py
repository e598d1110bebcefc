"""The job's control plane: orders from the root to an instance and events back (JSON lines).

Data never travels here: results go to the root through the communicator's gather. Orders and
events carry partition ranges, timings and counts only.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from sealfn.batch.partitions import Partition
from sealfn.errors import ProtocolError
from sealfn.ipc import jsonline

VERSION = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What every instance of a job is started with (given to each instance as JSON)."""

    model: Path  # an ONNX model; sealed jobs: the sealed model
    data: Path  # records (.npy/.npz or a folder of shards); sealed jobs: the sealed dataset
    checkpoints: Path
    threads: int = 1  # onnxruntime intra-op threads per instance
    batch_size: int = 256  # records per onnxruntime run
    keyservice: str | None = None  # set: a sealed job, whose keys this KeyService releases
    model_id: str = ""  # sealed jobs: the model's id at the KeyService
    tee: str = "simulated"  # sealed jobs: the TEE backend instances run in
    tee_platform_dir: str | None = None  # the simulated TEE's platform

    def to_json(self) -> str:
        raw = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        return json.dumps({"v": VERSION, **raw})

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        raw = jsonline.load(text.encode(), VERSION, "batch control message")
        raw.pop("v")
        try:
            model, data, checkpoints = (Path(raw.pop(k)) for k in ("model", "data", "checkpoints"))
            return cls(model, data, checkpoints, **raw)
        except (KeyError, TypeError) as exc:
            raise ProtocolError("malformed worker spec") from exc


@dataclass(frozen=True)
class Order:
    """Root → instance: in round ``round`` (group ``group``, as ``rank``) process ``partitions``.

    The first order of a round makes the instance join the group; more orders of the same round
    follow until one is ``final``, after which the instance gathers its results to the root."""

    round: int
    group: str
    rendezvous: tuple[str, int]
    rank: int
    size: int
    partitions: tuple[Partition, ...]
    final: bool = True

    def to_bytes(self) -> bytes:
        body = {
            "v": VERSION,
            "round": self.round,
            "group": self.group,
            "rendezvous": list(self.rendezvous),
            "rank": self.rank,
            "size": self.size,
            "partitions": [p.to_json() for p in self.partitions],
            "final": self.final,
        }
        return json.dumps(body).encode() + b"\n"

    @classmethod
    def from_bytes(cls, line: bytes) -> Order:
        raw = jsonline.load(line, VERSION, "batch control message")
        try:
            host, port = raw["rendezvous"]
            return cls(
                int(raw["round"]),
                str(raw["group"]),
                (str(host), int(port)),
                int(raw["rank"]),
                int(raw["size"]),
                tuple(Partition.from_json(p) for p in raw["partitions"]),
                bool(raw["final"]),
            )
        except (KeyError, ValueError, TypeError, OverflowError) as exc:  # int(1e999)
            raise ProtocolError("malformed batch order") from exc


class EventKind(enum.Enum):
    LOADED = "loaded"  # the model is loaded (once per instance)
    PARTITION = "partition"  # one partition is done (computed, or restored from a checkpoint)
    ROUND_END = "round_end"  # the instance left the round's group (ok, or the group broke)
    EXITED = "exited"  # made by the root's engine: the instance is gone


@dataclass(frozen=True)
class Event:
    kind: EventKind
    instance: str
    partition: int = -1
    computed: bool = False  # PARTITION: True = ran the model, False = restored a checkpoint
    started: float = 0.0  # unix seconds
    finished: float = 0.0
    ok: bool = True  # ROUND_END: the gather went through
    loads: int = 0  # LOADED: model loads so far in this instance
    detail: str = ""

    def to_bytes(self) -> bytes:
        body = {
            "v": VERSION,
            "kind": self.kind.value,
            "instance": self.instance,
            "partition": self.partition,
            "computed": self.computed,
            "started": self.started,
            "finished": self.finished,
            "ok": self.ok,
            "loads": self.loads,
            "detail": self.detail,
        }
        return json.dumps(body).encode() + b"\n"

    @classmethod
    def from_bytes(cls, line: bytes) -> Event:
        raw = jsonline.load(line, VERSION, "batch control message")
        try:
            return cls(
                EventKind(raw["kind"]),
                str(raw["instance"]),
                int(raw["partition"]),
                bool(raw["computed"]),
                float(raw["started"]),
                float(raw["finished"]),
                bool(raw["ok"]),
                int(raw["loads"]),
                str(raw["detail"]),
            )
        except (KeyError, ValueError, TypeError, OverflowError) as exc:  # float(10**400)
            raise ProtocolError("malformed batch event") from exc
