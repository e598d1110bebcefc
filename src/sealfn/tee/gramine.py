"""Intel SGX enclaves under Gramine, through its ``/dev/attestation`` pseudo-files.

``attestation_type`` says "dcap" or "epid" when remote attestation is enabled (``sgx.remote_
attestation`` in the Gramine manifest); writing 64 bytes to ``user_report_data`` and reading
``quote`` gives an SGX quote over them; ``keys/_sgx_mrenclave`` is the 16-byte SGX seal key bound
to MRENCLAVE, from which sealing keys are derived with HKDF. (``my_target_info``, ``target_info``
and ``report`` serve local attestation, which sealfn does not use.)

Where the hardware is absent the backend fails closed: it raises :class:`AttestationError` naming
the missing pseudo-file; it never falls back to the simulated TEE.

Verifying this evidence needs Intel DCAP quote verification (QVL/QVE) with Intel's collateral
(TCB info, QE identity, CRLs) and the PCK certificate chain up to Intel's SGX root CA (EPID
quotes: Intel's attestation service). sealfn's verifier does NOT implement hardware-quote
verification yet: it rejects sgx-gramine evidence until a verifier plugin exists and is configured.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfn.errors import AttestationError
from sealfn.tee.base import (
    SEAL_INFO,
    SEALING_KEY_SIZE,
    Measurement,
    check_bytes,
    check_report_data,
    read_device,
    write_device,
)
from sealfn.tee.evidence import Evidence
from sealfn.tee.quotes import sgx_quote

ATTESTATION_DEV = Path("/dev/attestation")
SEAL_KEY = "keys/_sgx_mrenclave"
REMOTE_TYPES = ("dcap", "epid")


class GramineTee:
    """This process as a Gramine SGX enclave; ``root`` is ``/dev/attestation`` (tests move it)."""

    name = "sgx-gramine"
    simulated = False

    def __init__(self, *, root: Path = ATTESTATION_DEV) -> None:
        kind_file = root / "attestation_type"
        if not kind_file.is_file():
            raise AttestationError(
                f"TEE backend sgx-gramine is unavailable: {kind_file} does not exist "
                "(not running inside a Gramine SGX enclave, i.e. under gramine-sgx)"
            )
        kind = read_device(kind_file).decode(errors="replace").strip()
        if kind not in REMOTE_TYPES:
            raise AttestationError(
                f"Gramine attestation_type is {kind!r}: enable remote attestation "
                '(sgx.remote_attestation = "dcap" in the Gramine manifest)'
            )
        self._root = root
        self._lock = threading.Lock()  # user_report_data then quote: one writer at a time
        self._measurement: bytes | None = None

    def measurement(self) -> Measurement:
        """MRENCLAVE (32 bytes), read from a quote over all-zero report data."""
        if self._measurement is None:
            self._measurement = sgx_quote(self._quote(bytes(64))).measurement
        return self._measurement

    def evidence(self, report_data: bytes) -> bytes:
        data = check_report_data(report_data)
        quote = self._quote(data)
        if sgx_quote(quote).report_data != data:
            raise AttestationError("Gramine returned a quote for other report data")
        return Evidence(self.name, quote).to_bytes()

    def sealing_key(self, label: bytes) -> bytes:
        """HKDF-SHA256(SGX MRENCLAVE seal key, salt=MRENCLAVE, info="sealfn seal" ‖ label)."""
        check_bytes("label", label)
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=SEALING_KEY_SIZE,
            salt=self.measurement(),
            info=SEAL_INFO + bytes(label),
        )
        return hkdf.derive(read_device(self._root / SEAL_KEY))

    def _quote(self, data: bytes) -> bytes:
        with self._lock:
            write_device(self._root / "user_report_data", data)
            return read_device(self._root / "quote")
