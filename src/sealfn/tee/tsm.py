"""Intel TDX and AMD SEV-SNP guests, through Linux configfs-tsm (``/sys/kernel/config/tsm/report``).

One report: make a directory under ``report/``, write the 64-byte report data to ``inblob``, read
``outblob`` (a TDX quote, or an SNP attestation report) and ``auxblob`` (SNP: the certificate
table, if the host supplies one), read ``provider`` ("tdx_guest" / "sev_guest"), and compare
``generation`` before and after to detect another writer racing on the same directory.

Where the hardware is absent the backend fails closed: it raises :class:`AttestationError` naming
the missing path; it never falls back to the simulated TEE (only ``backend("auto")`` does that).

Verifying this evidence needs, for TDX, Intel DCAP quote verification (QVL/QVE) with Intel's
collateral (TCB info, QE identity, CRLs) and the PCK certificate chain up to Intel's SGX root CA;
for SNP, the VCEK (or VLEK) certificate and AMD's ARK → ASK chain for the CPU family, plus the
TCB and policy checks. sealfn's verifier does NOT implement hardware-quote verification yet: it
rejects tdx and sev-snp evidence until a verifier plugin for them exists and is configured.

There is no sealing-key interface in configfs-tsm: :meth:`TsmTee.sealing_key` raises. Derive
sealing keys from a secret the KeyService releases after attestation instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from sealfn.errors import AttestationError
from sealfn.tee.base import (
    Measurement,
    check_bytes,
    check_report_data,
    read_device,
    write_device,
)
from sealfn.tee.evidence import Evidence
from sealfn.tee.quotes import ReportFields, snp_report, tdx_quote

TSM_REPORT = Path("/sys/kernel/config/tsm/report")
PROVIDERS = {"tdx_guest": "tdx", "sev_guest": "sev-snp"}  # configfs provider → backend name
_PARSERS = {"tdx": tdx_quote, "sev-snp": snp_report}


class TsmTee:
    """A TDX or SEV-SNP guest; ``expect`` ("tdx" / "sev-snp") refuses the other one."""

    simulated = False

    def __init__(self, expect: str | None = None, *, root: Path = TSM_REPORT) -> None:
        if not root.is_dir():
            raise AttestationError(
                f"TEE backend {expect or 'tdx/sev-snp'} is unavailable: {root} does not exist "
                "(not a TDX or SEV-SNP guest, or configfs is not mounted at /sys/kernel/config)"
            )
        self._root = root
        self._lock = threading.Lock()  # one report at a time per process: generation stays exact
        self.name = self._provider()
        if expect is not None and expect != self.name:
            raise AttestationError(f"asked for a {expect} TEE, but configfs-tsm offers {self.name}")
        self._measurement: bytes | None = None

    def measurement(self) -> Measurement:
        """MRTD (TDX) or MEASUREMENT (SNP), read from a report with all-zero report data."""
        if self._measurement is None:
            self._measurement = self._fields(self._report(bytes(64))[0]).measurement
        return self._measurement

    def evidence(self, report_data: bytes) -> bytes:
        data = check_report_data(report_data)
        outblob, auxblob = self._report(data)
        if self._fields(outblob).report_data != data:
            raise AttestationError("configfs-tsm returned a report for other report data")
        return Evidence(self.name, outblob, (auxblob,) if auxblob else ()).to_bytes()

    def sealing_key(self, label: bytes) -> bytes:
        check_bytes("label", label)
        raise AttestationError(
            f"{self.name} via configfs-tsm has no sealing-key interface; derive sealing keys "
            "from a secret the KeyService releases after attestation"
        )

    def _fields(self, outblob: bytes) -> ReportFields:
        return _PARSERS[self.name](outblob)

    def _provider(self) -> str:
        with self._entry() as entry:
            provider = read_device(entry / "provider").decode().strip()
        if provider not in PROVIDERS:
            raise AttestationError(f"configfs-tsm provider {provider!r} is not supported")
        return PROVIDERS[provider]

    def _report(self, data: bytes) -> tuple[bytes, bytes]:
        """(outblob, auxblob) for report data ``data``."""
        with self._lock, self._entry() as entry:
            write_device(entry / "inblob", data)
            generation = read_device(entry / "generation")
            outblob = read_device(entry / "outblob")
            auxblob = read_device(entry / "auxblob") if (entry / "auxblob").exists() else b""
            if read_device(entry / "generation") != generation or generation.strip() != b"1":
                raise AttestationError(f"configfs-tsm report {entry} raced with another writer")
        return outblob, auxblob

    @contextlib.contextmanager
    def _entry(self) -> Iterator[Path]:
        """A fresh report directory that exists for the ``with`` block only."""
        path = self._root / f"sealfn-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            path.mkdir()
        except OSError as exc:
            raise AttestationError(f"cannot create configfs-tsm report {path}: {exc}") from exc
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                path.rmdir()  # a leftover holds no secret (the report is public); only clutter
