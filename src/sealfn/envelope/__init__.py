"""Sealed requests and replies: HPKE (RFC 9180) to an attested key, replies as in RFC 9458.

Client: ``sealed, reply_key = seal_request(body, public_key, model_id=..., user_id=...)``, post
``sealed``, then ``reply_key.open_reply(answer)``. Gateway (untrusted): ``peek_header(sealed)``
to route by model id. Enclave: ``opened = open_request(sealed, keypair, expected_model_id=...,
replay=guard)`` then ``opened.seal_reply(result)``. Every refusal is the same ``EnvelopeError``.

The header (version, suite, model id, user id, timestamp, nonce) travels in clear and is HPKE's
``info``, so changing any byte of it makes the request unopenable; the enclave also checks the
timestamp (±30 s) and the (user, nonce) against a replay guard. The user id is bound, not proven:
base-mode HPKE does not authenticate the sender, so access checks need their own credential.

Design decision: how the reply key is made.

- Default suite, DHKEM(X25519)/HKDF-SHA256/AES-256-GCM: the reply key comes from a secret
  *exported* from the request's HPKE context, exactly as Oblivious HTTP does (RFC 9458 §4.4),
  with our own exporter label ``sealfn/v1 response``. cryptography 50's ``hpke.Suite`` is
  single-shot with no exporter, so this suite runs on pyhpke's contexts (built on cryptography's
  primitives). Tests pin it to RFC 9180's published vectors for exactly this suite and to
  cryptography's own HPKE in both directions (wire compatibility).
- Post-quantum suite, ML-KEM-768+X25519: only cryptography has it, and without an exporter. The
  client draws a fresh 32-byte secret and seals it as the first bytes of the HPKE plaintext; the
  reply key is derived from it by the same RFC 9458 steps. For our purposes this is equivalent to
  an export: the secret is uniformly random and fresh per request, only the holder of the
  request's plaintext (the sender and whoever holds the deployment's private key) can learn it,
  and it is bound to this request's header (the AEAD fails under any other ``info``) and to its
  ``enc`` (in the reply's salt). What an export adds, determinism from the key schedule, protects
  the sender only against its own bad randomness, which would already break its ephemeral KEM key.
  It costs 32 bytes per request.

Both suites then derive the reply key identically (``reply.py``), from the secret, ``enc`` and a
random 32-byte response nonce; replies are padded to size buckets inside the AEAD.
"""

from __future__ import annotations

from sealfn.envelope.format import RequestHeader, Suite
from sealfn.envelope.keys import KeyPair, generate_keypair
from sealfn.envelope.replay import ReplayGuard
from sealfn.envelope.reply import DEFAULT_BUCKETS, ReplyKey
from sealfn.envelope.request import OpenedRequest, open_request, peek_header, seal_request

__all__ = [
    "DEFAULT_BUCKETS",
    "KeyPair",
    "OpenedRequest",
    "ReplayGuard",
    "ReplyKey",
    "RequestHeader",
    "Suite",
    "generate_keypair",
    "open_request",
    "peek_header",
    "seal_request",
]
