"""A local owner/user identity: a name, a kind and an Ed25519 signing key, kept in a 0600 file."""

from __future__ import annotations

import contextlib
import enum
import json
import os
import secrets
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealfn.errors import ConfigError, Conflict, NotFound
from sealfn.keyservice.auth import SignedCall, sign_call
from sealfn.keyservice.wire import check_id
from sealfn.privatefile import read_private_json

DEFAULT_DIR = Path("~/.sealfn/principals")
FILE_VERSION = 1


class PrincipalKind(enum.Enum):
    OWNER = "owner"  # uploads model keys and grants access to them
    USER = "user"  # is granted access to models


class Principal:
    """Who signs owner/user calls to the KeyService. The private key never leaves this object
    except into its own file."""

    def __init__(self, name: str, kind: PrincipalKind, private_key: Ed25519PrivateKey) -> None:
        self.name = check_id("principal name", name)
        self.kind = PrincipalKind(kind)
        self._key = private_key
        self._last_ms = 0  # timestamps strictly increase, so two calls never sign the same bytes
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Principal({self.name!r}, {self.kind.value})"

    @classmethod
    def generate(cls, name: str, kind: PrincipalKind) -> Principal:
        return cls(name, kind, Ed25519PrivateKey.generate())

    def sign_message(self, message: bytes) -> bytes:
        """A raw Ed25519 signature (64 bytes), e.g. over a sealed request's digest."""
        return self._key.sign(message)

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key the KeyService registers."""
        return self._key.public_key().public_bytes_raw()

    def sign(self, method: str, path: str, body: bytes, now: float | None = None) -> SignedCall:
        """A signed call; ``now`` in unix seconds (default: the clock)."""
        wanted = int((time.time() if now is None else now) * 1000)
        with self._lock:
            self._last_ms = max(wanted, self._last_ms + 1)
            timestamp = self._last_ms
        return sign_call(self._key, self.name, method, path, body, timestamp_ms=timestamp)

    # ---- the identity file ---------------------------------------------------------------

    @staticmethod
    def default_path(name: str) -> Path:
        return DEFAULT_DIR.expanduser() / f"{check_id('principal name', name)}.json"

    def save(self, path: Path | str | None = None, *, overwrite: bool = False) -> Path:
        """Write the identity, mode 0600, atomically; Conflict if the file exists (losing an
        identity's key loses the identity, so it is never replaced by accident)."""
        target = Path(path).expanduser() if path else self.default_path(self.name)
        if target.exists() and not overwrite:
            raise Conflict(f"{target} already exists; pass overwrite=True to replace it")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {
            "version": FILE_VERSION,
            "name": self.name,
            "kind": self.kind.value,
            "ed25519_private_key": self._key.private_bytes_raw().hex(),
        }
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(doc, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return target

    @classmethod
    def load(cls, name_or_path: str | Path) -> Principal:
        """The identity in a file (a path) or in the default folder (a bare name)."""
        text = str(name_or_path)
        is_path = isinstance(name_or_path, Path) or "/" in text or text.endswith(".json")
        path = Path(text).expanduser() if is_path else cls.default_path(text)
        try:
            doc = read_private_json(path, FILE_VERSION, "a principal file")
        except FileNotFoundError:
            raise NotFound(f"no principal file at {path}") from None
        try:
            key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["ed25519_private_key"]))
            return cls(doc["name"], PrincipalKind(doc["kind"]), key)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a principal file: {exc}") from exc
