"""Settings of a KeyService: one frozen dataclass, checked when built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sealfn.attestation import Policy
from sealfn.envelope import Suite
from sealfn.errors import ConfigError
from sealfn.keyservice.auth import MAX_SKEW_S

DEFAULT_PORT = 8090
DEFAULT_DB = Path(".sealfn/keyservice.db")


@dataclass(frozen=True)
class KeyServiceConfig:
    """Settings of a KeyService. The defaults accept no simulated evidence."""

    accept_simulated: bool = False  # release keys to SIMULATED enclaves: development only
    trusted_simulated_roots: frozenset[bytes] = frozenset()  # simulated platforms' root keys
    allow_debug: bool = False  # release keys to hardware enclaves launched in debug mode
    evidence_max_age_s: float = 60.0
    challenge_ttl_s: float = 60.0  # a nonce is usable once, within this
    max_challenges: int = 10_000  # outstanding nonces; more is a flood
    lease_s: float = 4.0  # released keys are valid this long without a renewal
    renew_grace_s: float = 60.0  # a lapsed session may still renew this long after its lease
    session_max_s: float = 3600.0  # then the enclave must attest again
    max_skew_s: float = MAX_SKEW_S  # clock skew allowed on signed calls and renewals
    suite: Suite = Suite.X25519_SHA256_AES256GCM  # of the KeyService's own HPKE key
    max_models_per_release: int = 64

    def __post_init__(self) -> None:
        for key in (
            "evidence_max_age_s",
            "challenge_ttl_s",
            "lease_s",
            "renew_grace_s",
            "session_max_s",
            "max_skew_s",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{key}={value!r} must be a positive number of seconds")
        for key in ("max_challenges", "max_models_per_release"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} must be a positive integer")

    def policy(self) -> Policy:
        """The appraisal policy for enclaves. Measurements are not pinned here: each grant pins
        its own, and release reads ``claims.measurement`` against the grants."""
        return Policy(
            allowed_measurements=None,
            accept_simulated=self.accept_simulated,
            trusted_simulated_roots=self.trusted_simulated_roots,
            max_age_s=self.evidence_max_age_s,
            allow_debug=self.allow_debug,
        )
