"""The untrusted model store: sealed model blobs by model id, on local disk or any fsspec URL.

The store only ever holds ciphertext (see `sealfn.sealed_model`); it cannot read a model, only lose
or damage one. So each object is ``SHA-256(blob) (32 bytes) | blob``: `put` returns the digest as an
etag (``"sha256:<hex>"``) and `get` verifies it, turning a damaged or torn object into a clear
`ModelError` before an enclave spends a key on it.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib
import os
import posixpath
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from sealfn.errors import ConfigError, ModelError, NotFound, Unavailable

SUFFIX = ".sealed"  # object name = model id + SUFFIX
DIGEST_SIZE = 32  # bytes of SHA-256 in front of each blob
MAX_MODEL_ID_LENGTH = 128  # characters
# A safe file and object name on every platform: no separators, no leading dot, no "..".
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ModelStore(Protocol):
    """Where sealed models live. Every method names the model by a safe id (`check_model_id`)."""

    def put(self, model_id: str, data: bytes) -> str:
        """Store ``data`` under ``model_id``, replacing any old blob; return its digest."""
        ...

    def get(self, model_id: str) -> bytes:
        """The blob stored under ``model_id``; `NotFound` if none, `ModelError` if damaged."""
        ...

    def exists(self, model_id: str) -> bool: ...

    def delete(self, model_id: str) -> None:
        """Remove the blob; `NotFound` if there is none."""
        ...

    def list(self) -> builtins.list[str]:
        """The stored model ids, sorted."""
        ...


def open_store(url_or_path: str | os.PathLike[str]) -> ModelStore:
    """A plain path or ``file://`` URL gives a `LocalModelStore`; any other scheme, fsspec's."""
    if not isinstance(url_or_path, str | os.PathLike):
        raise TypeError(f"url_or_path must be a str or path, not {type(url_or_path)}")
    text = os.fspath(url_or_path)
    if "://" not in text:
        return LocalModelStore(Path(text))
    parts = urlsplit(text)
    if parts.scheme != "file":
        return FsspecModelStore(text)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"model store {text!r}: a file:// URL must name a local path")
    return LocalModelStore(Path(unquote(parts.path)))


def check_model_id(model_id: object) -> str:
    """``model_id`` if it is a safe object name, else `ConfigError` naming the bad value."""
    if not isinstance(model_id, str):
        raise TypeError(f"model_id must be str, not {type(model_id)}")
    if len(model_id) > MAX_MODEL_ID_LENGTH or not _MODEL_ID.fullmatch(model_id):
        raise ConfigError(
            f"model id {model_id!r} is not allowed: use 1 to {MAX_MODEL_ID_LENGTH} of "
            "A-Z a-z 0-9 . _ - starting with a letter or digit"
        )
    return model_id


def blob_digest(data: bytes | bytearray | memoryview) -> str:
    """The etag `ModelStore.put` returns for ``data``."""
    return _etag(hashlib.sha256(data).digest())


def write_atomic(path: Path, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
    """Write ``chunks`` to a temporary file beside ``path``, fsync it, then ``os.replace`` it there.

    Readers see the old file or the whole new one, never a part, even across a crash.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the content is ciphertext or public
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class LocalModelStore:
    """Sealed models as files ``<root>/<model id>.sealed``, each written atomically."""

    def __init__(self, root: Path) -> None:
        if not isinstance(root, str | os.PathLike):
            raise TypeError(f"root must be a path, not {type(root)}")
        self.root = Path(root)

    def put(self, model_id: str, data: bytes) -> str:
        path, payload = self._path(model_id), _check_data(data)
        digest = hashlib.sha256(payload).digest()
        with _store_io(str(self.root)):
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(path, (digest, payload))
        return _etag(digest)

    def get(self, model_id: str) -> bytes:
        path = self._path(model_id)
        with _store_io(str(self.root), model_id), path.open("rb") as f:
            return _read_verified(model_id, f)

    def exists(self, model_id: str) -> bool:
        path = self._path(model_id)
        with _store_io(str(self.root)):
            return path.is_file()

    def delete(self, model_id: str) -> None:
        path = self._path(model_id)
        with _store_io(str(self.root), model_id):
            path.unlink()

    def list(self) -> builtins.list[str]:
        with _store_io(str(self.root)):
            if not self.root.is_dir():
                return []
            return _model_ids(entry.name for entry in self.root.iterdir() if entry.is_file())

    def _path(self, model_id: str) -> Path:
        return self.root / f"{check_model_id(model_id)}{SUFFIX}"


class FsspecModelStore:
    """Sealed models as objects ``<url>/<model id>.sealed`` on any fsspec file system (s3://, ...).

    Needs the optional fsspec package (and the backend's own, e.g. s3fs), imported only here. An
    object appears when its upload closes on object stores; elsewhere a torn write is caught by the
    digest on `get`.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be str, not {type(url)}")
        core = _import_fsspec(url)
        try:
            fs, root = core.url_to_fs(url, **storage_options)
        except (ImportError, ValueError) as exc:  # a backend package is missing / unknown scheme
            raise ConfigError(f"model store {url!r}: {exc}") from exc
        self.url = url
        self._fs: Any = fs
        self._root: str = str(root).rstrip("/")

    def put(self, model_id: str, data: bytes) -> str:
        path, payload = self._path(model_id), _check_data(data)
        digest = hashlib.sha256(payload).digest()
        with _store_io(self.url):
            self._fs.makedirs(self._root, exist_ok=True)
            with self._fs.open(path, "wb") as f:
                f.write(digest)
                f.write(payload)
        return _etag(digest)

    def get(self, model_id: str) -> bytes:
        path = self._path(model_id)
        with _store_io(self.url, model_id), self._fs.open(path, "rb") as f:
            return _read_verified(model_id, f)

    def exists(self, model_id: str) -> bool:
        path = self._path(model_id)
        with _store_io(self.url):
            return bool(self._fs.exists(path))

    def delete(self, model_id: str) -> None:
        path = self._path(model_id)
        with _store_io(self.url, model_id):
            if not self._fs.exists(path):
                raise FileNotFoundError(path)
            self._fs.rm(path)

    def list(self) -> builtins.list[str]:
        with _store_io(self.url):
            try:
                paths: builtins.list[str] = self._fs.ls(self._root, detail=False)
            except FileNotFoundError:
                return []
        return _model_ids(posixpath.basename(p.rstrip("/")) for p in paths)

    def _path(self, model_id: str) -> str:
        return f"{self._root}/{check_model_id(model_id)}{SUFFIX}"


def _import_fsspec(url: str) -> Any:
    try:
        return importlib.import_module("fsspec.core")
    except ImportError as exc:
        raise ConfigError(
            f"model store {url!r} needs the optional fsspec package: pip install fsspec"
        ) from exc


@contextlib.contextmanager
def _store_io(location: str, model_id: str | None = None) -> Iterator[None]:
    """Translate the file system's errors: a missing model is `NotFound`, the rest `Unavailable`."""
    try:
        yield
    except FileNotFoundError as exc:
        if model_id is None:
            raise Unavailable(f"model store {location!r}: {exc}") from exc
        raise NotFound(f"model {model_id!r} is not in the store {location!r}") from exc
    except OSError as exc:
        raise Unavailable(f"model store {location!r}: {exc}") from exc


def _read_verified(model_id: str, f: BinaryIO) -> bytes:
    stored = f.read(DIGEST_SIZE)
    data: bytes = f.read()
    actual = hashlib.sha256(data).digest()
    if len(stored) != DIGEST_SIZE or stored != actual:
        raise ModelError(
            f"model {model_id!r} in the store is corrupt: its SHA-256 is {actual.hex()}, "
            f"but {stored.hex() or 'nothing'} was stored"
        )
    return data


def _model_ids(names: Iterable[str]) -> builtins.list[str]:
    ids = (name.removesuffix(SUFFIX) for name in names if name.endswith(SUFFIX))
    return sorted(i for i in ids if len(i) <= MAX_MODEL_ID_LENGTH and _MODEL_ID.fullmatch(i))


def _check_data(data: object) -> bytes | bytearray | memoryview:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes-like, not {type(data)}")
    return data


def _etag(digest: bytes) -> str:
    return f"sha256:{digest.hex()}"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
