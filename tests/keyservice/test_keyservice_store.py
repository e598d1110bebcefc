"""The KeyService store: round trips, secrets sealed at rest, atomic writes, wrong keys refused."""

from __future__ import annotations

import base64
import secrets
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from sealfn.errors import ConfigError, Conflict, SealfnError, Unavailable
from sealfn.keyservice.principal import PrincipalKind
from sealfn.keyservice.store import (
    SCHEMA_VERSION,
    ModelRecord,
    PrincipalRecord,
    SessionRecord,
    Store,
)

NOW = 1_800_000_000.0


def key() -> bytes:
    return secrets.token_bytes(32)


def model(model_id: str = "m", owner: str = "acme") -> ModelRecord:
    return ModelRecord(model_id, owner, key(), 1, key(), key(), NOW)


def session(session_id: str = "s1", expires: float = NOW + 4) -> SessionRecord:
    return SessionRecord(session_id, b"\x01" * 48, key(), 1, ("m",), key(), NOW, expires)


def principal(name: str = "acme", kind: PrincipalKind = PrincipalKind.OWNER) -> PrincipalRecord:
    return PrincipalRecord(name, kind, key(), NOW)


@pytest.fixture
def sealing_key() -> bytes:
    return key()


@pytest.fixture
def store(tmp_path: Path, sealing_key: bytes) -> Store:
    opened = Store(tmp_path / "ks.db", sealing_key)
    opened.add_principal(principal())
    opened.add_principal(principal("alice", PrincipalKind.USER))
    return opened


def test_round_trip_survives_reopening(tmp_path: Path, sealing_key: bytes) -> None:
    path = tmp_path / "ks.db"
    with Store(path, sealing_key) as store:
        owner = store.add_principal(principal())
        store.add_principal(principal("alice", PrincipalKind.USER))
        stored = store.add_model(model())
        store.put_grant("m", "alice", {b"\x02" * 48, b"\x03" * 32}, NOW)
        store.add_session(session(), prune_before=0)
        service_pair = store.add_service_keypair(1, key(), key())
    with Store(path, sealing_key) as store:
        assert store.principal("acme") == owner
        assert store.model("m") == stored
        assert store.model("m").model_key == stored.model_key  # type: ignore[union-attr]
        [grant] = store.grants("m")
        assert (grant.user_id, grant.measurements) == ("alice", {b"\x02" * 48, b"\x03" * 32})
        assert store.service_keypair(1) == service_pair
        assert store.session("s1") is not None
        assert store.principal("nobody") is None
        assert store.model("nothing") is None


def test_insert_if_absent_returns_the_first_record(store: Store) -> None:
    first = store.add_model(model())
    assert store.add_model(model()) == first
    second = principal()
    assert store.add_principal(second).public_key != second.public_key


def test_the_database_files_never_hold_a_secret_in_clear(
    tmp_path: Path, sealing_key: bytes
) -> None:
    path = tmp_path / "ks.db"
    store = Store(path, sealing_key)
    store.add_principal(principal())
    record = store.add_model(model())
    live = session()
    store.add_session(live, prune_before=0)
    _, service_private = store.add_service_keypair(1, key(), key())
    secrets_ = [record.model_key, record.private_key, live.secret, service_private]
    assert store.model("m") == record  # readable through the store…

    def scan() -> None:
        files = [p for p in tmp_path.iterdir() if p.name.startswith("ks.db")]
        raw = b"".join(p.read_bytes() for p in files)
        assert record.public_key in raw  # …public values are there in clear, as a control
        for secret in secrets_:
            for form in (secret, secret.hex().encode(), base64.b64encode(secret)):
                assert form not in raw

    scan()  # with the WAL holding the writes
    store.close()
    scan()  # after the checkpoint on close


def test_a_copied_store_is_useless_under_another_sealing_key(
    store: Store, tmp_path: Path, sealing_key: bytes
) -> None:
    store.add_model(model())
    store.close()
    copy = tmp_path / "copy.db"
    shutil.copy(tmp_path / "ks.db", copy)
    with pytest.raises(ConfigError, match="sealed by another KeyService"):
        Store(copy, key())
    with Store(copy, sealing_key) as same:  # the right key still opens the copy
        assert same.model("m") is not None


def test_a_sealed_value_moved_to_another_row_does_not_unseal(
    store: Store, sealing_key: bytes
) -> None:
    store.add_model(model("a"))
    store.add_model(model("b"))
    store.close()
    with sqlite3.connect(store.path) as db:
        (stolen,) = db.execute("SELECT model_key FROM models WHERE model_id = 'a'").fetchone()
        db.execute("UPDATE models SET model_key = ? WHERE model_id = 'b'", (stolen,))
    reopened = Store(store.path, sealing_key)
    with pytest.raises(SealfnError, match="corrupt or was tampered"):
        reopened.model("b")
    assert reopened.model("a") is not None


def test_a_failed_write_leaves_nothing_behind(store: Store) -> None:
    store.add_session(session("old", expires=NOW - 100), prune_before=0)
    store.add_session(session("s1"), prune_before=0)
    # Pruning "old" and inserting a duplicate id run in one transaction: the insert fails, so the
    # prune must be rolled back too.
    with pytest.raises(Conflict):
        store.add_session(session("s1"), prune_before=NOW)
    assert store.session("old") is not None
    with pytest.raises(Conflict):  # a grant naming an unknown model breaks a foreign key
        store.put_grant("no-such-model", "alice", {b"\x01" * 48}, NOW)
    assert store.grants("no-such-model", include_revoked=True) == []


def test_challenges_are_single_use_and_expire(store: Store) -> None:
    store.add_challenge(b"n1", NOW, ttl_s=60, limit=10)
    store.add_challenge(b"n2", NOW, ttl_s=60, limit=10)
    assert store.use_challenge(b"n1", NOW + 1, ttl_s=60)
    assert not store.use_challenge(b"n1", NOW + 2, ttl_s=60)  # used
    assert not store.use_challenge(b"n2", NOW + 61, ttl_s=60)  # expired
    assert not store.use_challenge(b"never-issued", NOW, ttl_s=60)


def test_outstanding_challenges_are_capped(store: Store) -> None:
    for i in range(3):
        store.add_challenge(bytes([i]), NOW, ttl_s=60, limit=3)
    with pytest.raises(Unavailable):
        store.add_challenge(b"more", NOW, ttl_s=60, limit=3)
    store.add_challenge(b"later", NOW + 61, ttl_s=60, limit=3)  # the old ones expired


def test_calls_are_remembered_for_their_window(store: Store) -> None:
    assert store.remember_call(b"k", NOW, ttl_s=120)
    assert not store.remember_call(b"k", NOW + 119, ttl_s=120)
    assert store.remember_call(b"k", NOW + 121, ttl_s=120)


def test_revocation_is_recorded_and_regrant_clears_it(store: Store) -> None:
    store.add_model(model())
    store.put_grant("m", "alice", {b"\x01" * 48}, NOW)
    assert store.revoke_grant("m", "alice", NOW + 1)
    assert not store.revoke_grant("m", "alice", NOW + 2)
    assert store.grants("m") == []
    [revoked] = store.grants("m", include_revoked=True)
    assert revoked.revoked_at == NOW + 1
    store.put_grant("m", "alice", {b"\x02" * 48}, NOW + 3)
    [active] = store.grants("m")
    assert active.measurements == {b"\x02" * 48}


def test_renewal_timestamps_must_increase(store: Store) -> None:
    store.add_session(session(), prune_before=0)
    assert store.renew_session("s1", NOW + 10, 1000)
    assert not store.renew_session("s1", NOW + 20, 1000)  # replayed
    assert store.renew_session("s1", NOW + 20, 1001)
    assert store.session("s1").expires == NOW + 20  # type: ignore[union-attr]
    assert not store.renew_session("unknown", NOW, 5000)


def test_wal_mode_private_file_and_schema_version(store: Store) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_is_refused(store: Store, sealing_key: bytes) -> None:
    store.close()
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match="schema version"):
        Store(store.path, sealing_key)


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="cannot open keyservice store"):
        Store(path, key())
