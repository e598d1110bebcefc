"""The KeyService's logic, pure of HTTP, time injected (``now``: unix seconds).

Owners and users are principals with Ed25519 keys (trust on first use); their calls are signed
(:mod:`sealfn.keyservice.auth`). An owner uploads a model key sealed to the KeyService's attested
HPKE key, and the KeyService makes the model's deployment key pair. The owner grants users
access, each grant naming the enclave measurements it allows.

Enclaves are not principals: they prove themselves by attestation. ``challenge`` issues a
single-use nonce; ``release`` verifies evidence bound to that nonce and the enclave's HPKE key,
and then reads only the verified :class:`~sealfn.attestation.Claims`: a model is released only if
some active grant lists ``claims.measurement``. Keys go out sealed to the enclave's key, with a
short lease that ``renew`` extends and refreshes with the grants as they are then.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from sealfn.attestation import Claims, verify
from sealfn.envelope import (
    KeyPair,
    ReplayGuard,
    Suite,
    generate_keypair,
    open_request,
    seal_request,
)
from sealfn.errors import (
    AccessDenied,
    AttestationError,
    Conflict,
    EnvelopeError,
    InvalidInput,
    NotFound,
)
from sealfn.keyservice.auth import SignedCall, verify_call
from sealfn.keyservice.config import KeyServiceConfig
from sealfn.keyservice.keys import DeploymentKey, KeyServiceKey
from sealfn.keyservice.principal import PrincipalKind
from sealfn.keyservice.release import (
    KEYSERVICE_MODEL_ID,
    SESSION_SECRET_SIZE,
    KeyRelease,
    ModelKeys,
    renewal_mac,
)
from sealfn.keyservice.store import (
    SEALING_LABEL,
    GrantRecord,
    ModelRecord,
    PrincipalRecord,
    SessionRecord,
    Store,
)
from sealfn.keyservice.wire import check_id
from sealfn.tee import TeeBackend, report_data

log = logging.getLogger("sealfn.keyservice")

MODEL_KEY_SIZE = 32  # bytes: AES-256 (sealfn.sealed_model)
ED25519_KEY_SIZE = 32
NONCE_SIZE = 32  # bytes of the challenges this service issues
NONCE_RANGE = (16, 64)  # bytes a caller's nonce for /attestation may have
MEASUREMENT_RANGE = (32, 64)  # bytes: SGX MRENCLAVE is 32, TDX/SNP/simulated 48
SESSION_DENIED = "session renewal denied; attest again"


class KeyService:
    """The relying party: registers principals, keeps model keys, releases them on claims."""

    def __init__(self, store: Store, tee: TeeBackend, config: KeyServiceConfig | None = None):
        self.config = config or KeyServiceConfig()
        self._store = store
        self._tee = tee
        self._policy = self.config.policy()  # built once: a bad setting fails at start
        self._keypair = self._service_keypair(self.config.suite)
        self._uploads = ReplayGuard()  # model-key envelopes, beyond the signed-call cache
        self._calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        if self.config.accept_simulated:
            log.warning(
                "KEYSERVICE ACCEPTS SIMULATED ENCLAVES (--accept-simulated): it will release "
                "model keys to enclaves that have NO isolation from their host. Development and "
                "tests only; never with real models or data."
            )

    @classmethod
    def open(
        cls, db: Path | str, tee: TeeBackend, config: KeyServiceConfig | None = None
    ) -> KeyService:
        """A KeyService on the store at ``db``, sealed under ``tee``'s key for this service."""
        return cls(Store(db, tee.sealing_key(SEALING_LABEL)), tee, config)

    def close(self) -> None:
        self._store.close()

    def stats(self) -> dict[str, int]:
        """Calls per operation since start (failed ones included)."""
        with self._calls_lock:
            return dict(self._calls)

    # ---- principals ----------------------------------------------------------------------------

    def register(
        self, call: SignedCall, kind: PrincipalKind, public_key: bytes, now: float
    ) -> PrincipalRecord:
        """Register ``call.principal`` with ``public_key``, which must have signed the call.

        Trust on first use: the same name and key again is a no-op; another key is a Conflict.
        """
        self._count("register")
        name = check_id("principal name", call.principal)
        if len(public_key) != ED25519_KEY_SIZE:
            raise InvalidInput(f"public_key must be a raw {ED25519_KEY_SIZE}-byte Ed25519 key")
        self._check_signed(public_key, call, now)
        stored = self._store.add_principal(PrincipalRecord(name, kind, public_key, now))
        if not hmac.compare_digest(stored.public_key, public_key) or stored.kind is not kind:
            raise Conflict(f"principal {name!r} is already registered with another key or kind")
        log.info("principal %s registered (%s)", name, kind.value)
        return stored

    def authenticate(self, call: SignedCall, now: float) -> PrincipalRecord:
        """The registered principal that signed ``call``; AccessDenied otherwise (opaque)."""
        principal = self._store.principal(call.principal)
        if principal is None:
            log.debug("call refused: unknown principal %r", call.principal)
            raise AccessDenied("authentication failed")
        self._check_signed(principal.public_key, call, now)
        return principal

    # ---- models and grants -----------------------------------------------------------------------

    def upload_model_key(
        self,
        call: SignedCall,
        model_id: str,
        sealed_key: bytes,
        *,
        now: float,
        suite: Suite | None = None,
    ) -> DeploymentKey:
        """Keep the owner's model key (sealed to this service's key by the owner, so the host
        never sees it) and make the model's deployment key pair (``suite``: default the upload's).

        Uploading the same key again is a no-op; another key for a taken model id is a Conflict.
        """
        self._count("upload_model_key")
        owner = self.authenticate(call, now)
        if owner.kind is not PrincipalKind.OWNER:
            raise AccessDenied(f"{owner.name} is not registered as a model owner")
        model_key, sealed_with = self._open_model_key(sealed_key, model_id, owner.name, now)
        pair = generate_keypair(suite or sealed_with)
        stored = self._store.add_model(
            ModelRecord(
                model_id, owner.name, model_key, pair.suite, pair.public_key, pair.private_key, now
            )
        )
        same_key = hmac.compare_digest(stored.model_key, model_key)
        if stored.owner != owner.name or not same_key:
            raise Conflict(f"model {model_id!r} already has a key")
        log.info("model %s: key stored for owner %s", model_id, owner.name)
        return DeploymentKey(model_id, Suite(stored.suite), stored.public_key)

    def deployment_key(self, model_id: str) -> DeploymentKey:
        """The HPKE public key users seal requests for ``model_id`` to (public)."""
        self._count("deployment_key")
        found = self._store.model_public(check_id("model id", model_id))
        if found is None:
            raise NotFound(f"unknown model {model_id!r}")
        _, suite, public_key = found
        return DeploymentKey(model_id, Suite(suite), public_key)

    def attest_deployment_key(self, model_id: str, nonce: bytes) -> tuple[DeploymentKey, bytes]:
        """The deployment key and this service's evidence binding it to ``nonce``, so a user can
        check it came from the attested KeyService and not from whoever sits on the path."""
        key = self.deployment_key(model_id)
        return key, self._tee.evidence(report_data(key.binding(), _check_nonce(nonce)))

    def grant(
        self,
        call: SignedCall,
        model_id: str,
        user_id: str,
        measurements: Iterable[bytes],
        now: float,
    ) -> GrantRecord:
        """Let ``user_id`` use ``model_id`` on enclaves of these measurements (owner only)."""
        self._count("grant")
        self._check_owner(call, model_id, now)
        if self._store.principal(check_id("user id", user_id)) is None:
            raise NotFound(f"unknown principal {user_id!r}; they must register first")
        allowed = _check_measurements(measurements)
        record = self._store.put_grant(model_id, user_id, allowed, now)
        log.info("model %s: granted %s on %d measurement(s)", model_id, user_id, len(allowed))
        return record

    def revoke(self, call: SignedCall, model_id: str, user_id: str, now: float) -> None:
        """End ``user_id``'s grant (owner only); warm enclaves drop it within one lease."""
        self._count("revoke")
        self._check_owner(call, model_id, now)
        if not self._store.revoke_grant(model_id, check_id("user id", user_id), now):
            raise NotFound(f"{user_id!r} has no active grant for model {model_id!r}")
        log.info("model %s: revoked %s", model_id, user_id)

    # ---- enclaves --------------------------------------------------------------------------------

    def challenge(self, now: float) -> bytes:
        """A fresh nonce, usable once within ``challenge_ttl_s``."""
        self._count("challenge")
        nonce = secrets.token_bytes(NONCE_SIZE)
        self._store.add_challenge(
            nonce, now, self.config.challenge_ttl_s, self.config.max_challenges
        )
        return nonce

    def release(
        self,
        evidence: bytes,
        nonce: bytes,
        enclave_public_key: bytes,
        model_ids: Sequence[str],
        *,
        now: float,
        suite: Suite = Suite.X25519_SHA256_AES256GCM,
    ) -> bytes:
        """Verify ``evidence`` (bound to ``nonce`` and ``enclave_public_key``) and release the
        keys of every requested model its measurement is granted on, sealed to that key.

        All or nothing: AccessDenied names the first model no active grant allows.
        """
        self._count("release")
        wanted = self._check_model_ids(model_ids)
        claims = self._appraise(evidence, nonce, enclave_public_key, now)
        models = [self._granted(model_id, claims.measurement) for model_id in wanted]
        session = SessionRecord(
            session_id=secrets.token_hex(16),
            measurement=claims.measurement,
            enclave_public_key=enclave_public_key,
            suite=suite,
            model_ids=wanted,
            secret=secrets.token_bytes(SESSION_SECRET_SIZE),
            attested_at=now,
            expires=now + self.config.lease_s,
        )
        sealed = self._seal(session, session.expires, models, now)
        self._store.add_session(session, prune_before=now - self.config.renew_grace_s)
        log.info(
            "released %s to measurement %s (session %s%s)",
            ", ".join(wanted),
            claims.measurement.hex(),
            session.session_id,
            ", SIMULATED" if claims.simulated else "",
        )
        return sealed

    def renew(self, session_id: str, timestamp_ms: int, mac: bytes, now: float) -> bytes:
        """A fresh release for a live session, with the grants as they are now and a new lease.

        ``mac`` = HMAC-SHA256(session secret, session id ‖ timestamp); timestamps must be fresh
        and increase. A model whose grants no longer list the session's measurement is left out.
        Any failure is the same AccessDenied: the enclave must attest again.
        """
        self._count("renew")
        session = self._store.session(session_id)
        if session is None or not self._alive(session, now):
            log.debug("renewal refused: unknown or lapsed session")
            raise AccessDenied(SESSION_DENIED)
        expected = renewal_mac(session.secret, session_id, timestamp_ms)
        fresh = abs(timestamp_ms / 1000.0 - now) <= self.config.max_skew_s
        if not hmac.compare_digest(mac, expected) or not fresh:
            log.debug("renewal of %s refused: bad MAC or stale timestamp", session_id)
            raise AccessDenied(SESSION_DENIED)
        expires = now + self.config.lease_s
        models = [
            keys
            for model_id in session.model_ids
            if (keys := self._model_keys(model_id, session.measurement)) is not None
        ]
        sealed = self._seal(session, expires, models, now)
        if not self._store.renew_session(session_id, expires, timestamp_ms):
            log.debug("renewal of %s refused: replayed timestamp", session_id)
            raise AccessDenied(SESSION_DENIED)
        return sealed

    # ---- its own attestation ---------------------------------------------------------------------

    def attestation(self, nonce: bytes) -> tuple[KeyServiceKey, bytes]:
        """This service's HPKE public key and evidence binding it to ``nonce``."""
        self._count("attestation")
        key = KeyServiceKey(self._keypair.public_key, self._keypair.suite, self._tee.simulated)
        return key, self._tee.evidence(report_data(key.public_key, _check_nonce(nonce)))

    # ---- steps -----------------------------------------------------------------------------------

    def _count(self, operation: str) -> None:
        with self._calls_lock:
            self._calls[operation] += 1

    def _check_signed(self, public_key: bytes, call: SignedCall, now: float) -> None:
        """Signature, freshness, then the replay cache (only authentic calls reach it)."""
        verify_call(public_key, call, now, self.config.max_skew_s)
        if not self._store.remember_call(
            call.replay_key(public_key), now, 2 * self.config.max_skew_s
        ):
            log.debug("call by %s refused: replayed", call.principal)
            raise AccessDenied("authentication failed")

    def _open_model_key(
        self, sealed: bytes, model_id: str, owner: str, now: float
    ) -> tuple[bytes, Suite]:
        """The model key the owner sealed to this service for this model; EnvelopeError if it
        was sealed for another model or by another principal."""
        opened = open_request(
            sealed,
            self._keypair,
            expected_model_id=check_id("model id", model_id),
            replay=self._uploads,
            now=now,
        )
        if opened.header.user_id != owner:
            log.debug(
                "model key refused: sealed by %r, uploaded by %r", opened.header.user_id, owner
            )
            raise EnvelopeError()
        if len(opened.plaintext) != MODEL_KEY_SIZE:
            raise InvalidInput(f"a model key must be {MODEL_KEY_SIZE} bytes")
        return opened.plaintext, opened.header.suite

    def _check_owner(self, call: SignedCall, model_id: str, now: float) -> None:
        principal = self.authenticate(call, now)
        found = self._store.model_public(check_id("model id", model_id))
        if found is None:
            raise NotFound(f"unknown model {model_id!r}")
        if found[0] != principal.name:
            raise AccessDenied(f"only the owner of model {model_id!r} may change its grants")

    def _check_model_ids(self, model_ids: Sequence[str]) -> tuple[str, ...]:
        if isinstance(model_ids, str) or not model_ids:
            raise InvalidInput("model_ids must be a non-empty list of model ids")
        if len(model_ids) > self.config.max_models_per_release:
            raise InvalidInput(f"at most {self.config.max_models_per_release} models per release")
        wanted = tuple(dict.fromkeys(check_id("model id", m) for m in model_ids))
        for model_id in wanted:
            if self._store.model_public(model_id) is None:
                raise NotFound(f"unknown model {model_id!r}")
        return wanted

    def _appraise(self, evidence: bytes, nonce: bytes, public_key: bytes, now: float) -> Claims:
        """Spend the nonce (even if what follows fails: no second try), then verify."""
        if not self._store.use_challenge(nonce, now, self.config.challenge_ttl_s):
            log.debug("release refused: unknown, used or expired nonce")
            raise AttestationError("attestation failed")
        return verify(evidence, nonce=nonce, public_key=public_key, policy=self._policy, now=now)

    def _granted(self, model_id: str, measurement: bytes) -> ModelKeys:
        keys = self._model_keys(model_id, measurement)
        if keys is None:
            log.info("release refused: %s not granted for %s", measurement.hex(), model_id)
            raise AccessDenied(f"measurement not allowed for model {model_id}")
        return keys

    def _model_keys(self, model_id: str, measurement: bytes) -> ModelKeys | None:
        """The model's secrets and the users granted on ``measurement``; None if there are none."""
        users = tuple(
            grant.user_id
            for grant in self._store.grants(model_id)
            if measurement in grant.measurements
        )
        model = self._store.model(model_id) if users else None
        if model is None:
            return None
        suite = Suite(model.suite)
        principals = [self._store.principal(user) for user in users]
        granted = [p for p in principals if p is not None]
        return ModelKeys(
            model_id,
            model.model_key,
            suite,
            model.private_key,
            model.public_key,
            tuple(p.name for p in granted),
            tuple(p.public_key for p in granted),
        )

    def _alive(self, session: SessionRecord, now: float) -> bool:
        lapsed = now > session.expires + self.config.renew_grace_s
        too_old = now > session.attested_at + self.config.session_max_s
        return not (lapsed or too_old)

    def _seal(
        self, session: SessionRecord, expires: float, models: Sequence[ModelKeys], now: float
    ) -> bytes:
        payload = KeyRelease(session.session_id, session.secret, expires, tuple(models))
        try:
            sealed, _ = seal_request(
                payload.to_bytes(),
                session.enclave_public_key,
                model_id=KEYSERVICE_MODEL_ID,
                user_id=session.session_id,
                suite=Suite(session.suite),
                now=now,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidInput("enclave_public_key is not a valid key for its suite") from exc
        return sealed

    def _service_keypair(self, suite: Suite) -> KeyPair:
        """This service's HPKE key pair for ``suite``, made on first start."""
        stored = self._store.service_keypair(suite)
        if stored is None:
            fresh = generate_keypair(suite)
            stored = self._store.add_service_keypair(suite, fresh.public_key, fresh.private_key)
        public, private = stored
        return KeyPair(suite, private, public)


def _check_nonce(nonce: bytes) -> bytes:
    low, high = NONCE_RANGE
    if not isinstance(nonce, bytes) or not low <= len(nonce) <= high:
        raise InvalidInput(f"nonce must be {low}-{high} bytes")
    return nonce


def _check_measurements(measurements: Iterable[bytes]) -> frozenset[bytes]:
    low, high = MEASUREMENT_RANGE
    allowed = frozenset(measurements)
    if not allowed:
        raise InvalidInput("a grant needs at least one enclave measurement")
    for measurement in allowed:
        if not isinstance(measurement, bytes) or not low <= len(measurement) <= high:
            raise InvalidInput(f"a measurement must be {low}-{high} bytes")
    return allowed
