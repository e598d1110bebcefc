"""Where the measurement and report data lie in hardware quotes and reports (parsing only).

Nothing here checks a signature: these read fields an enclave needs to know about itself (its
measurement) and to sanity-check what the hardware returned. Verifying a quote is a different job
(see :mod:`sealfn.tee.tsm` and :mod:`sealfn.tee.gramine`).

Layouts, all little-endian:

- Intel TDX quote v4: 48-byte header (u16 version=4, u16 key type, u32 TEE type=0x81), then the
  TD report body; v5 puts a u16 body type and u32 body size between them. In the body, MRTD is
  at 136 (48 bytes), REPORTDATA at 520 (64), TDATTRIBUTES at 120 (bit 0: DEBUG).
- AMD SEV-SNP attestation report (1184 bytes): POLICY u64 at 0x08 (bit 19: DEBUG allowed),
  REPORT_DATA at 0x50 (64), MEASUREMENT at 0x90 (48).
- Intel SGX DCAP quote v3: 48-byte header (u32 TEE type=0 at 4), then the 384-byte report body:
  ATTRIBUTES at 48 (flags bit 1: DEBUG), MRENCLAVE at 64 (32), REPORTDATA at 320 (64).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sealfn.errors import AttestationError

QUOTE_HEADER = 48
TDX_TEE_TYPE = 0x81
SGX_TEE_TYPE = 0x00
SNP_REPORT_SIZE = 0x4A0
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_TDX_BODY = {4: QUOTE_HEADER, 5: QUOTE_HEADER + 6}  # v5: u16 body type + u32 body size first


@dataclass(frozen=True, slots=True)
class ReportFields:
    """The fields sealfn reads from a hardware quote or report."""

    measurement: bytes
    report_data: bytes
    debug: bool


def tdx_quote(quote: bytes) -> ReportFields:
    """MRTD, REPORTDATA and the DEBUG attribute of a TDX quote (v4 or v5)."""
    version = _U16.unpack(_field(quote, 0, 2, "TDX quote"))[0]
    if _U32.unpack(_field(quote, 4, 4, "TDX quote"))[0] != TDX_TEE_TYPE:
        raise AttestationError("not a TDX quote: TEE type is not 0x81")
    if version not in _TDX_BODY:
        raise AttestationError(f"TDX quote version {version} is not 4 or 5")
    body = _TDX_BODY[version]
    attributes = _U64.unpack(_field(quote, body + 120, 8, "TDX quote"))[0]
    return ReportFields(
        measurement=_field(quote, body + 136, 48, "TDX quote"),
        report_data=_field(quote, body + 520, 64, "TDX quote"),
        debug=bool(attributes & 1),
    )


def snp_report(report: bytes) -> ReportFields:
    """MEASUREMENT, REPORT_DATA and the DEBUG policy bit of an SEV-SNP attestation report."""
    if len(report) < SNP_REPORT_SIZE:
        raise AttestationError(f"SNP report is {len(report)} bytes, not {SNP_REPORT_SIZE}")
    policy = _U64.unpack(_field(report, 0x08, 8, "SNP report"))[0]
    return ReportFields(
        measurement=_field(report, 0x90, 48, "SNP report"),
        report_data=_field(report, 0x50, 64, "SNP report"),
        debug=bool(policy & (1 << 19)),
    )


def sgx_quote(quote: bytes) -> ReportFields:
    """MRENCLAVE, REPORTDATA and the DEBUG attribute of an SGX DCAP/EPID quote."""
    if _U32.unpack(_field(quote, 4, 4, "SGX quote"))[0] != SGX_TEE_TYPE:
        raise AttestationError("not an SGX quote: TEE type is not 0")
    flags = _U64.unpack(_field(quote, QUOTE_HEADER + 48, 8, "SGX quote"))[0]
    return ReportFields(
        measurement=_field(quote, QUOTE_HEADER + 64, 32, "SGX quote"),
        report_data=_field(quote, QUOTE_HEADER + 320, 64, "SGX quote"),
        debug=bool(flags & 2),
    )


def _field(blob: bytes, offset: int, size: int, what: str) -> bytes:
    if len(blob) < offset + size:
        raise AttestationError(f"{what} of {len(blob)} bytes is too short (truncated?)")
    return bytes(blob[offset : offset + size])
