"""Hardware quote layouts: fields at their documented offsets; short or foreign blobs refused."""

from __future__ import annotations

import struct

import pytest

from sealfn.errors import AttestationError
from sealfn.tee.quotes import sgx_quote, snp_report, tdx_quote

MEASUREMENT = bytes(range(48))
DATA = bytes(range(100, 164))


def _tdx(version: int, debug: bool = False) -> bytes:
    header = struct.pack("<HHI", version, 2, 0x81).ljust(48, b"\0")
    body = bytearray(584)  # TD report 1.0 body
    body[120:128] = struct.pack("<Q", 1 if debug else 0)
    body[136:184] = MEASUREMENT
    body[520:584] = DATA
    between = struct.pack("<HI", 2, len(body)) if version == 5 else b""
    return header + between + bytes(body) + b"signature data"


def _snp(debug: bool = False) -> bytes:
    report = bytearray(0x4A0)
    report[0:4] = struct.pack("<I", 2)
    report[0x08:0x10] = struct.pack("<Q", (1 << 17) | ((1 << 19) if debug else 0))
    report[0x50:0x90] = DATA
    report[0x90:0xC0] = MEASUREMENT
    return bytes(report)


def _sgx(debug: bool = False) -> bytes:
    header = struct.pack("<HHI", 3, 2, 0).ljust(48, b"\0")
    body = bytearray(384)
    body[48:56] = struct.pack("<Q", 0x4 | (0x2 if debug else 0))
    body[64:96] = MEASUREMENT[:32]
    body[320:384] = DATA
    return header + bytes(body) + b"signature data"


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("debug", [False, True])
def test_tdx_quote_fields(version: int, debug: bool) -> None:
    fields = tdx_quote(_tdx(version, debug))
    assert (fields.measurement, fields.report_data, fields.debug) == (MEASUREMENT, DATA, debug)


@pytest.mark.parametrize("debug", [False, True])
def test_snp_report_fields(debug: bool) -> None:
    fields = snp_report(_snp(debug))
    assert (fields.measurement, fields.report_data, fields.debug) == (MEASUREMENT, DATA, debug)


@pytest.mark.parametrize("debug", [False, True])
def test_sgx_quote_fields(debug: bool) -> None:
    fields = sgx_quote(_sgx(debug))
    assert (fields.measurement, fields.report_data, fields.debug) == (MEASUREMENT[:32], DATA, debug)


@pytest.mark.parametrize(
    ("parse", "blob", "reason"),
    [
        (tdx_quote, _tdx(4)[:600], "too short"),
        (tdx_quote, b"", "too short"),
        (tdx_quote, _tdx(3), "version 3 is not 4 or 5"),
        (tdx_quote, _sgx(), "TEE type"),
        (snp_report, _snp()[:-1], "not 1184"),
        (sgx_quote, _sgx()[:400], "too short"),
        (sgx_quote, _tdx(4), "TEE type"),
    ],
)
def test_short_or_foreign_blobs_are_refused(parse: object, blob: bytes, reason: str) -> None:
    with pytest.raises(AttestationError, match=reason):
        parse(blob)  # type: ignore[operator]
