"""Sealed inference end to end: KeyService + `sealfn serve` + enclave instances (simulated TEE)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sealfn.attestation import Policy
from sealfn.errors import AccessDenied, EnvelopeError, InvalidInput, Unavailable
from sealfn.instance.sealed import enclave_measurement
from sealfn.keyservice.client import KeyServiceClient
from sealfn.keyservice.keys import DeploymentKey
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.sealed_model import generate_model_key, seal_model
from sealfn.sealed_request import CONTENT_TYPE, seal_inference
from sealfn.tee.simulated import SimulatedPlatform
from sealfn_testing import Models, Server, free_port, launch, stop_cleanly, wait_until
from sealfn_testing import start_keyservice as start_keyservice_process

MODEL = "sealed-mlp"


@dataclass
class World:
    restart_keyservice: Callable[[], None]
    stop_keyservice: Callable[[], None]
    server: Server
    keyservice: KeyServiceClient
    keyservice_url: str
    owner: Principal
    alice: Principal
    bob: Principal
    policy: Policy
    key: DeploymentKey
    canary_model: bytes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Iterator[World]:
    root = tmp_path_factory.mktemp("sealed")
    platform = root / "platform"
    root_key = SimulatedPlatform.load_or_create(platform).root_public_key()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []

    def start_keyservice() -> None:
        processes.append(start_keyservice_process(root, platform, port))

    def stop_keyservice() -> None:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)

    start_keyservice()
    server = launch(
        root / "state", {"SEALFN_TEE": "simulated", "SEALFN_TEE_PLATFORM_DIR": str(platform)}
    )
    ks = KeyServiceClient(url)
    policy = Policy(None, accept_simulated=True, trusted_simulated_roots=frozenset({root_key}))
    owner = Principal.generate("acme", PrincipalKind.OWNER)
    alice = Principal.generate("alice", PrincipalKind.USER)
    bob = Principal.generate("bob", PrincipalKind.USER)
    for principal in (owner, alice, bob):
        ks.register(principal)
    model_key = generate_model_key()
    ks.upload_model_key(owner, MODEL, model_key, ks.attest(policy))
    ks.grant(owner, MODEL, "alice", [enclave_measurement()])
    plain = models.mlp.read_bytes()
    sealed = root / "model.sealed"
    sealed.write_bytes(seal_model(plain, model_key, MODEL))
    server.client.deploy(MODEL, sealed, sealed=True, keyservice=url, keep_alive_s=60)
    try:
        key = ks.deployment_key(MODEL, policy=policy)
        yield World(
            start_keyservice, stop_keyservice, server, ks, url, owner, alice, bob, policy, key,
            plain,
        )  # fmt: skip
    finally:
        ks.close()
        stop_cleanly(server)
        stop_keyservice()


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 16)).astype(np.float32)


def _post(world: World, body: bytes, content_type: str = CONTENT_TYPE) -> httpx.Response:
    with world.server.http() as http:
        return http.post(
            f"/v2/models/{MODEL}/infer", content=body, headers={"content-type": content_type}
        )


def test_granted_user_gets_the_right_answer(
    world: World, models: Models, reference: Callable[..., dict[str, np.ndarray]]
) -> None:
    x = _x(1)
    out = world.server.client.infer_sealed(MODEL, {"input": x}, key=world.key, signer=world.alice)
    np.testing.assert_allclose(out["output"], reference(models.mlp, {"input": x})["output"])


@pytest.mark.parametrize("session", [True, False], ids=["session", "hpke-per-request"])
def test_both_request_kinds_get_the_right_answer(
    world: World, models: Models, reference: Callable[..., dict[str, np.ndarray]], session: bool
) -> None:
    x = _x(2)
    for _ in range(3):
        out = world.server.client.infer_sealed(
            MODEL, {"input": x}, key=world.key, signer=world.alice, session=session
        )
        np.testing.assert_allclose(out["output"], reference(models.mlp, {"input": x})["output"])


def test_sealed_session_verifies_and_infers(world: World) -> None:
    import sealfn

    with (
        sealfn.Client(world.server.url) as client,
        client.sealed(world.keyservice_url, world.alice, world.policy) as session,
    ):
        assert session.key(MODEL) == world.key
        assert session.infer(MODEL, {"input": _x()})["output"].shape == (1, 4)


def test_cold_start_breakdown_is_reported(world: World) -> None:
    world.server.client.infer_sealed(MODEL, {"input": _x()}, key=world.key, signer=world.alice)
    last = world.server.function(MODEL)["last_cold_start"]
    for step in ("spawn_to_ready_s", "attest_release_s", "fetch_s", "decrypt_s", "load_s"):
        assert step in last


def test_user_without_grant_is_denied(world: World) -> None:
    with pytest.raises(AccessDenied):
        world.server.client.infer_sealed(MODEL, {"input": _x()}, key=world.key, signer=world.bob)


def test_impostor_claiming_a_granted_name_is_refused(world: World) -> None:
    """Someone with the public key but not alice's signing key cannot pass for alice."""
    impostor = Principal.generate("alice", PrincipalKind.USER)
    with pytest.raises(EnvelopeError):
        world.server.client.infer_sealed(MODEL, {"input": _x()}, key=world.key, signer=impostor)


def _sealed_body(world: World) -> bytes:
    from sealfn import oip

    body, headers = oip.encode_request([oip.Tensor("input", "FP32", (1, 16), _x())])
    length = int(headers["Inference-Header-Content-Length"])
    sealed, _ = seal_inference(
        body, header_length=length, public_key=world.key.public_key, model_id=MODEL,
        signer=world.alice,
    )  # fmt: skip
    return sealed


@pytest.mark.parametrize("where", [0, 40, 80, -1])
def test_tampered_ciphertext_is_an_opaque_400(world: World, where: int) -> None:
    sealed = bytearray(_sealed_body(world))
    sealed[where] ^= 0x01
    reply = _post(world, bytes(sealed))
    assert reply.status_code == 400
    assert reply.json() == {"error": "cannot open envelope"}


def test_replayed_request_is_refused(world: World) -> None:
    sealed = _sealed_body(world)
    assert _post(world, sealed).status_code == 200
    again = _post(world, sealed)
    assert again.status_code == 400
    assert again.json() == {"error": "cannot open envelope"}


def test_plain_request_to_sealed_function_is_400(world: World) -> None:
    reply = _post(world, b'{"inputs": []}', "application/json")
    assert reply.status_code == 400
    assert "is sealed" in reply.json()["error"]


def test_invalid_input_detail_is_sealed_to_the_sender(world: World) -> None:
    with pytest.raises(InvalidInput, match="input 'input'"):
        world.server.client.infer_sealed(
            MODEL, {"input": np.ones((1, 3), np.float32)}, key=world.key, signer=world.alice
        )


def test_warm_requests_make_no_keyservice_calls(world: World) -> None:
    client = world.server.client
    client.infer_sealed(MODEL, {"input": _x()}, key=world.key, signer=world.alice)  # warm
    before = world.keyservice.stats()
    started = time.monotonic()
    for seed in range(50):
        client.infer_sealed(MODEL, {"input": _x(seed)}, key=world.key, signer=world.alice)
    elapsed = time.monotonic() - started
    after = world.keyservice.stats()
    changed = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    for operation in ("challenge", "release", "attestation", "deployment_key"):
        assert changed.get(operation, 0) == 0, changed
    # only the background lease renewal, driven by time (every ~2 s), not by requests
    assert changed.get("renew", 0) <= elapsed / 1.5 + 1


def test_untrusted_side_never_sees_plaintext(world: World) -> None:
    """A canary in the weights, the input and the output never reaches the gateway's bytes."""
    canary = np.full((1, 16), 1234.5678, dtype=np.float32)
    out = world.server.client.infer_sealed(
        MODEL, {"input": canary}, key=world.key, signer=world.alice
    )
    patterns = {
        "input": canary.tobytes()[:16],
        "output": out["output"].tobytes()[:16],
        "weights": _weights_sample(world.canary_model),
    }
    with world.server.http() as http:
        exposed: dict[str, bytes] = {
            "metrics": http.get("/metrics").content,
            "status": http.get("/admin/status").content,
            "log": world.server.log_path.read_bytes(),
        }
    for path in world.server.state_dir.rglob("*"):
        if path.is_file():
            exposed[str(path)] = path.read_bytes()
    for where, data in exposed.items():
        for what, pattern in patterns.items():
            assert pattern not in data, f"{what} plaintext found in {where}"


def _weights_sample(model: bytes) -> bytes:
    import onnx

    proto = onnx.load_from_string(model)
    raw: Any = proto.graph.initializer[0].raw_data
    return bytes(raw[:16])


def test_revocation_reaches_a_warm_enclave_within_5_s(world: World, tmp_path: Path) -> None:
    client = world.server.client
    carol = Principal.generate("carol", PrincipalKind.USER)
    world.keyservice.register(carol)
    world.keyservice.grant(world.owner, MODEL, "carol", [enclave_measurement()])

    def served() -> bool:
        with contextlib.suppress(AccessDenied):
            client.infer_sealed(MODEL, {"input": _x()}, key=world.key, signer=carol)
            return True
        return False

    wait_until(served, 10, "carol's grant to reach the warm enclave")
    world.keyservice.revoke(world.owner, MODEL, "carol")
    revoked_at = time.monotonic()
    wait_until(lambda: not served(), 10, "carol's revocation to reach the warm enclave")
    assert time.monotonic() - revoked_at <= 5.0
    # alice, still granted, is served throughout
    client.infer_sealed(MODEL, {"input": _x()}, key=world.key, signer=world.alice)


def test_enclave_code_changed_by_one_byte_gets_no_keys(
    world: World, tmp_path: Path, models: Models
) -> None:
    """The owner approved other enclave code (one byte differs): the running enclave's
    measurement is not granted, so the KeyService releases nothing and the function says so."""
    import shutil

    import sealfn.instance
    from sealfn.instance.sealed import ENCLAVE_PACKAGES
    from sealfn.tee.manifest import Manifest

    approved = tmp_path / "instance"
    shutil.copytree(Path(sealfn.instance.__file__).parent, approved)
    loop = approved / "loop.py"
    loop.write_bytes(loop.read_bytes() + b" ")
    other = Manifest.build(packages=ENCLAVE_PACKAGES, roots={"sealfn.instance": approved})
    assert other.measurement() != enclave_measurement()

    name = "sealed-other"
    key = generate_model_key()
    world.keyservice.upload_model_key(world.owner, name, key, world.keyservice.attest(world.policy))
    world.keyservice.grant(world.owner, name, "alice", [other.measurement()])
    sealed = tmp_path / "other.sealed"
    sealed.write_bytes(seal_model(models.mlp.read_bytes(), key, name))
    world.server.client.deploy(name, sealed, sealed=True, keyservice=world.keyservice_url)
    deployment = world.keyservice.deployment_key(name, policy=world.policy)
    with pytest.raises(Unavailable, match=f"measurement not allowed for model {name}"):
        world.server.client.infer_sealed(name, {"input": _x()}, key=deployment, signer=world.alice)


def test_enclave_fetches_the_sealed_model_from_the_store(
    world: World, tmp_path: Path, models: Models
) -> None:
    """Deployed by reference: the gateway keeps nothing; the enclave fetches from the store."""
    from sealfn.modelstore import open_store

    name = "sealed-stored"
    key = generate_model_key()
    world.keyservice.upload_model_key(world.owner, name, key, world.keyservice.attest(world.policy))
    world.keyservice.grant(world.owner, name, "alice", [enclave_measurement()])
    store = tmp_path / "store"
    open_store(str(store)).put(name, seal_model(models.mlp.read_bytes(), key, name))
    spec = {"sealed": True, "keyservice": world.keyservice_url, "model_store": str(store)}
    world.server.client.deploy(name, None, **spec)
    deployment = world.keyservice.deployment_key(name, policy=world.policy)
    out = world.server.client.infer_sealed(
        name, {"input": _x()}, key=deployment, signer=world.alice
    )
    assert out["output"].shape == (1, 4)
    assert not (world.server.state_dir / "functions" / name / "model.sealed").exists()
    assert "fetch_s" in world.server.function(name)["last_cold_start"]


def test_broken_sealed_model_fails_opaquely(world: World, tmp_path: Path) -> None:
    """A sealed model that decrypts but is no model: the platform learns only that it failed."""
    name = "sealed-broken"
    key = generate_model_key()
    world.keyservice.upload_model_key(world.owner, name, key, world.keyservice.attest(world.policy))
    world.keyservice.grant(world.owner, name, "alice", [enclave_measurement()])
    sealed = tmp_path / "broken.sealed"
    sealed.write_bytes(seal_model(b"\x08\x07 secret-layer-name not an onnx graph", key, name))
    world.server.client.deploy(name, sealed, sealed=True, keyservice=world.keyservice_url)
    deployment = world.keyservice.deployment_key(name, policy=world.policy)
    with pytest.raises(Unavailable, match=f"sealed model '{name}' cannot be loaded") as failure:
        world.server.client.infer_sealed(name, {"input": _x()}, key=deployment, signer=world.alice)
    assert "secret-layer-name" not in failure.value.message
    assert "secret-layer-name" not in world.server.log()


def test_sealed_models_share_a_packed_enclave_instance(
    world: World, tmp_path: Path, models: Models
) -> None:
    """Two sealed models in one group: one enclave instance attests for each and serves both."""
    names = ["sealed-pack-a", "sealed-pack-b"]
    keys = {}
    for name in names:
        key = generate_model_key()
        service_key = world.keyservice.attest(world.policy)
        world.keyservice.upload_model_key(world.owner, name, key, service_key)
        world.keyservice.grant(world.owner, name, "alice", [enclave_measurement()])
        sealed = tmp_path / f"{name}.sealed"
        sealed.write_bytes(seal_model(models.mlp.read_bytes(), key, name))
        world.server.client.deploy(
            name, sealed, sealed=True, keyservice=world.keyservice_url, group="enclaves",
            max_instances=1,
        )  # fmt: skip
        keys[name] = world.keyservice.deployment_key(name, policy=world.policy)
    for name in names * 2:
        out = world.server.client.infer_sealed(
            name, {"input": _x()}, key=keys[name], signer=world.alice
        )
        assert out["output"].shape == (1, 4)
    held = {i["id"]: i["models"] for i in world.server.function(names[0])["instance_list"]}
    assert len(held) == 1
    assert sorted(next(iter(held.values()))) == names


def test_post_quantum_suite_end_to_end(world: World, tmp_path: Path, models: Models) -> None:
    """A model whose deployment key is the ML-KEM-768+X25519 hybrid serves sealed requests."""
    from sealfn.envelope import Suite

    name = "sealed-pq"
    key = generate_model_key()
    service_key = world.keyservice.attest(world.policy)
    world.keyservice.upload_model_key(
        world.owner, name, key, service_key, suite=Suite.MLKEM768X25519_SHA256_AES256GCM
    )
    world.keyservice.grant(world.owner, name, "alice", [enclave_measurement()])
    sealed = tmp_path / "pq.sealed"
    sealed.write_bytes(seal_model(models.mlp.read_bytes(), key, name))
    world.server.client.deploy(name, sealed, sealed=True, keyservice=world.keyservice_url)
    deployment = world.keyservice.deployment_key(name, policy=world.policy)
    assert deployment.suite is Suite.MLKEM768X25519_SHA256_AES256GCM
    out = world.server.client.infer_sealed(
        name, {"input": _x()}, key=deployment, signer=world.alice
    )
    assert out["output"].shape == (1, 4)


def test_keyservice_restart_leases_fail_closed_then_recover(world: World) -> None:
    """Keys are leased, not cached forever: with the KeyService gone a warm enclave stops
    serving within a lease; once it is back (same store: grants and keys survived) the enclave
    renews or re-attests and serves again. Runs last: it restarts the module's KeyService."""
    client = world.server.client

    def served() -> bool:
        with contextlib.suppress(AccessDenied):
            client.infer_sealed(MODEL, {"input": _x()}, key=world.key, signer=world.alice)
            return True
        return False

    assert served()
    world.stop_keyservice()
    stopped_at = time.monotonic()
    wait_until(lambda: not served(), 10, "the lease to lapse without its KeyService")
    assert time.monotonic() - stopped_at <= 5.5
    world.restart_keyservice()
    wait_until(served, 15, "the enclave to renew its lease with the restarted KeyService")
    # the restarted KeyService still has the model's deployment key (its store is sealed at rest)
    assert world.keyservice.deployment_key(MODEL, policy=world.policy) == world.key
