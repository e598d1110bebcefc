"""A sealed batch job: KeyService (subprocess) + enclave instances (simulated TEE) + sealed data.

The untrusted side (root, checkpoints, staged data, control plane, the gathered results) must
never hold the model's weights, a record or a result in plaintext."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealfn.attestation import Policy
from sealfn.batch.dataset import Dataset
from sealfn.batch.fleet import LocalFleet
from sealfn.batch.job import JobConfig, run_job
from sealfn.batch.messages import Event, WorkerSpec
from sealfn.batch.sealed import batch_enclave_measurement, job_ticket, open_results, seal_dataset
from sealfn.errors import Unavailable
from sealfn.keyservice.client import KeyServiceClient
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.sealed_model import generate_model_key, seal_model
from sealfn.tee.simulated import SimulatedPlatform
from sealfn_testing import Models, free_port, start_keyservice

MODEL = "batch-mlp"
Reference = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class World:
    url: str
    platform: Path
    sealed_model: Path
    keyservice: KeyServiceClient
    policy: Policy
    alice: Principal
    bob: Principal


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Iterator[World]:
    root = tmp_path_factory.mktemp("sealed-batch")
    platform = root / "platform"
    root_key = SimulatedPlatform.load_or_create(platform).root_public_key()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_keyservice(root, platform, port)
    try:
        ks = KeyServiceClient(url)
        policy = Policy(None, accept_simulated=True, trusted_simulated_roots=frozenset({root_key}))
        owner = Principal.generate("acme", PrincipalKind.OWNER)
        alice = Principal.generate("alice", PrincipalKind.USER)
        bob = Principal.generate("bob", PrincipalKind.USER)
        for principal in (owner, alice, bob):
            ks.register(principal)
        model_key = generate_model_key()
        ks.upload_model_key(owner, MODEL, model_key, ks.attest(policy))
        ks.grant(owner, MODEL, "alice", [batch_enclave_measurement()])
        sealed = root / "model.sealed"
        sealed.write_bytes(seal_model(models.mlp.read_bytes(), model_key, MODEL))
        yield World(url, platform, sealed, ks, policy, alice, bob)
        ks.close()
    finally:
        process.terminate()
        process.wait(10)


def _job(world: World, tmp_path: Path, signer: Principal) -> tuple[WorkerSpec, bytes, np.ndarray]:
    records = np.random.default_rng(9).standard_normal((230, 16)).astype(np.float32)
    np.save(tmp_path / "plain.npy", records)
    data_key = AESGCM.generate_key(bit_length=256)
    deployment = world.keyservice.deployment_key(MODEL, policy=world.policy)
    ticket = job_ticket(data_key, public_key=deployment.public_key, model_id=MODEL, signer=signer)
    seal_dataset(
        Dataset.open(tmp_path / "plain.npy"), tmp_path / "sealed-data", data_key=data_key,
        job="job-1", model_id=MODEL, ticket=ticket, partition_records=40,
    )  # fmt: skip
    spec = WorkerSpec(
        world.sealed_model, tmp_path / "sealed-data", tmp_path / "checkpoints", batch_size=16,
        keyservice=world.url, model_id=MODEL, tee="simulated", tee_platform_dir=str(world.platform),
    )  # fmt: skip
    return spec, data_key, records


def _pieces(array: np.ndarray) -> list[bytes]:
    """Distinctive 16-byte runs of an array's plaintext bytes (one per row)."""
    raw = np.ascontiguousarray(array).tobytes()
    row = raw[: len(raw) // len(array)]
    return [raw[i * len(row) : i * len(row) + 16] for i in range(len(array))]


def test_sealed_job_answers_the_user_and_leaks_nothing(
    world: World, tmp_path: Path, models: Models, reference: Reference
) -> None:
    from sealfn.batch.sealed import SealedManifest

    spec, data_key, records = _job(world, tmp_path, world.alice)
    manifest = SealedManifest.from_bytes((spec.data / "manifest.json").read_bytes())
    events: list[bytes] = []
    config = JobConfig(instances=2, sealed=True, progress=False)
    result = run_job(
        LocalFleet(spec), len(records), config,
        observer=lambda e: events.append(e.to_bytes()), partitions=manifest.partitions(),
    )  # fmt: skip
    assert result.outputs == {}  # the root cannot read the results
    expected = reference(models.mlp, {"input": records})["output"]
    opened = open_results(result.blobs, data_key, "job-1")
    np.testing.assert_allclose(opened["output"], expected, rtol=1e-6)
    assert all(log.loads == 1 for log in result.instances.values())

    untrusted = [*result.blobs.values(), *events, world.sealed_model.read_bytes()]
    for folder in (spec.data, spec.checkpoints):
        untrusted += [p.read_bytes() for p in folder.rglob("*") if p.is_file()]
    secrets = _pieces(records) + _pieces(expected)
    from onnx import load, numpy_helper

    weights = [numpy_helper.to_array(t) for t in load(str(models.mlp)).graph.initializer]
    secrets += [w.tobytes()[:16] for w in weights if w.nbytes >= 16]
    leaks = [s for s in secrets for blob in untrusted if s in blob]
    assert not leaks, f"{len(leaks)} plaintext pieces found on the untrusted side"


def test_a_user_without_a_grant_gets_no_job(world: World, tmp_path: Path) -> None:
    spec, _, records = _job(world, tmp_path, world.bob)
    exited: list[Event] = []
    with pytest.raises(Unavailable, match="failed to start"):
        run_job(
            LocalFleet(spec), len(records), JobConfig(instances=1, sealed=True, progress=False),
            observer=exited.append,
        )  # fmt: skip
    assert not (spec.checkpoints / "data-key.wrapped").exists()


def test_sealed_job_from_the_command_line(
    world: World, tmp_path: Path, models: Models, reference: Reference, capsys: object
) -> None:
    """The user seals, the platform runs, the user opens: `sealfn batch seal | run | open`."""
    from sealfn.cli import main

    records = np.random.default_rng(12).standard_normal((150, 16)).astype(np.float32)
    np.save(tmp_path / "plain.npy", records)
    alice = world.alice.save(tmp_path / "alice.json")
    sealed_data, key_file = tmp_path / "sealed-data", tmp_path / "data.key"
    attest = [
        "--keyservice",
        world.url,
        "--accept-simulated",
        "--platform-dir",
        str(world.platform),
    ]
    assert main(
        [
            "batch", "seal", str(tmp_path / "plain.npy"), "--model-id", MODEL, "--out",
            str(sealed_data), "--as", str(alice), "--key-file", str(key_file),
            "--partition-records", "50", *attest,
        ]
    ) == 0  # fmt: skip
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert main(
        [
            "batch", "run", str(world.sealed_model), str(sealed_data), "--sealed", "--keyservice",
            world.url, "--tee", "simulated", "--tee-platform-dir", str(world.platform),
            "--instances", "2", "--no-progress", "--output", str(tmp_path / "sealed-out.npz"),
        ]
    ) == 0  # fmt: skip
    assert main(
        [
            "batch", "open", str(tmp_path / "sealed-out.npz"), "--data", str(sealed_data),
            "--key-file", str(key_file), "--output", str(tmp_path / "plain-out.npz"),
        ]
    ) == 0  # fmt: skip
    np.testing.assert_allclose(
        np.load(tmp_path / "plain-out.npz")["output"],
        reference(models.mlp, {"input": records})["output"],
        rtol=1e-6,
    )


def test_a_killed_enclave_is_replaced_and_nothing_is_lost(
    world: World, tmp_path: Path, models: Models, reference: Reference
) -> None:
    """The replacement starts after the ticket's freshness may have passed: it unwraps the data
    key the first instances stored (under a key only granted enclaves derive)."""
    from sealfn.batch.messages import EventKind
    from sealfn.batch.sealed import SealedManifest

    spec, data_key, records = _job(world, tmp_path, world.alice)
    manifest = SealedManifest.from_bytes((spec.data / "manifest.json").read_bytes())
    fleet = LocalFleet(spec)
    killed: list[str] = []

    def kill_once(event: Event) -> None:
        if event.kind is EventKind.PARTITION and not killed:
            killed.append(event.instance)
            fleet.kill(event.instance)

    config = JobConfig(instances=2, sealed=True, progress=False)
    result = run_job(
        fleet, len(records), config, observer=kill_once, partitions=manifest.partitions()
    )
    assert result.instances[killed[0]].died and len(result.instances) == 3
    assert (spec.checkpoints / "data-key.wrapped").exists()
    assert data_key not in (spec.checkpoints / "data-key.wrapped").read_bytes()
    opened = open_results(result.blobs, data_key, "job-1")
    np.testing.assert_allclose(
        opened["output"], reference(models.mlp, {"input": records})["output"], rtol=1e-6
    )
    assert max(result.computed().values()) == 1
