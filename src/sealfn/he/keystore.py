"""Evaluation keys on the server: content-addressed files, ``<state_dir>/he-keys/<sha256>``.

Evaluation keys are public material (no secret key: the instance refuses keys that hold one),
so the untrusted gateway may store them. They are streamed to disk as they arrive (94-600 MiB)
and hashed on the way; the hash is the id every request refers to. A key set becomes visible
only when complete (written to ``.upload.*``, fsynced, renamed).

The store is bounded: a byte quota, and an expiry for key sets unused for ``ttl_s`` (each use
touches the file's mtime, so the order survives restarts). An upload that does not fit first
drops expired key sets, then the least recently used ones; key sets that requests in flight
refer to (pinned by the gateway) are never dropped. ``plan_eviction`` decides, pure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sealfn.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, StorageError
from sealfn.he.protocol import check_key_id

if TYPE_CHECKING:
    from sealfn.config import ServerConfig

KEYS_DIR = "he-keys"
UPLOAD_PREFIX = ".upload."
# bytes: an upload of undeclared length is checked against the quota this often (its temp file
# may overshoot by this much; the key set is checked exactly before it becomes visible)
RESERVE_STEP = 16 << 20


@dataclass(frozen=True)
class KeyPolicy:
    quota_bytes: int = 8 << 30  # ~13 key sets at N=16384 (594 MiB), ~85 at N=8192 (94 MiB)
    ttl_s: float = 86400.0  # a key set unused this long is deleted

    @classmethod
    def from_config(cls, config: ServerConfig) -> KeyPolicy:
        return cls(config.he_keys_quota_bytes, config.he_key_ttl_s)


@dataclass(frozen=True)
class Entry:
    key_id: str
    size: int  # bytes
    last_used: float  # seconds since the epoch


@dataclass(frozen=True)
class Eviction:
    expired: tuple[str, ...]  # unused for longer than the policy's ttl_s
    evicted: tuple[str, ...]  # least recently used, dropped to make room (empty unless ``fits``)
    fits: bool  # the incoming bytes fit the quota once these are gone


def plan_eviction(
    entries: Sequence[Entry], incoming: int, pinned: frozenset[str], policy: KeyPolicy, now: float
) -> Eviction:
    """What to delete so ``incoming`` more bytes fit: expired key sets always, then the least
    recently used unpinned ones, only if that makes enough room."""
    expired = tuple(
        e.key_id for e in entries if now - e.last_used > policy.ttl_s and e.key_id not in pinned
    )
    kept = sorted((e for e in entries if e.key_id not in expired), key=lambda e: e.last_used)
    used = sum(e.size for e in kept) + incoming
    evicted: list[str] = []
    for entry in kept:
        if used <= policy.quota_bytes:
            break
        if entry.key_id not in pinned:
            evicted.append(entry.key_id)
            used -= entry.size
    fits = used <= policy.quota_bytes
    return Eviction(expired, tuple(evicted) if fits else (), fits)


class KeyStore:
    """Reads (``path``) are safe from any process; writes and eviction belong to the gateway."""

    def __init__(self, state_dir: Path, policy: KeyPolicy | None = None) -> None:
        self.root = state_dir / KEYS_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.policy = policy or KeyPolicy()
        self._pins: Counter[str] = Counter()  # key id → requests in flight that use it
        self._claims: dict[str, int] = {}  # upload temp name → quota bytes it has claimed

    def path(self, key_id: str) -> Path:
        """The file of ``key_id``; ``NotFound`` if it was never uploaded (or was deleted)."""
        path = self.root / check_key_id(key_id)
        if not path.is_file():
            raise NotFound(f"evaluation keys {key_id} are not uploaded: PUT them to /v2/he/keys")
        return path

    def use(self, key_id: str, now: float | None = None) -> Path:
        """``path`` for a new use: expired key sets are deleted (``NotFound``), others touched."""
        path = self.path(key_id)
        now = time.time() if now is None else now
        try:
            if now - path.stat().st_mtime > self.policy.ttl_s and not self._pins[key_id]:
                path.unlink()
                raise NotFound(
                    f"evaluation keys {key_id} expired ({self.policy.ttl_s:.0f} s unused): "
                    "PUT them to /v2/he/keys again"
                )
            os.utime(path, (now, now))
        except FileNotFoundError as exc:  # evicted between the two calls
            raise NotFound(f"evaluation keys {key_id} are not uploaded") from exc
        return path

    @contextlib.contextmanager
    def pinned(self, key_id: str) -> Iterator[None]:
        """While inside, ``key_id`` is never expired or evicted (a request in flight uses it)."""
        self._pins[key_id] += 1
        try:
            yield
        finally:
            self._pins[key_id] -= 1
            if not self._pins[key_id]:
                del self._pins[key_id]

    def entries(self) -> list[Entry]:
        found = []
        for path in self.root.iterdir():
            if path.name.startswith(UPLOAD_PREFIX):
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                found.append(Entry(path.name, stat.st_size, stat.st_mtime))
        return found

    async def save(
        self, chunks: AsyncIterator[bytes], limit: int, expected: int | None = None
    ) -> str:
        """Stream ``chunks`` to disk (at most ``limit`` bytes) and return their id.

        ``expected`` (a declared content-length) is refused or claimed from the quota up front;
        otherwise the quota is checked every ``RESERVE_STEP`` bytes as they arrive.
        """
        limit = self._limit(limit)
        if expected is not None and expected > limit:
            raise self._too_large(limit)
        self._remove_stale_uploads()
        try:
            handle, name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=self.root)
        except OSError as exc:
            raise StorageError(f"cannot store evaluation keys: {exc.strerror or exc}") from exc
        upload = Path(name).name
        self._claims[upload] = 0
        try:
            with os.fdopen(handle, "wb") as out:
                key_id = await self._write(chunks, out, upload, limit, expected)
            os.replace(name, self.root / key_id)
        except OSError as exc:  # ENOSPC, EDQUOT, EROFS: the temp file goes, other keys stay
            raise StorageError(f"cannot store evaluation keys: {exc.strerror or exc}") from exc
        finally:
            del self._claims[upload]
            Path(name).unlink(missing_ok=True)
        self.use(key_id)
        return key_id

    async def _write(
        self,
        chunks: AsyncIterator[bytes],
        out: BinaryIO,
        upload: str,
        limit: int,
        expected: int | None,
    ) -> str:
        digest, size, checked = hashlib.sha256(), 0, 0
        if expected:
            self._claim(upload, expected)
            checked = expected
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise self._too_large(limit)
            if size > checked:  # undeclared length: make room every RESERVE_STEP bytes
                self._claim(upload, size)
                checked = size + RESERVE_STEP
            digest.update(chunk)
            out.write(chunk)
        if size == 0:
            raise InvalidInput("the body must be the evaluation keys")
        self._claim(upload, size)  # exact, before the key set becomes visible
        out.flush()
        os.fsync(out.fileno())
        return digest.hexdigest()

    def _claim(self, upload: str, total: int) -> None:
        """Make room for ``upload`` to hold ``total`` bytes, or raise ``StorageError`` (507)."""
        others = sum(b for name, b in self._claims.items() if name != upload)
        decision = plan_eviction(
            self.entries(), total + others, frozenset(self._pins), self.policy, time.time()
        )
        for key_id in decision.expired + decision.evicted:
            (self.root / key_id).unlink(missing_ok=True)
        if not decision.fits:
            raise StorageError(
                f"the evaluation-key store is full: its {self.policy.quota_bytes}-byte quota "
                "(he_keys_quota_bytes) is held by key sets in use; try again later"
            )
        self._claims[upload] = total

    def _limit(self, limit: int) -> int:
        return min(limit, self.policy.quota_bytes)

    def _too_large(self, limit: int) -> PayloadTooLarge:
        which = "he_keys_quota_bytes" if limit == self.policy.quota_bytes else "max_model_bytes"
        return PayloadTooLarge(f"evaluation keys exceed the {limit}-byte limit ({which})")

    def _remove_stale_uploads(self) -> None:
        """``.upload.*`` files no upload of this process owns: left by a crash."""
        for path in self.root.glob(UPLOAD_PREFIX + "*"):
            if path.name not in self._claims:
                path.unlink(missing_ok=True)

    def delete(self, key_id: str) -> None:
        if self._pins[check_key_id(key_id)]:
            raise Conflict(f"evaluation keys {key_id} are in use by a request in flight")
        self.path(key_id).unlink()
