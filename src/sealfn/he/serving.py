"""The instance side of an ``he`` function: load the network's plan, then evaluate ciphertexts
with the evaluation keys each request names (loaded from the key store once, kept in an LRU)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sealfn.errors import ModelError, SealfnError
from sealfn.he.backend import Evaluator, evaluator_for
from sealfn.he.graph import NetGraph
from sealfn.he.keystore import KeyStore
from sealfn.he.plan import Plan, compile_graph
from sealfn.he.protocol import HeMessage, Kind
from sealfn.http_api import status_for
from sealfn.instance.sealed import Answer

log = logging.getLogger("sealfn.he")
MAX_KEY_SETS = 2  # evaluation keys kept loaded per instance (each is ~100 MB-1 GB in memory)


@dataclass(frozen=True)
class _Model:
    plan: Plan
    keys: KeyStore


class HeModels:
    """The HE networks this instance serves; requests and replies are ``HeMessage`` bytes."""

    def __init__(self) -> None:
        self._models: dict[str, _Model] = {}
        self._evaluators: OrderedDict[str, Evaluator] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def load(self, name: str, path: Path, state_dir: Path) -> None:
        try:
            graph = NetGraph.from_bytes(path.read_bytes())
        except OSError as exc:
            raise ModelError(f"cannot read HE network {name!r}") from exc
        self._models[name] = _Model(compile_graph(graph), KeyStore(state_dir))

    def unload(self, name: str) -> None:
        self._models.pop(name, None)

    def run(self, name: str, bodies: Sequence[bytes]) -> list[Answer]:
        model = self._models.get(name)
        if model is None:
            return [Answer(404, message=f"model {name!r} is not loaded")] * len(bodies)
        return [self._one(model, body) for body in bodies]

    def _one(self, model: _Model, body: bytes) -> Answer:
        try:
            request = HeMessage.from_bytes(body, Kind.REQUEST)
            evaluator = self._evaluator(model.keys, request.key_id)
            result = evaluator.evaluate(model.plan, request.ciphertext)
        except SealfnError as exc:
            return Answer(status_for(exc), message=exc.message)
        return Answer(200, HeMessage(Kind.REPLY, request.key_id, result).to_bytes())

    def _evaluator(self, keys: KeyStore, key_id: str) -> Evaluator:
        with self._lock:  # one load per key set even when slots race for it
            evaluator = self._evaluators.get(key_id)
            if evaluator is None:
                data = keys.path(key_id).read_bytes()
                evaluator = evaluator_for(data)  # TenSEAL or HElayers, by the keys' magic
                self._evaluators[key_id] = evaluator
                while len(self._evaluators) > MAX_KEY_SETS:
                    self._evaluators.popitem(last=False)
            self._evaluators.move_to_end(key_id)
            return evaluator
