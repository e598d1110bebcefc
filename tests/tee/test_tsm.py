"""configfs-tsm (TDX / SEV-SNP) fails closed where the hardware is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealfn.errors import AttestationError
from sealfn.tee import tsm
from sealfn.tee.tsm import TSM_REPORT, TsmTee


@pytest.mark.skipif(TSM_REPORT.exists(), reason="this machine has configfs-tsm")
def test_no_configfs_tsm_here_fails_closed() -> None:
    with pytest.raises(AttestationError, match="/sys/kernel/config/tsm/report does not exist"):
        TsmTee()


@pytest.mark.parametrize("expect", ["tdx", "sev-snp"])
def test_missing_report_folder_names_the_backend(tmp_path: Path, expect: str) -> None:
    with pytest.raises(AttestationError, match=f"{expect} is unavailable: .*absent"):
        TsmTee(expect, root=tmp_path / "absent")


def test_a_folder_that_is_not_configfs_fails_closed_and_is_left_clean(tmp_path: Path) -> None:
    # A plain folder accepts mkdir but grows no attribute files: reading "provider" fails.
    with pytest.raises(AttestationError, match=r"cannot read .*provider"):
        TsmTee(root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_module_docstring_is_honest_about_verification() -> None:
    doc = " ".join((tsm.__doc__ or "").split())
    assert "does NOT implement hardware-quote verification" in doc
    assert "ARK" in doc
    assert "PCK" in doc
