"""The simulated TEE: a persisted platform, evidence marked simulated, measurement-bound keys."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfn.errors import ConfigError
from sealfn.tee import simulated
from sealfn.tee.base import report_data
from sealfn.tee.evidence import Evidence, decode_claims, fingerprint, unsigned_body
from sealfn.tee.manifest import Manifest
from sealfn.tee.simulated import PLATFORM_FILE, SimulatedPlatform, SimulatedTee

NOW = 1_800_000_000.0  # unix seconds


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return Manifest.build(["sealfn.errors"], {"role": "test"})


def test_platform_is_created_once_mode_0600_and_reloaded(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "platform"
    first = SimulatedPlatform.load_or_create(folder)
    again = SimulatedPlatform.load_or_create(folder)
    assert first.root_public_key() == again.root_public_key()
    assert first.certificate == again.certificate
    assert stat.S_IMODE((folder / PLATFORM_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == [PLATFORM_FILE]  # no temporaries left


def test_concurrent_creation_agrees_on_one_platform(tmp_path: Path) -> None:
    roots: list[bytes] = []

    def create() -> None:
        roots.append(SimulatedPlatform.load_or_create(tmp_path).root_public_key())

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(roots) == 8
    assert len(set(roots)) == 1


def test_a_platform_file_open_to_others_is_refused(tmp_path: Path) -> None:
    SimulatedPlatform.load_or_create(tmp_path)
    os.chmod(tmp_path / PLATFORM_FILE, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SimulatedPlatform.load_or_create(tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc: doc.update(version=2),
        lambda doc: doc.update(secret="00"),
        lambda doc: doc.pop("root_key"),
        lambda doc: doc.update(root_key="zz"),
        lambda doc: doc.update(root_key=bytes(32).hex()),  # certificate no longer matches
    ],
)
def test_a_damaged_platform_file_is_a_config_error(
    tmp_path: Path, damage: Callable[[dict[str, Any]], object]
) -> None:
    SimulatedPlatform.load_or_create(tmp_path)
    path = tmp_path / PLATFORM_FILE
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=str(path)):
        SimulatedPlatform.load_or_create(tmp_path)


def test_evidence_claims_are_all_marked_simulated(manifest: Manifest) -> None:
    platform = SimulatedPlatform.create()
    tee = SimulatedTee(platform, manifest, clock=lambda: NOW)
    data = report_data(b"enclave public key", b"nonce")
    evidence = Evidence.from_bytes(tee.evidence(data))
    assert evidence.tee == "simulated"
    assert evidence.chain == (platform.certificate,)
    claims = decode_claims(unsigned_body(evidence.token))
    assert claims == {
        "version": 1,
        "tee": "simulated",
        "simulated": True,
        "debug": True,
        "measurement": manifest.measurement().hex(),
        "report_data": data.hex(),
        "iat": NOW,
        "platform": fingerprint(platform.root_public_key()),
    }
    assert tee.simulated is True
    assert tee.name == "simulated"
    assert "NO isolation" in (simulated.__doc__ or "")
    assert "NO isolation" in (SimulatedTee.__doc__ or "")


@pytest.mark.parametrize("bad", [b"", bytes(63), bytes(65)])
def test_report_data_must_be_64_bytes(manifest: Manifest, bad: bytes) -> None:
    tee = SimulatedTee(SimulatedPlatform.create(), manifest)
    with pytest.raises(ValueError, match="64 bytes"):
        tee.evidence(bad)


def test_arguments_of_the_wrong_type_fail_early(manifest: Manifest) -> None:
    tee = SimulatedTee(SimulatedPlatform.create(), manifest)
    with pytest.raises(TypeError):
        tee.evidence("x" * 64)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tee.sealing_key("label")  # type: ignore[arg-type]


def test_sealing_key_is_hkdf_of_the_platform_secret_and_measurement(tmp_path: Path) -> None:
    manifest = Manifest.build(["sealfn.errors"])
    tee = SimulatedTee(SimulatedPlatform.load_or_create(tmp_path), manifest)
    secret = bytes.fromhex(json.loads((tmp_path / PLATFORM_FILE).read_text())["secret"])
    expected = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=manifest.measurement(),
        info=b"sealfn seal" + b"model-cache",
    ).derive(secret)
    assert tee.sealing_key(b"model-cache") == expected


def test_sealing_key_is_bound_to_measurement_label_and_platform(tmp_path: Path) -> None:
    platform = SimulatedPlatform.load_or_create(tmp_path)
    one = SimulatedTee(platform, Manifest.build(["sealfn.errors"], {"v": 1}))
    two = SimulatedTee(platform, Manifest.build(["sealfn.errors"], {"v": 2}))
    elsewhere = SimulatedTee(SimulatedPlatform.create(), one.manifest)
    keys = {
        one.sealing_key(b"a"),
        one.sealing_key(b"b"),
        two.sealing_key(b"a"),
        elsewhere.sealing_key(b"a"),
    }
    assert len(keys) == 4
    assert all(len(key) == 32 for key in keys)


def test_sealing_key_survives_a_platform_reload(tmp_path: Path, manifest: Manifest) -> None:
    before = SimulatedTee(SimulatedPlatform.load_or_create(tmp_path), manifest)
    after = SimulatedTee(SimulatedPlatform.load_or_create(tmp_path), manifest)
    assert before.sealing_key(b"cache") == after.sealing_key(b"cache")


def test_create_builds_the_default_manifest_on_a_persisted_platform(tmp_path: Path) -> None:
    tee = simulated.create(tmp_path, config={"k": 1})
    assert tee.manifest.config == {"k": 1}
    assert (
        tee.platform.root_public_key()
        == SimulatedPlatform.load_or_create(tmp_path).root_public_key()
    )
