"""Deployments on disk, so they survive a restart of `sealfn serve`: one folder per function."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sealfn.config import FunctionSpec, check_name
from sealfn.errors import ConfigError, ModelError, NotFound, SealfnError, StorageError
from sealfn.runtime.modelcheck import check_loads
from sealfn.signature import ModelSignature, signature_from_onnx
from sealfn.weights import GRAPH_FILE, externalize

log = logging.getLogger("sealfn.registry")
MODEL_FILE = GRAPH_FILE  # a plain model's graph; its weights are in WEIGHTS_FILE beside it
SEALED_FILE = "model.sealed"  # a sealed model: ciphertext only, its signature unknown here
HE_FILE = "model.he"  # an HE network (sealfn.he.graph): served on CKKS ciphertexts
SPEC_FILE = "function.json"


@dataclass(frozen=True)
class Deployment:
    spec: FunctionSpec
    model_path: Path
    signature: ModelSignature


class Registry:
    """``<state_dir>/functions/<name>/{model.onnx,model.weights,function.json}``, atomically.

    A sealed function keeps ``model.sealed`` instead of the first two."""

    def __init__(self, state_dir: Path, check: Callable[[Path], None] = check_loads) -> None:
        self._check = check  # raises ModelError unless an instance can load the model
        self.root = state_dir / "functions"
        self.root.mkdir(parents=True, exist_ok=True)

    def save(self, spec: FunctionSpec, model: bytes) -> Deployment:
        """Validate the model, then swap the function's folder in by rename (no partial state).

        A plain model is stored as graph + page-aligned weights file (``sealfn.weights``), so the
        instances of it on this host can share its weights; it is checked in that form."""
        target = self.root / spec.name
        try:
            work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=self.root))
        except OSError as exc:
            raise _storage_error(spec, exc) from exc
        try:
            staging = work / "function"
            signature = self._stage(spec, model, work, staging)
            record = {"spec": spec.to_dict(), "signature": signature.to_dict()}
            (staging / SPEC_FILE).write_text(json.dumps(record, indent=2))
            _fsync_dir(staging)
            _swap_in(staging, target, work / "old")
        except OSError as exc:  # ENOSPC, EDQUOT, EROFS...: the old deployment is untouched
            raise _storage_error(spec, exc) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Deployment(spec, target / _model_file(spec), signature)

    def _stage(self, spec: FunctionSpec, model: bytes, work: Path, staging: Path) -> ModelSignature:
        """Write the function's files into ``staging`` and return the model's signature."""
        if spec.model_store:  # the enclave fetches it from the store: nothing kept here
            staging.mkdir()
            return ModelSignature(inputs=(), outputs=())
        if spec.he:  # plain weights, applied to ciphertexts: checked by compiling its plan
            staging.mkdir()
            (staging / HE_FILE).write_bytes(model)
            return _check_he(model)
        if spec.sealed:  # ciphertext: kept as it came, its weights never leave the enclave
            staging.mkdir()
            (staging / SEALED_FILE).write_bytes(model)
            return _check_sealed(spec, model)
        upload = work / "upload.onnx"
        upload.write_bytes(model)
        return self._inspect(externalize(upload, staging))

    def _inspect(self, path: Path) -> ModelSignature:
        signature = signature_from_onnx(path)
        self._check(path)
        return signature

    def remove(self, name: str) -> None:
        target = self.root / check_name(name)
        if not target.exists():
            raise NotFound(f"function {name!r} is not deployed")
        shutil.rmtree(target)

    def load_all(self) -> Iterator[Deployment]:
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not (folder / SPEC_FILE).exists():
                continue
            try:
                yield self._load(folder)
            except SealfnError as exc:  # one bad record must not keep the others from serving
                log.error("skipping deployment %s: %s", folder.name, exc.message)

    def cleanup(self) -> None:
        """Remove staging folders left by a crash mid-deploy."""
        for folder in self.root.iterdir():
            if folder.name.startswith("."):
                shutil.rmtree(folder, ignore_errors=True)

    def _load(self, folder: Path) -> Deployment:
        try:
            record = json.loads((folder / SPEC_FILE).read_text())
            spec = FunctionSpec.from_dict(record["spec"])
            signature = ModelSignature.from_dict(record["signature"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"deployment record {folder / SPEC_FILE} is unreadable") from exc
        return Deployment(spec, folder / _model_file(spec), signature)


def _check_sealed(spec: FunctionSpec, blob: bytes) -> ModelSignature:
    """A sealed model is only checked for framing and its model id (the name it is sealed to)."""
    from sealfn.sealed_model import read_header

    try:
        header = read_header(blob)
    except (ValueError, SealfnError) as exc:
        raise ModelError("the body is not a sealed model (sealfn model seal makes one)") from exc
    if header.model_id != spec.name:
        raise ConfigError(
            f"the model is sealed for model id {header.model_id!r}: deploy it under that name"
        )
    return ModelSignature(inputs=(), outputs=())


def _model_file(spec: FunctionSpec) -> str:
    return HE_FILE if spec.he else SEALED_FILE if spec.sealed else MODEL_FILE


def _check_he(blob: bytes) -> ModelSignature:
    """An HE network must parse and compile (numpy only: the gateway never loads TenSEAL)."""
    from sealfn.he.graph import NetGraph
    from sealfn.he.plan import compile_graph

    compile_graph(NetGraph.from_bytes(blob))  # ModelError if it is not one
    return ModelSignature(inputs=(), outputs=())


def _fsync_dir(folder: Path) -> None:
    """fsync every file below ``folder`` (the host-optimized copy is a folder of its own), and
    each folder, so what the rename makes visible is on disk."""
    for path in folder.iterdir():
        if path.is_dir():
            _fsync_dir(path)
            continue
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _swap_in(staging: Path, target: Path, aside: Path) -> None:
    """Rename ``staging`` to ``target``; an old ``target`` goes to ``aside`` (instances of the old
    version may still read it) and comes back if the swap fails."""
    if not target.exists():
        os.replace(staging, target)
        return
    os.replace(target, aside)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(aside, target)
        raise


def _storage_error(spec: FunctionSpec, exc: OSError) -> StorageError:
    return StorageError(f"cannot store function {spec.name!r}: {exc.strerror or exc}")
