"""verify(): simulated evidence round-trips; a forgery, replay or policy miss: one opaque error."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealfn.attestation import FAILED, Claims, Policy, verify
from sealfn.errors import AttestationError
from sealfn.tee.base import canonical_json, report_data
from sealfn.tee.evidence import (
    TOKEN_DOMAIN,
    Certificate,
    Evidence,
    fingerprint,
    sign,
    unsigned_body,
)
from sealfn.tee.manifest import Manifest
from sealfn.tee.simulated import SimulatedPlatform, SimulatedTee

NOW = 1_800_000_000.0  # unix seconds: when the evidence is made
KEY = b"\x01" * 32  # the enclave's ephemeral public key (opaque bytes to the verifier)
NONCE = b"\x02" * 32  # what the verifier issued
OPAQUE = f"^{FAILED}$"


@pytest.fixture(scope="module")
def platform() -> SimulatedPlatform:
    return SimulatedPlatform.create(now=NOW - 3600)


@pytest.fixture(scope="module")
def tee(platform: SimulatedPlatform) -> SimulatedTee:
    return SimulatedTee(platform, Manifest.build(["sealfn.errors"]), clock=lambda: NOW)


@pytest.fixture(scope="module")
def policy(platform: SimulatedPlatform, tee: SimulatedTee) -> Policy:
    return Policy(
        allowed_measurements=frozenset({tee.measurement()}),
        accept_simulated=True,
        trusted_simulated_roots=frozenset({platform.root_public_key()}),
    )


@pytest.fixture(scope="module")
def evidence(tee: SimulatedTee) -> bytes:
    return tee.evidence(report_data(KEY, NONCE))


def _claims(evidence: bytes) -> dict[str, object]:
    return dict(json.loads(unsigned_body(Evidence.from_bytes(evidence).token)))


def _resigned(
    platform: SimulatedPlatform, evidence: bytes, changes: dict[str, object] | None = None
) -> bytes:
    """The evidence with claims changed and validly re-signed by the platform's attestation key."""
    body = canonical_json({**_claims(evidence), **(changes or {})})
    parsed = Evidence.from_bytes(evidence)
    return dataclasses.replace(parsed, token=platform.sign_token(body)).to_bytes()


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


def test_evidence_round_trip_gives_the_claims(
    tee: SimulatedTee, platform: SimulatedPlatform, policy: Policy, evidence: bytes
) -> None:
    claims = verify(evidence, nonce=NONCE, public_key=KEY, policy=policy, now=NOW + 1)
    assert claims == Claims(
        tee="simulated",
        simulated=True,
        debug=True,
        measurement=tee.measurement(),
        report_data=report_data(KEY, NONCE),
        issued_at=NOW,
        platform=fingerprint(platform.root_public_key()),
    )


@pytest.mark.parametrize("now", [NOW, NOW + 59.9, NOW - 4.9])
def test_fresh_evidence_and_small_clock_skew_are_accepted(
    policy: Policy, evidence: bytes, now: float
) -> None:
    verify(evidence, nonce=NONCE, public_key=KEY, policy=policy, now=now)


def test_any_measurement_policy_accepts_another_enclave(
    platform: SimulatedPlatform, policy: Policy
) -> None:
    other = SimulatedTee(platform, Manifest.build(["sealfn.errors"], {"other": True}))
    anything = dataclasses.replace(policy, allowed_measurements=None)
    evidence = other.evidence(report_data(KEY, NONCE))
    assert verify(evidence, nonce=NONCE, public_key=KEY, policy=anything).measurement == (
        other.measurement()
    )


Forge = Callable[[SimulatedPlatform, SimulatedTee, Policy, bytes], bytes]


def _token_tampered(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
    parsed = Evidence.from_bytes(e)
    token = parsed.token.replace(b'"debug":true', b'"debug":false')
    return dataclasses.replace(parsed, token=token).to_bytes()


def _token_signature_flipped(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
    parsed = Evidence.from_bytes(e)
    return dataclasses.replace(parsed, token=_flip(parsed.token, len(parsed.token) - 5)).to_bytes()


def _certificate_subject_swapped(
    p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes
) -> bytes:
    """The trusted root's certificate with the attacker's key put in, and a token it signed."""
    parsed, rogue = Evidence.from_bytes(e), Ed25519PrivateKey.generate()
    body = json.loads(unsigned_body(parsed.chain[0]))
    body["subject"] = rogue.public_key().public_bytes_raw().hex()
    cert = canonical_json(body) + parsed.chain[0][-64:]  # the root's signature, now over nothing
    token = sign(rogue, TOKEN_DOMAIN, unsigned_body(parsed.token))
    return Evidence("simulated", token, (cert,)).to_bytes()


def _certificate_signature_flipped(
    p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes
) -> bytes:
    parsed = Evidence.from_bytes(e)
    return dataclasses.replace(
        parsed, chain=(_flip(parsed.chain[0], len(parsed.chain[0]) - 1),)
    ).to_bytes()


def _rogue_key_under_trusted_name(
    p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes
) -> bytes:
    """An attacker's own root certifies its own attestation key, naming the trusted root."""
    rogue_root, rogue_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    subject = rogue_key.public_key().public_bytes_raw()
    cert = Certificate(subject, p.fingerprint, NOW).sign(rogue_root)
    token = sign(rogue_key, TOKEN_DOMAIN, unsigned_body(Evidence.from_bytes(e).token))
    return Evidence("simulated", token, (cert,)).to_bytes()


def _untrusted_platform(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
    stranger = SimulatedTee(SimulatedPlatform.create(), t.manifest, clock=lambda: NOW)
    return stranger.evidence(report_data(KEY, NONCE))


def _certificate_as_token(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
    parsed = Evidence.from_bytes(e)
    return dataclasses.replace(parsed, token=parsed.chain[0]).to_bytes()


def _no_certificate(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
    return dataclasses.replace(Evidence.from_bytes(e), chain=()).to_bytes()


def _two_certificates(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
    parsed = Evidence.from_bytes(e)
    return dataclasses.replace(parsed, chain=parsed.chain * 2).to_bytes()


def _envelope(**changes: object) -> Forge:
    def change(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
        return canonical_json({**json.loads(e), **changes})

    return change


def _claim(**changes: object) -> Forge:
    def change(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
        return _resigned(p, e, changes)

    return change


def _raw_claims(body: bytes) -> Forge:
    def change(p: SimulatedPlatform, t: SimulatedTee, pol: Policy, e: bytes) -> bytes:
        return dataclasses.replace(Evidence.from_bytes(e), token=p.sign_token(body)).to_bytes()

    return change


def _bytes(raw: bytes) -> Forge:
    return lambda p, t, pol, e: raw


def _cut(size: int) -> Forge:
    return lambda p, t, pol, e: e[:size]


FORGERIES: dict[str, Forge] = {
    "token claim tampered": _token_tampered,
    "token signature flipped": _token_signature_flipped,
    "certificate subject swapped": _certificate_subject_swapped,
    "certificate signature flipped": _certificate_signature_flipped,
    "rogue root under the trusted name": _rogue_key_under_trusted_name,
    "untrusted root": _untrusted_platform,
    "certificate used as token": _certificate_as_token,
    "no certificate": _no_certificate,
    "two certificates": _two_certificates,
    "envelope version 2": _envelope(v=2),
    "envelope version missing": lambda p, t, pol, e: canonical_json(
        {k: v for k, v in json.loads(e).items() if k != "v"}
    ),
    "claims version 2": _claim(version=2),
    "claims not simulated": _claim(simulated=False),
    "claims not debug": _claim(debug=False),
    "claims say tdx": _claim(tee="tdx"),
    "claims name another platform": _claim(platform="00" * 32),
    "claims extra field": _claim(extra=1),
    "claims iat a string": _claim(iat=str(NOW)),
    "claims measurement short": _claim(measurement="00" * 47),
    "claims measurement upper case": _claim(measurement="AB" * 48),
    "claims iat NaN": _raw_claims(b'{"iat":NaN}'),
    "claims not JSON": _raw_claims(b"\xff not json"),
    "empty": _bytes(b""),
    "garbage": _bytes(os.urandom(300)),
    "JSON null": _bytes(b"null"),
    "JSON object": _bytes(b"{}"),
    "truncated by one": lambda p, t, pol, e: e[:-1],
    "truncated to half": lambda p, t, pol, e: e[: len(e) // 2],
    "truncated to 10": _cut(10),
    "oversized": _bytes(b" " * (1 << 17)),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_or_malformed_evidence_is_refused_opaquely(
    forge: Forge,
    platform: SimulatedPlatform,
    tee: SimulatedTee,
    policy: Policy,
    evidence: bytes,
) -> None:
    forged = forge(platform, tee, policy, evidence)
    with pytest.raises(AttestationError, match=OPAQUE):
        verify(forged, nonce=NONCE, public_key=KEY, policy=policy, now=NOW + 1)


def test_resigning_unchanged_claims_still_verifies(
    platform: SimulatedPlatform, policy: Policy, evidence: bytes
) -> None:
    """The forgery helper is sound: the refusals above come from the change, not the helper."""
    verify(_resigned(platform, evidence), nonce=NONCE, public_key=KEY, policy=policy, now=NOW)


@pytest.mark.parametrize(
    "case",
    [
        (b"\x03" * 32, KEY, NOW, "report data"),  # replay against a new nonce
        (NONCE, b"\x04" * 32, NOW, "report data"),  # evidence for another key
        (NONCE[:-1], KEY, NOW, "report data"),
        (NONCE, KEY, NOW + 60.1, "s ago"),
        (NONCE, KEY, NOW - 5.1, "in the future"),
    ],
    ids=["wrong nonce", "wrong public key", "short nonce", "stale", "future-dated"],
)
def test_binding_and_freshness_failures_are_opaque_but_logged(
    policy: Policy,
    evidence: bytes,
    caplog: pytest.LogCaptureFixture,
    case: tuple[bytes, bytes, float, str],
) -> None:
    nonce, key, now, reason = case
    with (
        caplog.at_level(logging.DEBUG, logger="sealfn.attestation"),
        pytest.raises(AttestationError, match=OPAQUE) as raised,
    ):
        verify(evidence, nonce=nonce, public_key=key, policy=policy, now=now)
    assert reason not in str(raised.value)
    assert reason in caplog.text


@pytest.mark.parametrize(
    "changes",
    [
        {"accept_simulated": False, "trusted_simulated_roots": frozenset()},
        {"trusted_simulated_roots": frozenset({bytes(32)})},
        {"allowed_measurements": frozenset({bytes(48)})},
        {"allowed_measurements": frozenset()},
        {"max_age_s": 0.5},
    ],
    ids=["simulated not accepted", "root not trusted", "measurement not allowed", "empty", "age"],
)
def test_policy_refusals_are_opaque(
    policy: Policy, evidence: bytes, changes: dict[str, object]
) -> None:
    strict = dataclasses.replace(policy, **changes)  # type: ignore[arg-type]
    with pytest.raises(AttestationError, match=OPAQUE):
        verify(evidence, nonce=NONCE, public_key=KEY, policy=strict, now=NOW + 1)


def test_the_default_policy_refuses_simulated_evidence(tee: SimulatedTee, evidence: bytes) -> None:
    with pytest.raises(AttestationError, match=OPAQUE):
        verify(evidence, nonce=NONCE, public_key=KEY, policy=Policy(None), now=NOW)


@pytest.mark.parametrize("kind", ["tdx", "sev-snp", "sgx-gramine"])
def test_hardware_evidence_is_refused_until_a_verifier_exists(policy: Policy, kind: str) -> None:
    evidence = Evidence(kind, b"\x04\x00\x02\x00\x81" + bytes(1000)).to_bytes()
    lenient = Policy(None, allow_debug=True)
    for chosen in (policy, lenient):
        with pytest.raises(AttestationError) as raised:
            verify(evidence, nonce=NONCE, public_key=KEY, policy=chosen, now=NOW)
        expected = f"{FAILED}: verification of {kind} quotes is not available in this build"
        assert str(raised.value) == expected


def test_arguments_of_the_wrong_type_fail_early(policy: Policy, evidence: bytes) -> None:
    with pytest.raises(TypeError, match="evidence must be bytes"):
        verify(evidence.decode(), nonce=NONCE, public_key=KEY, policy=policy)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy must be a Policy"):
        verify(evidence, nonce=NONCE, public_key=KEY, policy={})  # type: ignore[arg-type]


def test_evidence_and_verify_take_well_under_a_millisecond_or_two(
    tee: SimulatedTee, policy: Policy
) -> None:
    """Attestation plus key release must fit in 50 ms on loopback; these are its crypto part."""
    rounds = []
    for _ in range(200):
        start = time.perf_counter()
        made = tee.evidence(report_data(KEY, NONCE))
        verify(made, nonce=NONCE, public_key=KEY, policy=policy, now=NOW)
        rounds.append(time.perf_counter() - start)
    assert statistics.median(rounds) < 0.005  # seconds; ~0.5 ms on a laptop core
