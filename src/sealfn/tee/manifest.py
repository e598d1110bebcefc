"""A canonical manifest of the enclave's code, config and runtime; its SHA-384 is the measurement.

The manifest lists, sorted, the path and SHA-256 of every ``.py`` file of the enclave's packages
(plus the ``__init__.py`` of each parent package, which Python runs on import), the enclave's
config, and the versions of the runtime it links (Python, onnxruntime, numpy, cryptography). It is
serialised as canonical JSON (sorted keys, no whitespace); one changed byte anywhere gives a new
measurement, and access lists bind to the measurement.

It measures source files as they are on disk when the manifest is built; an attacker who controls
the host can change them afterwards, which is one reason the simulated TEE isolates nothing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from sealfn.errors import ConfigError
from sealfn.tee.base import Measurement, canonical_json

VERSION = 1
DEFAULT_PACKAGES = (
    "sealfn.instance",
    "sealfn.envelope",
    "sealfn.tee",
    "sealfn.attestation",
    "sealfn.sealed_model",
    "sealfn.errors",
    "sealfn.ipc",
    "sealfn.types",  # imported by the modules above
    "sealfn.config",  # imported by sealfn/__init__.py, which every sealfn import runs
    "sealfn.privatefile",  # imported by sealfn.tee.simulated
)
RUNTIME_DISTRIBUTIONS = ("onnxruntime", "numpy", "cryptography")


@dataclass(frozen=True)
class Manifest:
    """What the enclave runs. Build it with :meth:`build`; it does no I/O afterwards."""

    files: tuple[tuple[str, str], ...]  # (path like "sealfn/tee/base.py", SHA-256 hex), sorted
    packages: tuple[str, ...]  # the requested packages that exist, in request order
    skipped: tuple[str, ...]  # the requested packages that do not exist (yet)
    config: Mapping[str, Any] = field(default_factory=dict)
    runtime: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        packages: Sequence[str] = DEFAULT_PACKAGES,
        config: Mapping[str, Any] | None = None,
        *,
        roots: Mapping[str, Path] | None = None,
    ) -> Manifest:
        """Hash the packages' files now; ``roots`` maps a package name to a folder (or a module
        name to a file) to read instead of where Python would import it from."""
        found: dict[str, str] = {}
        included, skipped = [], []
        for name in packages:
            source = (roots or {}).get(name) or _locate(name)
            if source is None:
                skipped.append(name)
                continue
            included.append(name)
            found.update(_hash_files(name, Path(source)))
            found.update(_parent_inits(name, roots or {}))
        config = dict(config or {})
        _check_json(config)
        return cls(tuple(sorted(found.items())), tuple(included), tuple(skipped), config, runtime())

    def to_json(self) -> str:
        """The canonical JSON that is measured."""
        return canonical_json(self._document()).decode("ascii")

    def measurement(self) -> Measurement:
        """SHA-384 of :meth:`to_json`: 48 bytes."""
        digest = hashes.Hash(hashes.SHA384())
        digest.update(self.to_json().encode("ascii"))
        return digest.finalize()

    def _document(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "packages": list(self.packages),
            "files": [list(entry) for entry in self.files],
            "config": dict(self.config),
            "runtime": dict(self.runtime),
        }


def runtime() -> dict[str, str]:
    """The interpreter and the versions of the libraries the enclave's results depend on."""
    versions = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _locate(name: str) -> Path | None:
    """The folder of package ``name``, the file of module ``name``, or None if neither exists."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a missing parent package, or a broken __spec__
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin) if spec.origin and spec.has_location else None


def _hash_files(name: str, source: Path) -> dict[str, str]:
    """{path under the import root: SHA-256 hex} for a package folder or a single module file."""
    prefix = name.replace(".", "/")
    if source.is_file():
        return {f"{prefix}.py": _sha256(source)}
    if not source.is_dir():
        raise ConfigError(f"manifest root for {name!r} is neither a file nor a folder: {source}")
    files = (p for p in source.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)
    return {f"{prefix}/{p.relative_to(source).as_posix()}": _sha256(p) for p in files}


def _parent_inits(name: str, roots: Mapping[str, Path]) -> dict[str, str]:
    """The ``__init__.py`` of every package above ``name``: importing ``name`` runs them."""
    parts = name.split(".")
    found = {}
    for depth in range(1, len(parts)):
        parent = ".".join(parts[:depth])
        folder = roots.get(parent) or _locate(parent)
        init = Path(folder) / "__init__.py" if folder else None
        if init is not None and init.is_file():
            found[f"{parent.replace('.', '/')}/__init__.py"] = _sha256(init)
    return found


def _sha256(path: Path) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(path.read_bytes())
    return digest.finalize().hex()


def _check_json(config: Mapping[str, Any]) -> None:
    try:
        canonical_json(config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"enclave config must be plain JSON data: {exc}") from exc
