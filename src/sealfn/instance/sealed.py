"""The enclave runtime (SeSeMI's SeMIRT): attestation, keys on a lease, sealed requests.

Inside the instance (the enclave): on the first sealed LOAD it attests to the KeyService and gets
the model key, the deployment's HPKE private key and the granted users' signing keys, sealed to a
key pair made here. It decrypts the sealed model in memory, loads it, and renews the lease in the
background (about every half lease), so a warm request makes no KeyService call and a revocation
takes effect within one lease. Each request is opened, its sender's grant and signature checked,
decoded, batched with its mates, run, encoded and sealed back to its sender.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealfn import oip
from sealfn.envelope import KeyPair, ReplayGuard
from sealfn.envelope.session import SessionCache
from sealfn.errors import AccessDenied, EnvelopeError, InvalidInput, ModelError, SealfnError
from sealfn.instance.models import ModelHost
from sealfn.keyservice.client import KeyServiceClient
from sealfn.keyservice.enclave import KeyLease
from sealfn.keyservice.release import ModelKeys
from sealfn.modelstore import open_store
from sealfn.sealed_model import open_model
from sealfn.sealed_request import SealedInference, open_inference
from sealfn.signature import ModelSignature, datatype_of, signature_from_session, validate
from sealfn.tee import TeeBackend
from sealfn.tee import backend as tee_backend
from sealfn.tee.manifest import DEFAULT_PACKAGES, Manifest

log = logging.getLogger("sealfn.enclave")

# The code an enclave instance runs; its measurement is what owners grant.
ENCLAVE_PACKAGES = (
    *DEFAULT_PACKAGES,
    "sealfn.keyservice",
    "sealfn.sealed_request",
    "sealfn.oip",
    "sealfn.signature",
)
RETRY_S = 0.5  # seconds between failed lease renewals


def enclave_measurement() -> bytes:
    """The measurement of this build's enclave code: what an owner grants (``model grant``)."""
    return Manifest.build(packages=ENCLAVE_PACKAGES).measurement()


@dataclass(frozen=True)
class Answer:
    """One sealed request's outcome: an HTTP status and the sealed reply (or an opaque message)."""

    status: int
    sealed: bytes | None = None
    message: str = ""


@dataclass
class _Model:
    name: str
    signature: ModelSignature
    lease: KeyLease
    replay: ReplayGuard = field(default_factory=ReplayGuard)
    verifiers: dict[bytes, Ed25519PublicKey] = field(default_factory=dict)
    # The deployment key pair, parsed once (not per request), and the sessions opened with it.
    deployment: tuple[KeyPair, SessionCache] | None = None


class SealedModels:
    """The sealed models this enclave serves, with the keys its lease holds."""

    def __init__(self, host: ModelHost) -> None:
        self._host = host
        self._tee: TeeBackend | None = None
        self._models: dict[str, _Model] = {}
        self._stop = threading.Event()

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def load(
        self, name: str, source: Path | str, keyservice: str, tee: str, platform_dir: str | None
    ) -> dict[str, float]:
        """Attest, fetch keys, decrypt and load ``name``; returns the cold-start breakdown (s)."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        enclave = self._enclave(tee, platform_dir)
        timings["tee_s"] = time.perf_counter() - started
        lease = KeyLease(KeyServiceClient(keyservice), enclave, [name])
        mark = time.perf_counter()
        release = lease.acquire()
        timings["attest_release_s"] = time.perf_counter() - mark
        keys = release.model(name)
        if keys is None:
            raise AccessDenied(f"the KeyService released no keys for {name!r}")
        mark = time.perf_counter()
        # A path: the gateway's copy. A URL: the untrusted model store (local dir or fsspec).
        sealed = source.read_bytes() if isinstance(source, Path) else open_store(source).get(name)
        timings["fetch_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        plaintext = open_model(sealed, keys.model_key, name)
        timings["decrypt_s"] = time.perf_counter() - mark
        try:
            loaded = self._host.load(name, plaintext)
        except ModelError:
            # onnxruntime's message can name the model's nodes and shapes: it would leave the
            # enclave in the FAILURE frame and the gateway's log, so the platform gets none of it.
            raise ModelError(f"sealed model {name!r} cannot be loaded") from None
        finally:
            del plaintext  # the session holds what it needs; drop the decrypted bytes
        timings["load_s"] = loaded.load_s
        self._models[name] = _Model(name, signature_from_session(loaded.session), lease)
        self._start_renewal(self._models[name])
        return timings

    def unload(self, name: str) -> None:
        self._models.pop(name, None)
        self._host.unload(name)

    def close(self) -> None:
        self._stop.set()

    def run(self, name: str, sealed: Sequence[bytes]) -> list[Answer]:
        """Open → check grant + signature → decode → batch → run → encode → seal, per request."""
        model = self._models.get(name)
        if model is None:
            return [Answer(404, message=f"model {name!r} is not loaded")] * len(sealed)
        answers: list[Answer | None] = [None] * len(sealed)
        accepted: list[tuple[int, SealedInference, oip.InferRequest]] = []
        for index, body in enumerate(sealed):
            outcome = self._open(model, body)
            if isinstance(outcome, Answer):
                answers[index] = outcome
            else:
                accepted.append((index, *outcome))
        for index, answer in self._execute(model, accepted):
            answers[index] = answer
        return [a if a is not None else Answer(500, message="not answered") for a in answers]

    # ---- steps ---------------------------------------------------------------------------

    def _open(
        self, model: _Model, body: bytes
    ) -> Answer | tuple[SealedInference, oip.InferRequest]:
        try:
            keypair, sessions = _deployment(model)
            request = open_inference(
                body,
                keypair,
                model_id=model.name,
                user_key=lambda user: self._verifier(model, user),
                replay=model.replay,
                sessions=sessions,
            )
        except EnvelopeError as exc:
            return Answer(400, message=exc.message)
        except AccessDenied:
            return Answer(403, message="access denied")
        try:
            parsed = oip.decode_request(request.body, request.header_length)
            validate(parsed.inputs, model.signature, [o.name for o in parsed.outputs])
        except InvalidInput as exc:
            return _error(request, 400, exc.message)
        return request, parsed

    def _execute(
        self, model: _Model, accepted: list[tuple[int, SealedInference, oip.InferRequest]]
    ) -> list[tuple[int, Answer]]:
        if not accepted:
            return []
        feeds = [{t.name: t.data for t in parsed.inputs} for _, _, parsed in accepted]
        try:
            results = self._host.run_batch(model.name, feeds)
        except InvalidInput:
            if len(accepted) == 1:
                _, request, _ = accepted[0]
                return [(accepted[0][0], _error(request, 400, "the model rejected the input"))]
            # one request spoiled the batch: run each alone so its mates still get answers
            return [answer for item in accepted for answer in self._execute(model, [item])]
        answers = []
        for (index, request, parsed), outputs in zip(accepted, results, strict=True):
            tensors = tuple(oip.Tensor(n, _datatype(a), a.shape, a) for n, a in outputs.items())
            response = oip.InferResponse(model.name, "1", parsed.id, tensors)
            content, headers = oip.encode_response(response, parsed)
            length = headers.get("Inference-Header-Content-Length")
            sealed = request.seal_reply(200, content, int(length) if length else None)
            answers.append((index, Answer(200, sealed)))
        return answers

    def _verifier(self, model: _Model, user: str) -> Ed25519PublicKey:
        key = _keys(model).user_key(user)
        if key is None:
            raise AccessDenied("access denied")
        verifier = model.verifiers.get(key)
        if verifier is None:
            verifier = model.verifiers[key] = Ed25519PublicKey.from_public_bytes(key)
        return verifier

    def _enclave(self, tee: str, platform_dir: str | None) -> TeeBackend:
        if self._tee is None:
            self._tee = tee_backend(tee, platform_dir=platform_dir, packages=ENCLAVE_PACKAGES)
        return self._tee

    def _start_renewal(self, model: _Model) -> None:
        def renew_forever() -> None:
            while not self._stop.wait(0.05):
                if model.name not in self._models:
                    return
                if not model.lease.due():
                    continue
                try:
                    model.lease.renew()
                except SealfnError as exc:
                    log.warning("lease renewal for %s failed: %s", model.name, exc.message)
                    self._stop.wait(RETRY_S)

        threading.Thread(target=renew_forever, name=f"lease-{model.name}", daemon=True).start()


def _keys(model: _Model) -> ModelKeys:
    keys = model.lease.model(model.name)
    if keys is None:  # the lease ran out without a renewal: fail closed
        raise AccessDenied("access denied")
    return keys


def _deployment(model: _Model) -> tuple[KeyPair, SessionCache]:
    """The lease's deployment key pair and its sessions; a new key pair drops the old sessions."""
    keys = _keys(model)
    current = model.deployment
    if current is None or current[0].private_key != keys.private_key:
        current = model.deployment = (keys.keypair(), SessionCache())
    return current


def _error(request: SealedInference, status: int, message: str) -> Answer:
    """A refusal the sender may read in detail: sealed to them, opaque to the platform."""
    body = json.dumps({"error": message}).encode()
    return Answer(status, request.seal_reply(status, body), "request refused (sealed detail)")


def _datatype(array: np.ndarray[Any, Any]) -> str:
    return datatype_of(array.dtype)
