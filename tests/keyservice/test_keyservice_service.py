"""KeyService logic: model keys, owner-only grants, public keys, its own attestation, counters."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from keyservice_harness import MODEL, Harness, make_tee, simulated_config

from sealfn.attestation import Policy, verify
from sealfn.envelope import Suite, seal_request
from sealfn.errors import (
    AccessDenied,
    AttestationError,
    ConfigError,
    Conflict,
    EnvelopeError,
    InvalidInput,
    NotFound,
)
from sealfn.keyservice.config import KeyServiceConfig
from sealfn.keyservice.principal import Principal, PrincipalKind
from sealfn.keyservice.service import KeyService


def test_upload_returns_a_deployment_key_and_is_idempotent(ks: Harness) -> None:
    deployment = ks.deploy()
    assert (deployment.model_id, deployment.suite) == (MODEL, Suite.X25519_SHA256_AES256GCM)
    assert len(deployment.public_key) == 32
    assert ks.upload() == deployment  # the same key again: the same deployment key
    assert ks.service.deployment_key(MODEL) == deployment


def test_another_key_or_owner_for_a_taken_model_id_conflicts(ks: Harness) -> None:
    ks.deploy()
    with pytest.raises(Conflict, match="already has a key"):
        ks.upload(model_key=secrets.token_bytes(32))
    rival = Principal.generate("rival", PrincipalKind.OWNER)
    ks.register(rival)
    with pytest.raises(Conflict):
        ks.upload(owner=rival)


def test_only_owners_upload_keys(ks: Harness) -> None:
    ks.register(ks.alice)
    with pytest.raises(AccessDenied, match="not registered as a model owner"):
        ks.upload(owner=ks.alice)


def test_the_deployment_suite_can_be_chosen(ks: Harness) -> None:
    ks.register(ks.owner)
    key, _ = ks.service.attestation(secrets.token_bytes(32))
    sealed, _ = seal_request(
        ks.model_key, key.public_key, model_id="pq", user_id="acme", now=ks.clock()
    )
    call = ks.owner.sign("POST", "/v1/models/pq/key", sealed, now=ks.clock())
    suite = Suite.MLKEM768X25519_SHA256_AES256GCM
    deployment = ks.service.upload_model_key(call, "pq", sealed, now=ks.clock(), suite=suite)
    assert deployment.suite is suite
    assert len(deployment.public_key) > 1000


def _sealed_upload(ks: Harness, model_id: str, user_id: str, payload: bytes) -> bytes:
    key, _ = ks.service.attestation(secrets.token_bytes(32))
    sealed, _ = seal_request(
        payload, key.public_key, model_id=model_id, user_id=user_id, now=ks.clock()
    )
    return sealed


@pytest.mark.parametrize(
    ("model_id", "user_id"),
    [("other-model", "acme"), (MODEL, "someone-else")],
    ids=["sealed-for-another-model", "sealed-by-another-owner"],
)
def test_a_key_sealed_for_another_model_or_owner_is_refused(
    ks: Harness, model_id: str, user_id: str
) -> None:
    ks.register(ks.owner)
    sealed = _sealed_upload(ks, model_id, user_id, ks.model_key)
    call = ks.owner.sign("POST", f"/v1/models/{MODEL}/key", sealed, now=ks.clock())
    with pytest.raises(EnvelopeError):
        ks.service.upload_model_key(call, MODEL, sealed, now=ks.clock())
    with pytest.raises(NotFound):
        ks.service.deployment_key(MODEL)


def test_garbage_and_wrong_size_keys_are_refused(ks: Harness) -> None:
    ks.register(ks.owner)
    call = ks.owner.sign("POST", f"/v1/models/{MODEL}/key", b"junk", now=ks.clock())
    with pytest.raises(EnvelopeError):
        ks.service.upload_model_key(call, MODEL, b"junk", now=ks.clock())
    sealed = _sealed_upload(ks, MODEL, "acme", secrets.token_bytes(16))
    call = ks.owner.sign("POST", f"/v1/models/{MODEL}/key", sealed, now=ks.clock())
    with pytest.raises(InvalidInput, match="32 bytes"):
        ks.service.upload_model_key(call, MODEL, sealed, now=ks.clock())


def test_only_the_models_owner_grants_and_revokes(ks: Harness) -> None:
    ks.deploy()
    rival = Principal.generate("rival", PrincipalKind.OWNER)
    ks.register(rival)
    with pytest.raises(AccessDenied, match="only the owner"):
        ks.grant("rival", owner=rival)
    with pytest.raises(AccessDenied, match="only the owner"):
        ks.revoke("alice", owner=rival)
    with pytest.raises(AccessDenied, match="only the owner"):
        ks.grant("bob", owner=ks.alice)  # a user is not the owner either


def test_grant_checks_model_user_and_measurements(ks: Harness) -> None:
    ks.deploy()
    with pytest.raises(NotFound, match="unknown model"):
        ks.grant("alice", model_id="nope")
    with pytest.raises(NotFound, match="must register first"):
        ks.grant("carol")
    for bad in ([b"short"], [b"x" * 65]):
        with pytest.raises(InvalidInput, match="measurement"):
            ks.grant("alice", measurements=bad)
    call = ks.owner.sign("PUT", f"/v1/models/{MODEL}/grants/alice", b"{}", now=ks.clock())
    with pytest.raises(InvalidInput, match="at least one"):
        ks.service.grant(call, MODEL, "alice", [], ks.clock())
    with pytest.raises(InvalidInput):
        ks.grant("alice", model_id="../etc")


def test_revoking_without_a_grant_is_not_found(ks: Harness) -> None:
    ks.deploy()
    ks.revoke("bob")
    with pytest.raises(NotFound, match="no active grant"):
        ks.revoke("bob")


def test_its_own_attestation_binds_its_key_and_the_nonce(ks: Harness) -> None:
    nonce = secrets.token_bytes(32)
    key, evidence = ks.service.attestation(nonce)
    policy = Policy(
        frozenset({ks.ks_tee.measurement()}),
        accept_simulated=True,
        trusted_simulated_roots=frozenset({ks.platform.root_public_key()}),
    )
    claims = verify(evidence, nonce=nonce, public_key=key.public_key, policy=policy)
    assert claims.measurement == ks.ks_tee.measurement()
    assert key.simulated
    with pytest.raises(AttestationError):
        verify(evidence, nonce=secrets.token_bytes(32), public_key=key.public_key, policy=policy)
    with pytest.raises(InvalidInput):
        ks.service.attestation(b"short")


def test_the_deployment_key_can_be_attested(ks: Harness) -> None:
    deployment = ks.deploy()
    nonce = secrets.token_bytes(32)
    key, evidence = ks.service.attest_deployment_key(MODEL, nonce)
    assert key == deployment
    policy = Policy(
        frozenset({ks.ks_tee.measurement()}),
        accept_simulated=True,
        trusted_simulated_roots=frozenset({ks.platform.root_public_key()}),
    )
    verify(evidence, nonce=nonce, public_key=key.binding(), policy=policy)
    with pytest.raises(AttestationError):  # evidence for one key says nothing of another
        verify(evidence, nonce=nonce, public_key=deployment.public_key, policy=policy)


def test_its_key_pair_and_everything_else_survive_a_restart(ks: Harness) -> None:
    deployment = ks.deploy()
    own_key, _ = ks.service.attestation(secrets.token_bytes(32))
    ks.reopen()
    assert ks.service.attestation(secrets.token_bytes(32))[0] == own_key
    assert ks.service.deployment_key(MODEL) == deployment
    release, _ = ks.attest()
    assert release.models[0].model_key == ks.model_key
    assert set(release.models[0].users) == {"alice", "bob"}


def test_another_keyservice_measurement_cannot_open_the_store(ks: Harness) -> None:
    ks.deploy()
    ks.service.close()
    upgraded = make_tee(ks.platform, ks.clock, "keyservice v2")
    with pytest.raises(ConfigError, match="sealed by another KeyService"):
        KeyService.open(ks.db, upgraded, ks.config)
    ks.service = KeyService.open(ks.db, ks.ks_tee, ks.config)  # for the fixture's teardown


def test_accepting_simulated_evidence_needs_a_trusted_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trusted simulated root"):
        Harness(tmp_path, KeyServiceConfig(accept_simulated=True))


@pytest.mark.parametrize("setting", ["lease_s", "challenge_ttl_s", "max_skew_s"])
def test_bad_settings_name_the_key(setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        KeyServiceConfig(**{setting: 0})  # type: ignore[arg-type]


def test_accepting_simulated_enclaves_is_logged_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    harness = Harness(tmp_path)
    harness.service.close()
    with caplog.at_level("WARNING", "sealfn.keyservice"):
        harness.reopen(simulated_config(harness.platform))
    assert "ACCEPTS SIMULATED ENCLAVES" in caplog.text
    harness.service.close()


def test_calls_are_counted_per_operation(ks: Harness) -> None:
    ks.deploy()
    release, pair = ks.attest()
    ks.renew(release, pair)
    stats = ks.service.stats()
    assert stats["register"] == 3
    assert stats["grant"] == 2
    assert stats["challenge"] == stats["release"] == stats["renew"] == 1
