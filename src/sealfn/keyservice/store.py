"""The KeyService's SQLite store (WAL); every secret in it is sealed under the service's TEE key.

Secrets (model keys, deployment and service HPKE private keys, session secrets) are stored as
``nonce (12) ‖ AES-256-GCM ciphertext`` under the sealing key the KeyService's TEE derives for
its measurement, with AAD = table ‖ row id ‖ column: a copied database is useless on another
platform or under other code, and a sealed value cannot be moved to another row or column.
A sealed canary in ``meta`` makes a store opened with the wrong key fail at once, clearly.

Every write runs in one ``BEGIN IMMEDIATE`` transaction (all or nothing); sqlite3 errors are
translated here, at the boundary. One connection, serialised by a lock, serves all threads;
other processes may share the file (WAL, busy timeout).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealfn.errors import ConfigError, Conflict, SealfnError, Unavailable
from sealfn.keyservice.principal import PrincipalKind

log = logging.getLogger("sealfn.keyservice")

SCHEMA_VERSION = 1
SEALING_LABEL = b"keyservice-store"  # what the store's key is derived for: tee.sealing_key(...)
_NONCE_SIZE = 12
_AAD_DOMAIN = b"sealfn keyservice store v1\x00"
_CANARY = b"sealfn keyservice store canary"
_LENGTH = struct.Struct(">I")

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE service_keys (
    suite INTEGER PRIMARY KEY,
    public_key BLOB NOT NULL,
    private_key BLOB NOT NULL                         -- sealed
);
CREATE TABLE principals (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('owner', 'user')),
    public_key BLOB NOT NULL,                         -- Ed25519, raw 32 bytes
    created REAL NOT NULL
);
CREATE TABLE models (
    model_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES principals (name),
    model_key BLOB NOT NULL,                          -- sealed
    suite INTEGER NOT NULL,
    public_key BLOB NOT NULL,                         -- deployment HPKE public key
    private_key BLOB NOT NULL,                        -- sealed
    created REAL NOT NULL
);
CREATE TABLE grants (
    model_id TEXT NOT NULL REFERENCES models (model_id),
    user_id TEXT NOT NULL REFERENCES principals (name),
    measurements TEXT NOT NULL,                       -- JSON list of lowercase hex
    created REAL NOT NULL,
    revoked_at REAL,
    PRIMARY KEY (model_id, user_id)
);
CREATE TABLE challenges (
    nonce BLOB PRIMARY KEY,
    created REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    measurement BLOB NOT NULL,
    enclave_public_key BLOB NOT NULL,
    suite INTEGER NOT NULL,
    model_ids TEXT NOT NULL,                          -- JSON list
    secret BLOB NOT NULL,                             -- sealed
    attested_at REAL NOT NULL,
    expires REAL NOT NULL,                            -- end of the current lease
    last_renewal_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE seen_calls (key BLOB PRIMARY KEY, expires REAL NOT NULL);
"""


@dataclass(frozen=True)
class PrincipalRecord:
    name: str
    kind: PrincipalKind
    public_key: bytes
    created: float


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    owner: str
    model_key: bytes = field(repr=False)
    suite: int
    public_key: bytes
    private_key: bytes = field(repr=False)
    created: float


@dataclass(frozen=True)
class GrantRecord:
    model_id: str
    user_id: str
    measurements: frozenset[bytes]
    created: float
    revoked_at: float | None


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    measurement: bytes
    enclave_public_key: bytes
    suite: int
    model_ids: tuple[str, ...]
    secret: bytes = field(repr=False)
    attested_at: float  # unix seconds
    expires: float  # unix seconds: end of the current lease
    last_renewal_ms: int = 0  # renewal timestamps must increase: no replays


class Store:
    """Typed reads and atomic writes over the KeyService's database."""

    def __init__(self, path: Path | str, sealing_key: bytes) -> None:
        if len(sealing_key) != 32:
            raise ValueError("sealing_key must be 32 bytes")
        self.path = Path(path)
        self._aead = AESGCM(sealing_key)
        self._lock = threading.RLock()
        self._db = _connect(self.path)
        try:
            self._migrate()
            self._check_canary()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- service keys ------------------------------------------------------------------------

    def service_keypair(self, suite: int) -> tuple[bytes, bytes] | None:
        """(public, private) of the KeyService's own HPKE key for ``suite``, if made yet."""
        rows = self._read("SELECT public_key, private_key FROM service_keys WHERE suite = ?", suite)
        if not rows:
            return None
        public, sealed = rows[0]
        return public, self._unseal("service_keys", str(suite), "private_key", sealed)

    def add_service_keypair(self, suite: int, public: bytes, private: bytes) -> tuple[bytes, bytes]:
        """Store a key pair unless one exists (another process may win); the stored one."""
        sealed = self._seal("service_keys", str(suite), "private_key", private)
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO service_keys VALUES (?, ?, ?)", (suite, public, sealed)
            )
        stored = self.service_keypair(suite)
        if stored is None:
            raise SealfnError("keyservice store lost a service key it just wrote")
        return stored

    # ---- principals --------------------------------------------------------------------------

    def add_principal(self, record: PrincipalRecord) -> PrincipalRecord:
        """Insert unless the name exists; the stored record (the caller decides on a clash)."""
        row = (record.name, record.kind.value, record.public_key, record.created)
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO principals VALUES (?, ?, ?, ?)", row)
        stored = self.principal(record.name)
        if stored is None:
            raise SealfnError("keyservice store lost a principal it just wrote")
        return stored

    def principal(self, name: str) -> PrincipalRecord | None:
        rows = self._read(
            "SELECT name, kind, public_key, created FROM principals WHERE name = ?", name
        )
        if not rows:
            return None
        name, kind, public_key, created = rows[0]
        return PrincipalRecord(name, PrincipalKind(kind), public_key, created)

    # ---- models --------------------------------------------------------------------------------

    def add_model(self, record: ModelRecord) -> ModelRecord:
        """Insert unless the model id exists; the stored record (the caller decides on a clash)."""
        row = (
            record.model_id,
            record.owner,
            self._seal("models", record.model_id, "model_key", record.model_key),
            record.suite,
            record.public_key,
            self._seal("models", record.model_id, "private_key", record.private_key),
            record.created,
        )
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO models VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        stored = self.model(record.model_id)
        if stored is None:
            raise SealfnError("keyservice store lost a model it just wrote")
        return stored

    def model(self, model_id: str) -> ModelRecord | None:
        rows = self._read(
            "SELECT model_id, owner, model_key, suite, public_key, private_key, created "
            "FROM models WHERE model_id = ?",
            model_id,
        )
        if not rows:
            return None
        model_id, owner, model_key, suite, public_key, private_key, created = rows[0]
        return ModelRecord(
            model_id,
            owner,
            self._unseal("models", model_id, "model_key", model_key),
            suite,
            public_key,
            self._unseal("models", model_id, "private_key", private_key),
            created,
        )

    def model_public(self, model_id: str) -> tuple[str, int, bytes] | None:
        """(owner, suite, deployment public key), without unsealing anything."""
        rows = self._read(
            "SELECT owner, suite, public_key FROM models WHERE model_id = ?", model_id
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    # ---- grants --------------------------------------------------------------------------------

    def put_grant(
        self, model_id: str, user_id: str, measurements: Iterable[bytes], now: float
    ) -> GrantRecord:
        """Grant (or re-grant, replacing the measurements and clearing a revocation)."""
        allowed = frozenset(measurements)
        listed = json.dumps(sorted(m.hex() for m in allowed))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO grants VALUES (?, ?, ?, ?, NULL) ON CONFLICT (model_id, user_id) "
                "DO UPDATE SET measurements = excluded.measurements, created = excluded.created, "
                "revoked_at = NULL",
                (model_id, user_id, listed, now),
            )
        return GrantRecord(model_id, user_id, allowed, now, None)

    def revoke_grant(self, model_id: str, user_id: str, now: float) -> bool:
        """Mark an active grant revoked; False if there was none."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE grants SET revoked_at = ? "
                "WHERE model_id = ? AND user_id = ? AND revoked_at IS NULL",
                (now, model_id, user_id),
            )
            return cursor.rowcount == 1

    def grants(self, model_id: str, *, include_revoked: bool = False) -> list[GrantRecord]:
        sql = "SELECT model_id, user_id, measurements, created, revoked_at FROM grants "
        sql += "WHERE model_id = ?" + ("" if include_revoked else " AND revoked_at IS NULL")
        return [
            GrantRecord(m, u, frozenset(bytes.fromhex(h) for h in json.loads(listed)), c, r)
            for m, u, listed, c, r in self._read(sql + " ORDER BY user_id", model_id)
        ]

    # ---- challenges and replay -----------------------------------------------------------------

    def add_challenge(self, nonce: bytes, now: float, ttl_s: float, limit: int) -> None:
        """Remember a fresh nonce; Unavailable if ``limit`` unexpired ones are outstanding."""
        with self._transaction() as db:
            db.execute("DELETE FROM challenges WHERE created < ?", (now - ttl_s,))
            (outstanding,) = db.execute("SELECT count(*) FROM challenges WHERE used = 0").fetchone()
            if outstanding >= limit:
                raise Unavailable("too many outstanding attestation challenges; retry shortly")
            db.execute("INSERT INTO challenges (nonce, created) VALUES (?, ?)", (nonce, now))

    def use_challenge(self, nonce: bytes, now: float, ttl_s: float) -> bool:
        """Consume a nonce: True once, if it was issued less than ``ttl_s`` ago."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE challenges SET used = 1 WHERE nonce = ? AND used = 0 AND created >= ?",
                (nonce, now - ttl_s),
            )
            return cursor.rowcount == 1

    def remember_call(self, key: bytes, now: float, ttl_s: float) -> bool:
        """True the first time ``key`` is seen within ``ttl_s``; False for a replay."""
        with self._transaction() as db:
            db.execute("DELETE FROM seen_calls WHERE expires < ?", (now,))
            cursor = db.execute(
                "INSERT OR IGNORE INTO seen_calls VALUES (?, ?)", (key, now + ttl_s)
            )
            return cursor.rowcount == 1

    # ---- sessions ------------------------------------------------------------------------------

    def add_session(self, record: SessionRecord, *, prune_before: float) -> None:
        """Insert a session, dropping those whose lease ended before ``prune_before``."""
        row = (
            record.session_id,
            record.measurement,
            record.enclave_public_key,
            record.suite,
            json.dumps(list(record.model_ids)),
            self._seal("sessions", record.session_id, "secret", record.secret),
            record.attested_at,
            record.expires,
            record.last_renewal_ms,
        )
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (prune_before,))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def session(self, session_id: str) -> SessionRecord | None:
        rows = self._read("SELECT * FROM sessions WHERE session_id = ?", session_id)
        if not rows:
            return None
        sid, measurement, public_key, suite, models, secret, attested, expires, last = rows[0]
        secret = self._unseal("sessions", sid, "secret", secret)
        models = tuple(json.loads(models))
        return SessionRecord(
            sid, measurement, public_key, suite, models, secret, attested, expires, last
        )

    def renew_session(self, session_id: str, expires: float, timestamp_ms: int) -> bool:
        """Extend the lease if ``timestamp_ms`` is newer than the last renewal's (no replays)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE sessions SET expires = ?, last_renewal_ms = ? "
                "WHERE session_id = ? AND last_renewal_ms < ?",
                (expires, timestamp_ms, session_id, timestamp_ms),
            )
            return cursor.rowcount == 1

    # ---- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error."""
        with self._lock, _translated():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        with self._lock, _translated():
            return list(self._db.execute(sql, args).fetchall())

    def _seal(self, table: str, row_id: str, column: str, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, _aad(table, row_id, column))

    def _unseal(self, table: str, row_id: str, column: str, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(
                sealed[:_NONCE_SIZE], sealed[_NONCE_SIZE:], _aad(table, row_id, column)
            )
        except (InvalidTag, ValueError):
            log.error("keyservice store: %s.%s of row %r does not unseal", table, column, row_id)
            raise SealfnError("keyservice store is corrupt or was tampered with") from None

    def _migrate(self) -> None:
        with self._transaction() as db:
            exists = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not exists:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                return
            (version,) = db.execute("SELECT version FROM schema_version").fetchone()
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"keyservice store {self.path} has schema version {version}; "
                f"this sealfn reads version {SCHEMA_VERSION}"
            )

    def _check_canary(self) -> None:
        rows = self._read("SELECT value FROM meta WHERE name = 'canary'")
        if not rows:
            sealed = self._seal("meta", "canary", "value", _CANARY)
            with self._transaction() as db:
                db.execute("INSERT OR IGNORE INTO meta VALUES ('canary', ?)", (sealed,))
            rows = self._read("SELECT value FROM meta WHERE name = 'canary'")
        try:
            self._unseal("meta", "canary", "value", rows[0][0])
        except SealfnError:
            raise ConfigError(
                f"keyservice store {self.path} was sealed by another KeyService (another TEE "
                "platform or another measurement, e.g. other code); it cannot be opened here"
            ) from None


def _connect(path: Path) -> sqlite3.Connection:
    """A WAL-mode connection; a new file is created mode 0600 (its WAL and SHM files follow)."""
    try:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(f"cannot open keyservice store {path}: {exc}") from exc
    if mode not in ("wal", "memory"):
        db.close()
        raise ConfigError(f"keyservice store {path} cannot use WAL mode (got {mode!r})")
    return db


@contextmanager
def _translated() -> Iterator[None]:
    """sqlite3 errors become sealfn errors, here and nowhere else."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"keyservice store refused the write: {exc}") from exc
    except sqlite3.Error as exc:
        raise Unavailable(f"keyservice store failed: {exc}") from exc


def _aad(table: str, row_id: str, column: str) -> bytes:
    parts = (_AAD_DOMAIN, table.encode(), row_id.encode(), column.encode())
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)
