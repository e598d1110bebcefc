"""Policy: construction checks, and check() as a table of claims, policies and times."""

from __future__ import annotations

import dataclasses

import pytest

from sealfn.attestation import Claims, Policy
from sealfn.attestation.policy import check
from sealfn.errors import AttestationError, ConfigError

NOW = 1_800_000_000.0
M1, M2 = b"\x01" * 48, b"\x02" * 48
ROOT = b"\x07" * 32

HARDWARE = Claims("tdx", False, False, M1, bytes(64), NOW, "intel")
DEBUG_HARDWARE = dataclasses.replace(HARDWARE, debug=True)
SIMULATED = Claims("simulated", True, True, M1, bytes(64), NOW, "root")

PINNED = Policy(frozenset({M1}))
SIM = Policy(frozenset({M1}), accept_simulated=True, trusted_simulated_roots=frozenset({ROOT}))


@pytest.mark.parametrize(
    ("claims", "policy", "now", "refusal"),
    [
        (HARDWARE, PINNED, NOW, None),
        (HARDWARE, Policy(None), NOW, None),
        (HARDWARE, Policy(frozenset({M2})), NOW, "not allowed"),
        (HARDWARE, Policy(frozenset()), NOW, "not allowed"),
        (HARDWARE, PINNED, NOW + 60, None),
        (HARDWARE, PINNED, NOW + 60.01, "stale"),
        (HARDWARE, PINNED, float("nan"), "stale"),
        (HARDWARE, dataclasses.replace(PINNED, max_age_s=600), NOW + 300, None),
        (HARDWARE, PINNED, NOW - 5, None),
        (HARDWARE, PINNED, NOW - 5.01, "future"),
        (DEBUG_HARDWARE, PINNED, NOW, "debug"),
        (DEBUG_HARDWARE, SIM, NOW, "debug"),  # accepting simulated is no licence for debug hardware
        (DEBUG_HARDWARE, dataclasses.replace(PINNED, allow_debug=True), NOW, None),
        (SIMULATED, PINNED, NOW, "simulated"),
        (SIMULATED, dataclasses.replace(PINNED, allow_debug=True), NOW, "simulated"),
        (SIMULATED, SIM, NOW, None),  # simulated is always debug: accepting it accepts that
        (SIMULATED, dataclasses.replace(SIM, allowed_measurements=frozenset({M2})), NOW, "allowed"),
    ],
)
def test_check(claims: Claims, policy: Policy, now: float, refusal: str | None) -> None:
    if refusal is None:
        check(claims, policy, now=now)
    else:
        with pytest.raises(AttestationError, match=refusal):
            check(claims, policy, now=now)


def test_defaults_refuse_simulated_and_debug() -> None:
    policy = Policy(None)
    assert (policy.accept_simulated, policy.allow_debug, policy.max_age_s) == (False, False, 60.0)


def test_sets_are_normalised_to_frozensets() -> None:
    policy = Policy([M1, M2], accept_simulated=True, trusted_simulated_roots={ROOT})  # type: ignore[arg-type]
    assert policy.allowed_measurements == frozenset({M1, M2})
    assert policy.trusted_simulated_roots == frozenset({ROOT})
    assert hash(policy) == hash(Policy(frozenset({M1, M2}), True, frozenset({ROOT})))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"allowed_measurements": M1}, TypeError, "not a single value"),
        ({"allowed_measurements": ["hex"]}, TypeError, "set of bytes"),
        ({"allowed_measurements": None, "accept_simulated": 1}, TypeError, "bool"),
        ({"allowed_measurements": None, "accept_simulated": True}, ConfigError, "trusted"),
        (
            {"allowed_measurements": None, "trusted_simulated_roots": frozenset({b"short"})},
            ConfigError,
            "32-byte",
        ),
        ({"allowed_measurements": None, "max_age_s": 0}, ConfigError, "max_age_s"),
        ({"allowed_measurements": None, "max_age_s": -1.0}, ConfigError, "max_age_s"),
        ({"allowed_measurements": None, "max_age_s": float("nan")}, ConfigError, "max_age_s"),
        ({"allowed_measurements": None, "max_age_s": float("inf")}, ConfigError, "max_age_s"),
        ({"allowed_measurements": None, "max_age_s": "60"}, ConfigError, "max_age_s"),
    ],
)
def test_bad_policies_fail_at_construction(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Policy(**kwargs)  # type: ignore[arg-type]
