"""Principal identity files: mode 0600, never overwritten by accident, refused when exposed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sealfn.errors import ConfigError, Conflict, InvalidInput, NotFound
from sealfn.keyservice.principal import Principal, PrincipalKind


def test_save_and_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    alice = Principal.generate("alice", PrincipalKind.USER)
    path = alice.save(tmp_path / "alice.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Principal.load(path)
    assert (loaded.name, loaded.kind, loaded.public_key) == (
        "alice",
        PrincipalKind.USER,
        alice.public_key,
    )
    assert "private" not in repr(loaded)


def test_the_default_folder_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    owner = Principal.generate("acme", PrincipalKind.OWNER)
    path = owner.save()
    assert path == tmp_path / ".sealfn" / "principals" / "acme.json"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert Principal.load("acme").public_key == owner.public_key


def test_an_identity_is_never_replaced_by_accident(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    first = Principal.generate("p", PrincipalKind.USER)
    first.save(path)
    with pytest.raises(Conflict, match="already exists"):
        Principal.generate("p", PrincipalKind.USER).save(path)
    assert Principal.load(path).public_key == first.public_key
    second = Principal.generate("p", PrincipalKind.USER)
    second.save(path, overwrite=True)
    assert Principal.load(path).public_key == second.public_key


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = Principal.generate("p", PrincipalKind.USER).save(tmp_path / "p.json")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Principal.load(path)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        Principal.load(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    broken.chmod(0o600)
    with pytest.raises(ConfigError, match="not a principal file"):
        Principal.load(broken)


def test_names_must_be_identifiers() -> None:
    with pytest.raises(InvalidInput):
        Principal.generate("../evil", PrincipalKind.USER)
