"""Appraisal policy: which verified claims a relying party accepts (pure; time injected)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sealfn.attestation.claims import Claims
from sealfn.errors import AttestationError, ConfigError

CLOCK_SKEW_S = 5.0  # seconds an attester's clock may run ahead of the verifier's
ROOT_KEY_SIZE = 32  # raw Ed25519 public key


@dataclass(frozen=True)
class Policy:
    """What evidence must show to be accepted. The defaults accept no simulated evidence.

    ``allowed_measurements=None`` accepts any measurement: for tests and local development only.
    A relying party that releases keys must pin the measurements it trusts.
    ``accept_simulated`` accepts simulated evidence (which is always debug: the host can read a
    simulated enclave) but only when it chains to one of ``trusted_simulated_roots`` (raw
    Ed25519 public keys, see ``SimulatedPlatform.root_public_key``). ``allow_debug`` accepts
    hardware enclaves launched in debug mode. Evidence older than ``max_age_s`` seconds is stale.
    """

    allowed_measurements: frozenset[bytes] | None
    accept_simulated: bool = False
    trusted_simulated_roots: frozenset[bytes] = frozenset()
    max_age_s: float = 60.0
    allow_debug: bool = False

    def __post_init__(self) -> None:
        if self.allowed_measurements is not None:
            _set(self, "allowed_measurements", _byte_set(self.allowed_measurements))
        _set(self, "trusted_simulated_roots", _byte_set(self.trusted_simulated_roots))
        for name in ("accept_simulated", "allow_debug"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Policy.{name} must be a bool")
        if any(len(root) != ROOT_KEY_SIZE for root in self.trusted_simulated_roots):
            raise ConfigError(f"Policy.trusted_simulated_roots must be {ROOT_KEY_SIZE}-byte keys")
        if self.accept_simulated and not self.trusted_simulated_roots:
            raise ConfigError("Policy.accept_simulated needs at least one trusted simulated root")
        if not isinstance(self.max_age_s, int | float) or not 0 < self.max_age_s < float("inf"):
            raise ConfigError(f"Policy.max_age_s must be a positive number, got {self.max_age_s!r}")


def check(claims: Claims, policy: Policy, *, now: float) -> None:
    """Raise :class:`AttestationError` with the reason if ``policy`` refuses verified ``claims``.

    The reason is for the verifier's debug log; :func:`~sealfn.attestation.verify` hides it.
    """
    age = now - claims.issued_at  # seconds
    if not -CLOCK_SKEW_S <= age <= policy.max_age_s:  # written so that NaN fails too
        when = f"{-age:.1f} s in the future" if age < 0 else f"{age:.1f} s ago"
        raise AttestationError(f"evidence is stale or future-dated: issued {when}")
    if claims.simulated and not policy.accept_simulated:
        raise AttestationError("simulated evidence is not accepted by this policy")
    if claims.debug and not (policy.allow_debug or (claims.simulated and policy.accept_simulated)):
        raise AttestationError("debug enclaves are not accepted by this policy")
    allowed = policy.allowed_measurements
    if allowed is not None and claims.measurement not in allowed:
        raise AttestationError(f"measurement {claims.measurement.hex()} is not allowed")


def _byte_set(values: Iterable[bytes]) -> frozenset[bytes]:
    if isinstance(values, bytes | bytearray | str) or not isinstance(values, Iterable):
        raise TypeError("expected a set of bytes values, not a single value")
    items = frozenset(values)
    if not all(isinstance(item, bytes) for item in items):
        raise TypeError("expected a set of bytes values")
    return items


def _set(policy: Policy, name: str, value: object) -> None:
    object.__setattr__(policy, name, value)  # normalising a frozen dataclass at construction
