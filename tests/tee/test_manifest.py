"""The manifest: deterministic, canonical, and any changed byte gives a new measurement."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

import sealfn.tee
from sealfn.errors import ConfigError
from sealfn.tee.manifest import DEFAULT_PACKAGES, Manifest

TEE_SOURCE = Path(sealfn.tee.__file__).parent


@pytest.fixture
def tee_copy(tmp_path: Path) -> Path:
    """A private copy of the sealfn.tee package to tamper with."""
    return Path(
        shutil.copytree(TEE_SOURCE, tmp_path / "tee", ignore=shutil.ignore_patterns("*.pyc"))
    )


def test_default_manifest_is_deterministic_and_canonical() -> None:
    first, second = Manifest.build(), Manifest.build()
    assert first.to_json() == second.to_json()
    assert first.measurement() == second.measurement()
    assert len(first.measurement()) == 48  # SHA-384
    document = json.loads(first.to_json())
    assert first.to_json() == json.dumps(document, sort_keys=True, separators=(",", ":"))
    assert document["packages"] == list(first.packages)
    assert set(document["runtime"]) == {"python", "onnxruntime", "numpy", "cryptography"}


def test_default_manifest_holds_the_enclave_code_and_the_parent_init() -> None:
    manifest = Manifest.build()
    paths = [path for path, _ in manifest.files]
    assert paths == sorted(paths)
    assert {"sealfn/__init__.py", "sealfn/errors.py", "sealfn/tee/base.py"} <= set(paths)
    assert "sealfn/instance/loop.py" in paths
    assert not any("/runtime/" in path or "__pycache__" in path for path in paths)
    assert set(manifest.packages) | set(manifest.skipped) == set(DEFAULT_PACKAGES)


def test_missing_packages_are_skipped_and_recorded() -> None:
    manifest = Manifest.build(["sealfn.tee", "sealfn.no_such_part", "no_such_top.level"])
    assert manifest.packages == ("sealfn.tee",)
    assert manifest.skipped == ("sealfn.no_such_part", "no_such_top.level")
    assert json.loads(manifest.to_json())["packages"] == ["sealfn.tee"]


def test_one_changed_byte_in_any_file_changes_the_measurement(tee_copy: Path) -> None:
    roots = {"sealfn.tee": tee_copy}
    original = Manifest.build(["sealfn.tee"], roots=roots).measurement()
    seen = {original}
    for path in sorted(tee_copy.rglob("*.py")):
        content = path.read_bytes()
        path.write_bytes(content[:-1] + bytes([content[-1] ^ 0x01]))  # one bit of the last byte
        seen.add(Manifest.build(["sealfn.tee"], roots=roots).measurement())
        path.write_bytes(content)
    assert len(seen) == len(list(tee_copy.rglob("*.py"))) + 1
    assert Manifest.build(["sealfn.tee"], roots=roots).measurement() == original


def test_adding_or_renaming_a_file_changes_the_measurement(tee_copy: Path) -> None:
    roots = {"sealfn.tee": tee_copy}
    original = Manifest.build(["sealfn.tee"], roots=roots).measurement()
    (tee_copy / "base.py").rename(tee_copy / "base2.py")
    renamed = Manifest.build(["sealfn.tee"], roots=roots).measurement()
    (tee_copy / "extra.py").write_text("")
    added = Manifest.build(["sealfn.tee"], roots=roots).measurement()
    assert len({original, renamed, added}) == 3


def test_a_module_root_may_be_a_single_file(tmp_path: Path) -> None:
    errors = tmp_path / "errors.py"
    shutil.copy(TEE_SOURCE.parent / "errors.py", errors)
    copy = Manifest.build(["sealfn.errors"], roots={"sealfn.errors": errors})
    assert copy.measurement() == Manifest.build(["sealfn.errors"]).measurement()
    errors.write_text(errors.read_text() + "\n")
    changed = Manifest.build(["sealfn.errors"], roots={"sealfn.errors": errors})
    assert changed.measurement() != copy.measurement()


def test_config_is_measured_but_its_key_order_is_not() -> None:
    base = Manifest.build(["sealfn.errors"], {"threads": 1, "pad_to": 4096})
    same = Manifest.build(["sealfn.errors"], {"pad_to": 4096, "threads": 1})
    other = Manifest.build(["sealfn.errors"], {"threads": 2, "pad_to": 4096})
    assert base.measurement() == same.measurement() != other.measurement()


def test_runtime_versions_are_measured() -> None:
    manifest = Manifest.build(["sealfn.errors"])
    older = dataclasses.replace(manifest, runtime={**manifest.runtime, "onnxruntime": "1.0.0"})
    assert older.measurement() != manifest.measurement()


@pytest.mark.parametrize("config", [{"x": object()}, {"x": float("nan")}, {"x": b"bytes"}])
def test_config_must_be_plain_json(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="plain JSON"):
        Manifest.build(["sealfn.errors"], config)


def test_a_root_that_is_not_a_file_or_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a file nor a folder"):
        Manifest.build(["sealfn.tee"], roots={"sealfn.tee": tmp_path / "absent"})
