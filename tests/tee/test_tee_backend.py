"""backend(): simulated here, loudly; hardware backends fail closed; the report-data binding."""

from __future__ import annotations

import hashlib
import logging
import struct
from pathlib import Path

import pytest

from sealfn.errors import AttestationError, ConfigError
from sealfn.tee import TeeBackend, backend, report_data
from sealfn.tee.gramine import ATTESTATION_DEV
from sealfn.tee.tsm import TSM_REPORT

NO_HARDWARE = not TSM_REPORT.exists() and not ATTESTATION_DEV.exists()


@pytest.mark.skipif(not NO_HARDWARE, reason="this machine has TEE hardware")
def test_auto_picks_the_simulated_backend_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sealfn.tee"):
        tee = backend("auto", platform_dir=tmp_path)
    assert isinstance(tee, TeeBackend)
    assert (tee.name, tee.simulated) == ("simulated", True)
    assert len(tee.measurement()) == 48
    assert "SIMULATED TEE" in caplog.text
    assert "NO isolation" in caplog.text


def test_simulated_is_quiet_when_asked_for_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sealfn.tee"):
        tee = backend("simulated", platform_dir=tmp_path, config={"x": 1})
    assert tee.simulated
    assert caplog.text == ""


@pytest.mark.skipif(not NO_HARDWARE, reason="this machine has TEE hardware")
@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("tdx", "/sys/kernel/config/tsm/report"),
        ("sev-snp", "/sys/kernel/config/tsm/report"),
        ("sgx-gramine", "/dev/attestation/attestation_type"),
    ],
)
def test_hardware_backends_fail_closed_naming_the_missing_device(name: str, missing: str) -> None:
    with pytest.raises(AttestationError, match=f"{name} is unavailable: {missing} does not exist"):
        backend(name)


def test_an_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'sgx'.*expected one of auto, simulated, tdx"):
        backend("sgx")


def test_report_data_is_sha512_of_the_length_prefixed_parts() -> None:
    def prefixed(part: bytes) -> bytes:
        return struct.pack(">I", len(part)) + part

    parts = (b"sealfn report-data v1\x00", b"public key", b"nonce")
    expected = hashlib.sha512(b"".join(prefixed(p) for p in parts)).digest()  # independent KAT
    assert report_data(b"public key", b"nonce") == expected
    assert len(expected) == 64


def test_report_data_separates_key_from_nonce() -> None:
    assert report_data(b"ab", b"c") != report_data(b"a", b"bc")
    assert report_data(b"k", b"n1") != report_data(b"k", b"n2")


def test_report_data_wants_bytes() -> None:
    with pytest.raises(TypeError, match="nonce must be bytes"):
        report_data(b"key", "nonce")  # type: ignore[arg-type]
