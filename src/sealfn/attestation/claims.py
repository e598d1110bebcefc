"""The claims verification establishes about an attester: the only view of evidence to act on."""

from __future__ import annotations

from dataclasses import dataclass

from sealfn.tee.base import Measurement


@dataclass(frozen=True, slots=True)
class Claims:
    """What :func:`sealfn.attestation.verify` proved about an enclave.

    Key release and every other decision downstream read these, never the raw evidence: a field
    is here only once its signature chain, freshness, binding and policy have been checked.
    """

    tee: str  # "simulated", "tdx", "sev-snp", "sgx-gramine"
    simulated: bool  # True: no hardware vouches for any of this
    debug: bool  # True: the host can read the enclave's memory
    measurement: Measurement  # 48 bytes (32 for SGX)
    report_data: bytes  # 64 bytes: report_data(enclave public key, verifier nonce)
    issued_at: float  # unix time the evidence was made, seconds
    platform: str  # who vouches: the simulated root's SHA-256 fingerprint (hex)
