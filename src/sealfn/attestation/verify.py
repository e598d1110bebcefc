"""The verifier: appraise evidence against a policy, and return the claims it proves.

Every rejection raises :class:`AttestationError` with the same opaque message; the reason goes to
the ``sealfn.attestation`` debug log only, so a caller learns nothing it could probe with.
"""

from __future__ import annotations

import logging
import time

from cryptography.hazmat.primitives import constant_time
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealfn.attestation.claims import Claims
from sealfn.attestation.policy import Policy, check
from sealfn.errors import AttestationError
from sealfn.tee.base import SIMULATED, check_bytes, report_data
from sealfn.tee.evidence import (
    TOKEN_DOMAIN,
    Certificate,
    Evidence,
    decode_claims,
    fingerprint,
    unhex,
    verify_signed,
)

FAILED = "attestation failed"
MEASUREMENT_SIZE = 48  # SHA-384 of the simulated manifest
log = logging.getLogger("sealfn.attestation")


def verify(
    evidence: bytes,
    *,
    nonce: bytes,
    public_key: bytes,
    policy: Policy,
    now: float | None = None,
) -> Claims:
    """The claims ``evidence`` proves, if it is authentic, fresh, bound to ``public_key`` and
    ``nonce``, and accepted by ``policy``; :class:`AttestationError` otherwise.

    ``now`` is the verifier's unix time in seconds (default: the clock).
    """
    for name, value in (("evidence", evidence), ("nonce", nonce), ("public_key", public_key)):
        check_bytes(name, value)
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a Policy, got {type(policy).__name__}")
    moment = time.time() if now is None else now
    try:
        return _appraise(bytes(evidence), bytes(nonce), bytes(public_key), policy, moment)
    except _NoVerifier as exc:
        log.debug("attestation rejected: no verifier for %s evidence", exc.tee)
        raise AttestationError(
            f"{FAILED}: verification of {exc.tee} quotes is not available in this build"
        ) from None
    except Exception as exc:  # any surprise while parsing hostile bytes is a rejection too
        log.debug("attestation rejected: %s", getattr(exc, "message", None) or repr(exc))
        raise AttestationError(FAILED) from None


class _NoVerifier(Exception):
    """Evidence of a TEE this build cannot verify."""

    def __init__(self, tee: str) -> None:
        super().__init__(tee)
        self.tee = tee


def _appraise(
    evidence: bytes, nonce: bytes, public_key: bytes, policy: Policy, now: float
) -> Claims:
    """Parse → authenticate → check the binding → apply the policy; raise with the reason."""
    parsed = Evidence.from_bytes(evidence)
    if parsed.tee != SIMULATED:
        raise _NoVerifier(parsed.tee)  # hardware quotes: see sealfn.tee.tsm / sealfn.tee.gramine
    claims = _simulated(parsed, policy)
    _check_binding(claims, public_key=public_key, nonce=nonce)
    check(claims, policy, now=now)
    return claims


def _simulated(evidence: Evidence, policy: Policy) -> Claims:
    """The claims of a simulated token whose certificate chains to a root ``policy`` trusts."""
    if not policy.accept_simulated:
        raise AttestationError("simulated evidence is not accepted by this policy")
    if len(evidence.chain) != 1:
        raise AttestationError(f"simulated evidence has {len(evidence.chain)} certificates, not 1")
    roots = {fingerprint(root): root for root in policy.trusted_simulated_roots}
    issuer = Certificate.issuer_of(evidence.chain[0])
    if issuer not in roots:
        raise AttestationError(f"simulated root {issuer} is not trusted")
    root = Ed25519PublicKey.from_public_bytes(roots[issuer])
    certificate = Certificate.open(evidence.chain[0], root)
    attestation_key = Ed25519PublicKey.from_public_bytes(certificate.subject)
    raw = decode_claims(verify_signed(attestation_key, TOKEN_DOMAIN, evidence.token))
    claims = Claims(
        tee=raw["tee"],
        simulated=raw["simulated"],
        debug=raw["debug"],
        measurement=unhex(raw["measurement"], MEASUREMENT_SIZE, "measurement"),
        report_data=unhex(raw["report_data"], 64, "report_data"),
        issued_at=float(raw["iat"]),
        platform=raw["platform"],
    )
    if (claims.tee, claims.simulated, claims.debug) != (SIMULATED, True, True):
        raise AttestationError("a simulated token must claim tee=simulated, simulated, debug")
    if claims.platform != certificate.issuer:
        raise AttestationError("token platform differs from its certificate's issuer")
    return claims


def _check_binding(claims: Claims, *, public_key: bytes, nonce: bytes) -> None:
    """The evidence must bind the key secrets will be wrapped to, and the nonce just issued."""
    if not constant_time.bytes_eq(claims.report_data, report_data(public_key, nonce)):
        raise AttestationError("report data does not bind this public key and nonce")
