"""Sealed batch jobs: the platform runs the job but sees only ciphertext (model, records, results).

The user picks a fresh data key and seals the dataset partition by partition with it (the chunked
AES-256-GCM format of ``sealed_model``, the partition's id as associated data, so partitions
cannot be swapped or moved between jobs). The data key reaches the instances in a *ticket*: a
sealed request (``sealed_request``: HPKE to the model's deployment key, signed by the user).

Each instance is an enclave. It attests to the KeyService (``KeyLease``), which releases the
model key and the deployment's private key only to an enclave whose measurement the owner granted
(``batch_enclave_measurement``), together with the granted users' signing keys. The instance
decrypts the model in memory and loads it once, opens the ticket (a user without a grant is
refused), decrypts its partitions, runs them and seals each result under the data key. The root,
the checkpoints and the gather only ever hold those sealed results; the user opens them.

The ticket is fresh for the envelope's window (30 s): the first instance to open it stores the
data key wrapped under a key derived from the model key (only granted enclaves can derive it), so
replacement instances started later in the job read the data key from there.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfn.batch.dataset import Dataset
from sealfn.batch.messages import WorkerSpec
from sealfn.batch.partitions import Partition, split
from sealfn.batch.processor import MODEL, run_model
from sealfn.batch.results import PartitionResult
from sealfn.envelope import ReplayGuard
from sealfn.errors import AccessDenied, EnvelopeError, ModelError, ProtocolError
from sealfn.instance.models import ModelHost
from sealfn.instance.sealed import ENCLAVE_PACKAGES
from sealfn.keyservice.client import KeyServiceClient
from sealfn.keyservice.enclave import KeyLease
from sealfn.keyservice.release import ModelKeys
from sealfn.sealed_model import open_model, seal_model
from sealfn.sealed_request import Signer, open_inference, seal_inference
from sealfn.tee import backend as tee_backend
from sealfn.tee.manifest import Manifest

VERSION = 1
MANIFEST = "manifest.json"
UNNAMED = "records"  # a plain .npy's one array, inside a sealed partition
BATCH_ENCLAVE_PACKAGES = (*ENCLAVE_PACKAGES, "sealfn.batch", "sealfn.collective")
_WRAP_LABEL = b"sealfn batch data key wrap v1\x00"
Array = np.ndarray[Any, Any]


def batch_enclave_measurement() -> bytes:
    """The measurement of a batch instance's enclave code: what an owner grants for batch jobs."""
    return Manifest.build(packages=BATCH_ENCLAVE_PACKAGES).measurement()


@dataclass(frozen=True)
class SealedManifest:
    """What the platform may know of a sealed dataset: ids, partition sizes, the sealed ticket."""

    job: str
    model_id: str
    records: tuple[int, ...]  # per partition
    ticket: bytes  # the data key: HPKE-sealed to the deployment key, signed by the user

    def partitions(self) -> list[Partition]:
        starts = np.cumsum((0, *self.records))
        return [Partition(i, int(starts[i]), int(starts[i + 1])) for i in range(len(self.records))]

    def to_bytes(self) -> bytes:
        body = {
            "v": VERSION,
            "job": self.job,
            "model_id": self.model_id,
            "records": list(self.records),
            "ticket": base64.b64encode(self.ticket).decode(),
        }
        return json.dumps(body).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedManifest:
        try:
            raw = json.loads(data)
            if raw.get("v") != VERSION:
                raise ProtocolError("unsupported sealed dataset manifest version")
            ticket = base64.b64decode(raw["ticket"], validate=True)
            records = tuple(int(n) for n in raw["records"])
            return cls(str(raw["job"]), str(raw["model_id"]), records, ticket)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError("malformed sealed dataset manifest") from exc


# ---- the user's side ----------------------------------------------------------------------


def job_ticket(data_key: bytes, *, public_key: bytes, model_id: str, signer: Signer) -> bytes:
    """The data key sealed to the model's deployment key and signed by ``signer``."""
    sealed, _ = seal_inference(
        data_key, header_length=None, public_key=public_key, model_id=model_id, signer=signer
    )
    return sealed


def seal_dataset(
    data: Dataset, folder: Path, *, data_key: bytes, job: str, model_id: str, ticket: bytes,
    partition_records: int,
) -> SealedManifest:  # fmt: skip
    """Seal ``data`` partition by partition into ``folder`` (plus its manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = split(data.records, partition_records)
    for partition in plan:
        arrays = data.read(partition.start, partition.stop)
        named = {(name or UNNAMED): array for name, array in arrays.items()}
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **named)
        sealed = seal_model(buffer.getvalue(), data_key, _input_id(job, partition.index))
        (folder / _part_name(partition.index)).write_bytes(sealed)
    manifest = SealedManifest(job, model_id, tuple(p.records for p in plan), ticket)
    (folder / MANIFEST).write_bytes(manifest.to_bytes())
    return manifest


def open_results(blobs: Mapping[int, bytes], data_key: bytes, job: str) -> dict[str, Array]:
    """The user opens a sealed job's results: every output's records in order."""
    results = [
        PartitionResult.from_bytes(open_model(blob, data_key, _output_id(job, index)))
        for index, blob in sorted(blobs.items())
    ]
    if not results:
        return {}
    names = [name for name, _ in results[0].outputs]
    return {name: np.concatenate([dict(r.outputs)[name] for r in results]) for name in names}


# ---- the enclave's side ---------------------------------------------------------------------


class SealedProcessor:
    """Inside the enclave: attest, load the sealed model once, open the ticket, seal results."""

    def __init__(self, spec: WorkerSpec, keyservice: str) -> None:
        self._folder = spec.data
        self._manifest = SealedManifest.from_bytes((spec.data / MANIFEST).read_bytes())
        model_id = self._manifest.model_id
        tee = tee_backend(
            spec.tee, platform_dir=spec.tee_platform_dir, packages=BATCH_ENCLAVE_PACKAGES
        )
        keys = KeyLease(KeyServiceClient(keyservice), tee, [model_id]).acquire().model(model_id)
        if keys is None:
            raise AccessDenied(f"the KeyService released no keys for {model_id!r}")
        self._host = ModelHost(spec.threads)
        plaintext = open_model(spec.model.read_bytes(), keys.model_key, model_id)
        try:
            self._model = self._host.load(MODEL, plaintext)
        except ModelError:  # onnxruntime's message could name the model's nodes: keep it in
            raise ModelError(f"sealed model {model_id!r} cannot be loaded") from None
        finally:
            del plaintext
        self.loads = 1
        self.load_s = self._model.load_s
        self._batch = spec.batch_size
        self._data_key = _data_key(keys, self._manifest, spec.checkpoints)

    def process(self, partition: Partition) -> bytes:
        job, index = self._manifest.job, partition.index
        sealed = (self._folder / _part_name(index)).read_bytes()
        with np.load(io.BytesIO(open_model(sealed, self._data_key, _input_id(job, index)))) as npz:
            arrays = {name: npz[name] for name in npz.files}
        inputs = self._model.input_names
        feeds = (
            {inputs[0]: arrays[UNNAMED]}
            if list(arrays) == [UNNAMED] and len(inputs) == 1
            else {name: arrays[name] for name in inputs}
        )
        outputs = run_model(self._host, self._model, feeds, self._batch)
        plain = PartitionResult(index, outputs).to_bytes()
        return seal_model(plain, self._data_key, _output_id(job, index))


def _data_key(keys: ModelKeys, manifest: SealedManifest, folder: Path) -> bytes:
    """The job's data key: unwrapped if an instance stored it, else from the user's ticket."""
    wrapping = AESGCM(_wrapping_key(keys.model_key, manifest.job))
    aad = manifest.job.encode()
    wrapped = folder / "data-key.wrapped"
    folder.mkdir(parents=True, exist_ok=True)
    if wrapped.exists():
        raw = wrapped.read_bytes()
        try:
            return wrapping.decrypt(raw[:12], raw[12:], aad)
        except InvalidTag:
            raise EnvelopeError() from None
    request = open_inference(
        manifest.ticket,
        keys.keypair(),
        model_id=manifest.model_id,
        user_key=lambda user: _user_key(keys, user),
        replay=ReplayGuard(),
    )
    data_key = bytes(request.body)
    nonce = os.urandom(12)
    partial = wrapped.with_name(f"{wrapped.name}.{os.getpid()}.part")
    partial.write_bytes(nonce + wrapping.encrypt(nonce, data_key, aad))
    os.replace(partial, wrapped)
    return data_key


def _user_key(keys: ModelKeys, user: str) -> Ed25519PublicKey:
    key = keys.user_key(user)
    if key is None:
        raise AccessDenied("access denied")
    return Ed25519PublicKey.from_public_bytes(key)


def _wrapping_key(model_key: bytes, job: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_WRAP_LABEL + job.encode())
    return hkdf.derive(model_key)


def _part_name(index: int) -> str:
    return f"part-{index:08d}.sealed"


def _input_id(job: str, index: int) -> str:
    return f"{job}/in/{index}"


def _output_id(job: str, index: int) -> str:
    return f"{job}/out/{index}"
