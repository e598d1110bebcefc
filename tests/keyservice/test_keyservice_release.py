"""Attestation-gated key release: claims decide, nonces are single use, leases carry revocation."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from keyservice_harness import MODEL, Harness

from sealfn.envelope import ReplayGuard, generate_keypair, open_request, seal_request
from sealfn.errors import AccessDenied, AttestationError, EnvelopeError, InvalidInput, NotFound
from sealfn.keyservice.config import KeyServiceConfig
from sealfn.keyservice.release import open_release, renewal_mac
from sealfn.keyservice.service import SESSION_DENIED
from sealfn.tee import report_data


def test_an_attested_enclave_gets_the_keys_and_the_grant_list(ks: Harness) -> None:
    deployment = ks.deploy()
    release, _ = ks.attest()
    [model] = release.models
    assert model.model_key == ks.model_key
    assert model.public_key == deployment.public_key
    assert model.users == ("alice", "bob")
    assert release.lease_expires == ks.clock() + 4
    assert len(release.session_secret) == 32
    # The released deployment key opens what a user sealed to the public key, and nothing else.
    sealed, reply_key = seal_request(
        b"an input", deployment.public_key, model_id=MODEL, user_id="alice", now=ks.clock()
    )
    opened = open_request(
        sealed, model.keypair(), expected_model_id=MODEL, replay=ReplayGuard(), now=ks.clock()
    )
    assert (opened.plaintext, opened.header.user_id) == (b"an input", "alice")
    assert reply_key.open_reply(opened.seal_reply(b"an output")) == b"an output"


def test_only_the_attested_key_opens_the_release(ks: Harness) -> None:
    ks.deploy()
    sealed, pair = ks.release()
    with pytest.raises(EnvelopeError):
        open_release(sealed, generate_keypair(), replay=ReplayGuard(), now=ks.clock())
    assert open_release(sealed, pair, replay=ReplayGuard(), now=ks.clock()).models


def test_simulated_evidence_is_refused_by_default(tmp_path: Path) -> None:
    harness = Harness(tmp_path, KeyServiceConfig())  # accept_simulated defaults to False
    try:
        harness.deploy()
        with pytest.raises(AttestationError, match=r"^attestation failed$"):
            harness.release()
    finally:
        harness.service.close()


def test_a_measurement_without_a_grant_is_denied_by_name(ks: Harness) -> None:
    ks.deploy()
    with pytest.raises(AccessDenied, match=f"^measurement not allowed for model {MODEL}$"):
        ks.release(tee=ks.rogue)
    ks.grant("alice", measurements=[ks.rogue.measurement()])  # now the patched code may run
    release, _ = ks.attest(tee=ks.rogue)
    assert release.models[0].users == ("alice",)


def test_release_is_all_or_nothing(ks: Harness) -> None:
    ks.deploy()
    ks.upload("other")  # uploaded, granted to no one
    with pytest.raises(AccessDenied, match="model other"):
        ks.release([MODEL, "other"])
    with pytest.raises(NotFound, match="unknown model"):
        ks.release([MODEL, "ghost"])
    pair = generate_keypair()
    nonce = ks.service.challenge(ks.clock())
    evidence = ks.enclave.evidence(report_data(pair.public_key, nonce))
    for bad in ([], "digits", ["bad id"]):
        with pytest.raises(InvalidInput):
            ks.service.release(evidence, nonce, pair.public_key, bad, now=ks.clock())
    ks.service.release(evidence, nonce, pair.public_key, [MODEL], now=ks.clock())  # unspent


def test_a_nonce_is_good_for_one_release_only(ks: Harness) -> None:
    ks.deploy()
    pair = generate_keypair()
    nonce = ks.service.challenge(ks.clock())
    evidence = ks.enclave.evidence(report_data(pair.public_key, nonce))
    ks.service.release(evidence, nonce, pair.public_key, [MODEL], now=ks.clock())
    with pytest.raises(AttestationError):
        ks.service.release(evidence, nonce, pair.public_key, [MODEL], now=ks.clock())


def test_expired_and_invented_nonces_are_refused(ks: Harness) -> None:
    ks.deploy()
    pair = generate_keypair()
    nonce = ks.service.challenge(ks.clock())
    ks.clock.advance(61)
    evidence = ks.enclave.evidence(report_data(pair.public_key, nonce))
    with pytest.raises(AttestationError):
        ks.service.release(evidence, nonce, pair.public_key, [MODEL], now=ks.clock())
    invented = secrets.token_bytes(32)
    evidence = ks.enclave.evidence(report_data(pair.public_key, invented))
    with pytest.raises(AttestationError):
        ks.service.release(evidence, invented, pair.public_key, [MODEL], now=ks.clock())


def test_evidence_for_one_key_cannot_release_to_another(ks: Harness) -> None:
    ks.deploy()
    enclave, thief = generate_keypair(), generate_keypair()
    nonce = ks.service.challenge(ks.clock())
    evidence = ks.enclave.evidence(report_data(enclave.public_key, nonce))
    with pytest.raises(AttestationError):
        ks.service.release(evidence, nonce, thief.public_key, [MODEL], now=ks.clock())


def test_a_failed_attempt_burns_the_nonce(ks: Harness) -> None:
    ks.deploy()
    pair = generate_keypair()
    nonce = ks.service.challenge(ks.clock())
    wrong = ks.enclave.evidence(report_data(pair.public_key, secrets.token_bytes(32)))
    with pytest.raises(AttestationError):
        ks.service.release(wrong, nonce, pair.public_key, [MODEL], now=ks.clock())
    right = ks.enclave.evidence(report_data(pair.public_key, nonce))
    with pytest.raises(AttestationError):  # no second try with the same nonce
        ks.service.release(right, nonce, pair.public_key, [MODEL], now=ks.clock())


# ---- leases ----------------------------------------------------------------------------------


def test_renewal_carries_revocations_and_a_new_lease(ks: Harness) -> None:
    ks.deploy()
    release, pair = ks.attest()
    ks.revoke("bob")
    ks.clock.advance(2)
    renewed = ks.renew(release, pair)
    assert renewed.session_id == release.session_id
    assert renewed.models[0].users == ("alice",)
    assert renewed.lease_expires == ks.clock() + 4
    ks.revoke("alice")
    ks.clock.advance(2)
    assert ks.renew(renewed, pair).models == ()  # no grant left: no keys at all
    ks.grant("bob")
    ks.clock.advance(2)
    assert ks.renew(renewed, pair).models[0].users == ("bob",)


def test_a_renewal_with_a_bad_mac_or_replayed_timestamp_is_denied(ks: Harness) -> None:
    ks.deploy()
    release, _ = ks.attest()
    timestamp = int(ks.clock() * 1000)
    forged = renewal_mac(secrets.token_bytes(32), release.session_id, timestamp)
    with pytest.raises(AccessDenied, match=f"^{SESSION_DENIED}$"):
        ks.service.renew(release.session_id, timestamp, forged, ks.clock())
    good = renewal_mac(release.session_secret, release.session_id, timestamp)
    ks.service.renew(release.session_id, timestamp, good, ks.clock())
    with pytest.raises(AccessDenied, match=f"^{SESSION_DENIED}$"):
        ks.service.renew(release.session_id, timestamp, good, ks.clock())
    stale = timestamp - 61_000
    with pytest.raises(AccessDenied):
        ks.service.renew(
            release.session_id,
            stale,
            renewal_mac(release.session_secret, release.session_id, stale),
            ks.clock(),
        )


def test_unknown_and_lapsed_sessions_must_attest_again(ks: Harness) -> None:
    ks.deploy()
    release, pair = ks.attest()
    with pytest.raises(AccessDenied, match=f"^{SESSION_DENIED}$"):
        ks.service.renew("0" * 32, int(ks.clock() * 1000), bytes(32), ks.clock())
    ks.clock.advance(4 + 59)  # lease over, still within the grace period
    ks.renew(release, pair)
    ks.clock.advance(4 + 61)  # now past it
    with pytest.raises(AccessDenied, match=f"^{SESSION_DENIED}$"):
        ks.renew(release, pair)


def test_sessions_must_attest_again_after_session_max(ks: Harness) -> None:
    ks.reopen(ks.config.__class__(**{**vars(ks.config), "session_max_s": 10.0}))
    ks.deploy()
    release, pair = ks.attest()
    for _ in range(3):
        ks.clock.advance(3)
        ks.renew(release, pair)
    ks.clock.advance(3)
    with pytest.raises(AccessDenied):
        ks.renew(release, pair)


def test_a_session_survives_a_restart(ks: Harness) -> None:
    ks.deploy()
    release, pair = ks.attest()
    ks.revoke("alice")
    ks.reopen()
    ks.clock.advance(1)
    assert ks.renew(release, pair).models[0].users == ("bob",)
