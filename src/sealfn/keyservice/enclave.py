"""The enclave's side of key release: attest once, hold the released keys, renew the lease.

Runs inside the enclave: its HPKE key pair is made here and never leaves; the KeyService's answer
is sealed to it. A warm enclave calls the KeyService only to renew (about every half lease), never
per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sealfn.envelope import ReplayGuard, Suite, generate_keypair
from sealfn.errors import AccessDenied
from sealfn.keyservice.client import KeyServiceClient
from sealfn.keyservice.release import KeyRelease, ModelKeys, open_release
from sealfn.tee import TeeBackend, report_data


class KeyLease:
    """Released keys for ``model_ids``, valid while the lease runs."""

    def __init__(
        self,
        client: KeyServiceClient,
        tee: TeeBackend,
        model_ids: Sequence[str],
        *,
        suite: Suite = Suite.X25519_SHA256_AES256GCM,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._tee = tee
        self._model_ids = list(model_ids)
        self._keypair = generate_keypair(suite)  # ephemeral: the evidence binds its public half
        self._replay = ReplayGuard()
        self._clock = clock
        self._current: KeyRelease | None = None
        self._received_at = 0.0  # unix seconds

    @property
    def public_key(self) -> bytes:
        return self._keypair.public_key

    def acquire(self) -> KeyRelease:
        """Attest (fresh nonce, evidence bound to this lease's key) and take the release."""
        self._current = None  # a failed attempt leaves no keys in use
        nonce = self._client.challenge()
        evidence = self._tee.evidence(report_data(self._keypair.public_key, nonce))
        sealed = self._client.release(
            evidence, nonce, self._keypair.public_key, self._model_ids, suite=self._keypair.suite
        )
        return self._accept(sealed)

    def renew(self) -> KeyRelease:
        """Renew the lease (current grants); attest again if the session has lapsed."""
        if self._current is None:
            return self.acquire()
        current = self._current
        try:
            sealed = self._client.renew(
                current.session_id, current.session_secret, now=self._clock()
            )
        except AccessDenied:
            return self.acquire()
        return self._accept(sealed)

    def due(self) -> bool:
        """True once half the lease has passed (or there is none): time to :meth:`renew`."""
        if self._current is None:
            return True
        half = (self._current.lease_expires - self._received_at) / 2
        return self._clock() >= self._received_at + half

    def model(self, model_id: str) -> ModelKeys | None:
        """The model's keys and granted users, or None once the lease has expired."""
        current = self._current
        if current is None or self._clock() > current.lease_expires:
            return None
        return current.model(model_id)

    def allows(self, model_id: str, user_id: str) -> bool:
        keys = self.model(model_id)
        return keys is not None and user_id in keys.users

    def _accept(self, sealed: bytes) -> KeyRelease:
        now = self._clock()
        self._current = open_release(sealed, self._keypair, replay=self._replay, now=now)
        self._received_at = now
        return self._current
