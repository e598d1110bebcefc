"""Remote attestation, RFC 9334 roles: an enclave is the Attester, this is the Verifier, and the
KeyService is the Relying Party that acts on the :class:`Claims` :func:`verify` returns.

    claims = verify(evidence, nonce=nonce, public_key=enclave_key, policy=policy)

Only claims returned by ``verify`` may be used downstream; raw evidence is never read again.
"""

from __future__ import annotations

from sealfn.attestation.claims import Claims
from sealfn.attestation.policy import Policy
from sealfn.attestation.verify import FAILED, verify

__all__ = ["FAILED", "Claims", "Policy", "verify"]
