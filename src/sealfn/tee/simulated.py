"""The simulated TEE: behaves like hardware so a real backend slots in, and isolates NOTHING.

A :class:`SimulatedPlatform` plays the role of the CPU vendor and the platform: an Ed25519 root key
(the "vendor"), an attestation key certified by the root (the "quoting enclave"), and a 32-byte
platform secret (the "fused key" sealing keys come from). :class:`SimulatedTee` is one enclave on
it: its measurement is the SHA-384 of a :class:`~sealfn.tee.manifest.Manifest`; its evidence is a
token signed by the attestation key; its sealing keys are HKDF(platform secret, measurement).

It gives NO isolation from a malicious host: the platform's keys lie in a file the host can read,
and the "enclave" is an ordinary process the host can inspect and patch. So every token says
``"simulated": true, "debug": true``, and verifiers refuse it unless configured to accept
simulated evidence from this particular root. Use it for development, tests and demos only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfn.errors import AttestationError, ConfigError
from sealfn.privatefile import read_private_json
from sealfn.tee.base import (
    SEAL_INFO,
    SEALING_KEY_SIZE,
    SIMULATED,
    Measurement,
    canonical_json,
    check_bytes,
    check_report_data,
)
from sealfn.tee.evidence import (
    TOKEN_DOMAIN,
    VERSION,
    Certificate,
    Evidence,
    encode_claims,
    fingerprint,
    sign,
)
from sealfn.tee.manifest import DEFAULT_PACKAGES, Manifest

DEFAULT_DIR = Path("~/.sealfn/simulated-platform")
PLATFORM_FILE = "platform.json"
SECRET_SIZE = 32  # bytes


class SimulatedPlatform:
    """A simulated root of trust: root key, certified attestation key, platform secret."""

    def __init__(
        self,
        root: Ed25519PrivateKey,
        attestation_key: Ed25519PrivateKey,
        certificate: bytes,
        secret: bytes,
    ) -> None:
        if len(secret) != SECRET_SIZE:
            raise ConfigError(f"simulated platform secret must be {SECRET_SIZE} bytes")
        self._root = root
        self._attestation_key = attestation_key
        self.certificate = certificate  # the root's signature over the attestation key
        self._secret = secret
        self.fingerprint = fingerprint(root.public_key())

    @classmethod
    def create(cls, *, now: float | None = None) -> SimulatedPlatform:
        """A fresh platform in memory (nothing persisted)."""
        root, attestation_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        issued_at = time.time() if now is None else now
        subject = attestation_key.public_key().public_bytes_raw()
        certificate = Certificate(subject, fingerprint(root.public_key()), issued_at).sign(root)
        return cls(root, attestation_key, certificate, secrets.token_bytes(SECRET_SIZE))

    @classmethod
    def load_or_create(cls, directory: Path | str | None = None) -> SimulatedPlatform:
        """The platform persisted in ``directory`` (default ``~/.sealfn/simulated-platform``),
        created there atomically, mode 0600, if it does not exist yet."""
        folder = Path(directory or DEFAULT_DIR).expanduser()
        path = folder / PLATFORM_FILE
        if not path.exists():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _publish(path, canonical_json(cls.create()._to_json()))
        return cls._load(path)

    def root_public_key(self) -> bytes:
        """The raw Ed25519 public key a verifier must trust to accept this platform's evidence."""
        return self._root.public_key().public_bytes_raw()

    def sign_token(self, body: bytes) -> bytes:
        """``body`` signed by the attestation key."""
        return sign(self._attestation_key, TOKEN_DOMAIN, body)

    def derive_key(self, *, salt: bytes, info: bytes) -> bytes:
        """HKDF-SHA256 of the platform secret: 32 bytes."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=SEALING_KEY_SIZE, salt=salt, info=info)
        return hkdf.derive(self._secret)

    def _to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "root_key": self._root.private_bytes_raw().hex(),
            "attestation_key": self._attestation_key.private_bytes_raw().hex(),
            "certificate": self.certificate.hex(),
            "secret": self._secret.hex(),
        }

    @classmethod
    def _load(cls, path: Path) -> SimulatedPlatform:
        doc = read_private_json(path, VERSION, "a simulated platform file")
        try:
            root = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["root_key"]))
            key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["attestation_key"]))
            platform = cls(
                root, key, bytes.fromhex(doc["certificate"]), bytes.fromhex(doc["secret"])
            )
        except (ValueError, KeyError, TypeError, ConfigError) as exc:
            raise ConfigError(f"{path} is not a simulated platform file: {exc}") from exc
        try:
            Certificate.open(platform.certificate, root.public_key())
        except AttestationError as exc:
            raise ConfigError(f"{path} holds a certificate its root did not sign") from exc
        return platform


class SimulatedTee:
    """One simulated enclave: the code in ``manifest``, on ``platform``. NO isolation (see module).

    ``clock`` gives the evidence's issue time (unix seconds); tests inject it.
    """

    name = SIMULATED
    simulated = True

    def __init__(
        self,
        platform: SimulatedPlatform,
        manifest: Manifest,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.platform = platform
        self.manifest = manifest
        self._measurement = manifest.measurement()
        self._clock = clock

    def measurement(self) -> Measurement:
        return self._measurement

    def evidence(self, report_data: bytes) -> bytes:
        claims = {
            "version": VERSION,
            "tee": SIMULATED,
            "simulated": True,  # every claim here is simulated: no hardware vouches for it
            "debug": True,  # and, like a debug enclave, the host can read its memory
            "measurement": self._measurement.hex(),
            "report_data": check_report_data(report_data).hex(),
            "iat": self._clock(),
            "platform": self.platform.fingerprint,
        }
        token = self.platform.sign_token(encode_claims(claims))
        return Evidence(SIMULATED, token, (self.platform.certificate,)).to_bytes()

    def sealing_key(self, label: bytes) -> bytes:
        """HKDF-SHA256(platform secret, salt=measurement, info="sealfn seal" ‖ label)."""
        check_bytes("label", label)
        return self.platform.derive_key(salt=self._measurement, info=SEAL_INFO + bytes(label))


def create(
    platform_dir: Path | str | None = None,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    config: Mapping[str, Any] | None = None,
) -> SimulatedTee:
    """A simulated enclave of these packages and config on the persisted platform."""
    platform = SimulatedPlatform.load_or_create(platform_dir)
    return SimulatedTee(platform, Manifest.build(packages, config))


def _publish(path: Path, content: bytes) -> None:
    """Write ``path`` once, atomically, mode 0600; if another process won the race, keep its."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)  # atomic, and never replaces an existing platform
    finally:
        temporary.unlink(missing_ok=True)
