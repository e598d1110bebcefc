"""The evaluation-key store's bounds: quota, expiry, LRU eviction of unpinned key sets, atomic
writes (``plan_eviction`` by table; ``KeyStore`` on a real folder)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sealfn.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, StorageError
from sealfn.he.keystore import Entry, Eviction, KeyPolicy, KeyStore, plan_eviction

POLICY = KeyPolicy(quota_bytes=1000, ttl_s=100.0)
NOW = 10_000.0
A, B, C = Entry("a", 400, NOW - 50), Entry("b", 300, NOW - 10), Entry("c", 200, NOW - 500)


@pytest.mark.parametrize(
    ("entries", "incoming", "pinned", "expected"),
    [
        ([A, B], 300, set(), Eviction((), (), True)),  # 1000 ≤ 1000: nothing to do
        ([A, B, C], 0, set(), Eviction(("c",), (), True)),  # expired even with room
        ([A, B, C], 0, {"c"}, Eviction((), (), True)),  # a pinned key set never expires
        ([A, B], 500, set(), Eviction((), ("a",), True)),  # least recently used first
        ([A, B], 500, {"a"}, Eviction((), ("b",), True)),  # ... unless pinned
        ([A, B], 900, {"a"}, Eviction((), (), False)),  # cannot fit: evict nothing
        ([A, B, C], 900, {"a"}, Eviction(("c",), (), False)),  # but still expire
        ([A, B], 1000, set(), Eviction((), ("a", "b"), True)),
        ([], 1001, set(), Eviction((), (), False)),
    ],
)
def test_plan_eviction(
    entries: list[Entry], incoming: int, pinned: set[str], expected: Eviction
) -> None:
    assert plan_eviction(entries, incoming, frozenset(pinned), POLICY, NOW) == expected


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _save(store: KeyStore, data: bytes, declared: bool = True) -> str:
    chunks = [data[i : i + 256] for i in range(0, len(data), 256)]
    expected = len(data) if declared else None
    return asyncio.run(store.save(_stream(chunks), 1 << 20, expected))


def _age(store: KeyStore, key_id: str, seconds: float) -> None:
    then = store.path(key_id).stat().st_mtime - seconds
    os.utime(store.path(key_id), (then, then))


def test_over_quota_the_least_recently_used_key_set_goes(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, KeyPolicy(quota_bytes=3000))
    first, second = _save(store, b"1" * 1000), _save(store, b"2" * 1000)
    _age(store, first, 60)
    _age(store, second, 30)
    store.use(first)  # first is now the most recently used
    third = _save(store, b"3" * 1500, declared=False)
    assert sorted(e.key_id for e in store.entries()) == sorted([first, third])
    assert store.path(third).read_bytes() == b"3" * 1500
    assert hashlib.sha256(store.path(first).read_bytes()).hexdigest() == first


def test_a_key_set_larger_than_the_quota_is_413(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, KeyPolicy(quota_bytes=3000))
    kept = _save(store, b"k" * 1000)
    for declared in (True, False):
        with pytest.raises(PayloadTooLarge, match=r"3000-byte limit \(he_keys_quota_bytes\)"):
            _save(store, b"x" * 3001, declared)
    assert [e.key_id for e in store.entries()] == [kept]
    assert [p.name for p in store.root.iterdir()] == [kept]  # no partial upload left


def test_pinned_key_sets_are_kept_and_a_full_store_is_507(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, KeyPolicy(quota_bytes=3000))
    first, second = _save(store, b"1" * 1000), _save(store, b"2" * 1000)
    with store.pinned(first), store.pinned(second):
        with pytest.raises(StorageError, match="store is full"):
            _save(store, b"3" * 1500)
        with pytest.raises(StorageError, match="store is full"):
            _save(store, b"3" * 1500, declared=False)
        with pytest.raises(Conflict, match="in use"):
            store.delete(first)
    assert sorted(e.key_id for e in store.entries()) == sorted([first, second])
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []
    _save(store, b"3" * 1500)  # unpinned again: room is made


def test_unused_key_sets_expire(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, KeyPolicy(ttl_s=100.0))
    key_id = _save(store, b"k" * 100)
    later = store.path(key_id).stat().st_mtime + 101
    with store.pinned(key_id):
        store.use(key_id, now=later)  # in use: kept, and touched
    with pytest.raises(NotFound, match="expired"):
        store.use(key_id, now=later + 101)
    assert store.entries() == []


def test_stale_partial_uploads_are_removed_and_never_listed(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    stale = store.root / ".upload.crashed"
    stale.write_bytes(b"half a key")
    assert store.entries() == []
    with pytest.raises(InvalidInput, match="not a hex SHA-256"):
        store.path(".upload.crashed")
    _save(store, b"k" * 10)
    assert not stale.exists()
