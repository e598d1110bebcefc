"""Gramine SGX: fails closed without /dev/attestation; reads MRENCLAVE and derives sealing keys.

The pseudo-files are faked with plain files holding a fixed quote, so only the parsing, the
report-data check and the key derivation are exercised here, not Gramine itself.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from sealfn.attestation import Policy, verify
from sealfn.errors import AttestationError
from sealfn.tee import gramine
from sealfn.tee.evidence import Evidence
from sealfn.tee.gramine import ATTESTATION_DEV, GramineTee

MRENCLAVE = bytes(range(32))


def _fake_device(root: Path, report_data: bytes, mrenclave: bytes = MRENCLAVE) -> Path:
    (root / "keys").mkdir(parents=True)
    (root / "attestation_type").write_text("dcap\n")
    (root / "keys" / "_sgx_mrenclave").write_bytes(bytes(range(16)))
    header = struct.pack("<HHI", 3, 2, 0).ljust(48, b"\0")
    body = bytearray(384)
    body[64:96] = mrenclave
    body[320:384] = report_data
    (root / "quote").write_bytes(header + bytes(body) + b"signature data")
    return root


@pytest.mark.skipif(ATTESTATION_DEV.exists(), reason="this machine runs under Gramine")
def test_no_gramine_here_fails_closed() -> None:
    with pytest.raises(AttestationError, match="/dev/attestation/attestation_type does not exist"):
        GramineTee()


@pytest.mark.parametrize("kind", ["none", "", "unknown"])
def test_without_remote_attestation_it_fails_closed(tmp_path: Path, kind: str) -> None:
    (tmp_path / "attestation_type").write_text(kind)
    with pytest.raises(AttestationError, match="enable remote attestation"):
        GramineTee(root=tmp_path)


def test_measurement_and_evidence_come_from_the_quote(tmp_path: Path) -> None:
    data = bytes(64)
    tee = GramineTee(root=_fake_device(tmp_path, data))
    assert (tee.name, tee.simulated) == ("sgx-gramine", False)
    assert tee.measurement() == MRENCLAVE
    evidence = Evidence.from_bytes(tee.evidence(data))
    assert evidence.tee == "sgx-gramine"
    assert evidence.token == (tmp_path / "quote").read_bytes()
    assert (tmp_path / "user_report_data").read_bytes() == data


def test_a_quote_over_other_report_data_is_refused(tmp_path: Path) -> None:
    tee = GramineTee(root=_fake_device(tmp_path, bytes(64)))
    with pytest.raises(AttestationError, match="other report data"):
        tee.evidence(os.urandom(64))


def test_sealing_keys_are_per_label_and_per_enclave(tmp_path: Path) -> None:
    one = GramineTee(root=_fake_device(tmp_path / "one", bytes(64)))
    two = GramineTee(root=_fake_device(tmp_path / "two", bytes(64), mrenclave=bytes(32)))
    keys = {one.sealing_key(b"a"), one.sealing_key(b"b"), two.sealing_key(b"a")}
    assert len(keys) == 3
    assert all(len(key) == 32 for key in keys)
    assert one.sealing_key(b"a") == one.sealing_key(b"a")


def test_the_verifier_refuses_sgx_quotes_it_cannot_verify(tmp_path: Path) -> None:
    data = bytes(64)
    tee = GramineTee(root=_fake_device(tmp_path, data))
    policy = Policy(allowed_measurements=None, allow_debug=True)
    message = "verification of sgx-gramine quotes is not available in this build"
    with pytest.raises(AttestationError, match=message):
        verify(tee.evidence(data), nonce=b"n", public_key=b"k", policy=policy)


def test_module_docstring_is_honest_about_verification() -> None:
    assert "does NOT implement hardware-quote verification" in " ".join(
        (gramine.__doc__ or "").split()
    )
