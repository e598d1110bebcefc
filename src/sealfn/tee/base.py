"""The TEE backend interface, and the report-data binding every backend and the verifier share."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

from cryptography.hazmat.primitives import hashes

from sealfn.errors import AttestationError

Measurement: TypeAlias = bytes
"""An enclave identity: SHA-384 of a manifest (simulated), MRTD (TDX), MEASUREMENT (SNP) or
MRENCLAVE (SGX). 48 bytes, except SGX's 32."""

REPORT_DATA_SIZE = 64  # bytes: the user data field of a TDX/SGX quote and an SNP report
SEALING_KEY_SIZE = 32  # bytes
SEAL_INFO = b"sealfn seal"  # HKDF info prefix of sealing keys; the label follows
SIMULATED = "simulated"
HARDWARE = ("tdx", "sev-snp", "sgx-gramine")  # backend names that need TEE hardware

# Domain separation, so a report-data value can never be mistaken for another sealfn hash.
_REPORT_DATA_DOMAIN = b"sealfn report-data v1\x00"
_LENGTH = struct.Struct(">I")


@runtime_checkable
class TeeBackend(Protocol):
    """What an enclave asks of its TEE: who it is, evidence of that, and keys only it can derive."""

    name: str  # "simulated", "tdx", "sev-snp", "sgx-gramine"
    simulated: bool  # True: no isolation from the host; evidence is marked simulated

    def measurement(self) -> Measurement:
        """The enclave's identity, as the verifier will see it in the evidence."""
        ...

    def evidence(self, report_data: bytes) -> bytes:
        """Signed evidence of this enclave binding ``report_data`` (exactly 64 bytes)."""
        ...

    def sealing_key(self, label: bytes) -> bytes:
        """A 32-byte key for ``label`` that only an enclave with this measurement can derive."""
        ...


def report_data(public_key: bytes, nonce: bytes) -> bytes:
    """The 64 bytes an enclave puts in its evidence: SHA-512(len-prefixed public key ‖ nonce).

    The verifier recomputes this from the key it will wrap secrets to and the nonce it issued, so
    evidence is bound to both: fresh (the nonce) and to the one key only the enclave holds.
    """
    check_bytes("public_key", public_key)
    check_bytes("nonce", nonce)
    digest = hashes.Hash(hashes.SHA512())
    for part in (_REPORT_DATA_DOMAIN, public_key, nonce):
        digest.update(_LENGTH.pack(len(part)))
        digest.update(part)
    return digest.finalize()


def check_report_data(value: bytes) -> bytes:
    """``value`` if it is exactly 64 bytes; TypeError/ValueError otherwise (a caller's bug)."""
    check_bytes("report_data", value)
    if len(value) != REPORT_DATA_SIZE:
        raise ValueError(f"report_data must be {REPORT_DATA_SIZE} bytes, got {len(value)}")
    return bytes(value)


def check_bytes(name: str, value: object) -> None:
    """Fail early, with TypeError, on a non-bytes argument."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only, no NaN: one value, one byte string."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def read_device(path: Path) -> bytes:
    """The contents of a TEE pseudo-file; AttestationError naming it if it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AttestationError(f"cannot read {path}: {exc}") from exc


def write_device(path: Path, data: bytes) -> None:
    """Write a TEE pseudo-file in one write; AttestationError naming it if that fails."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise AttestationError(f"cannot write {path}: {exc}") from exc
