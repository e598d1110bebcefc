"""The KeyService: the relying party (RFC 9334) that releases model keys to attested enclaves.

One module per concept: ``auth`` (signed owner/user calls), ``principal`` (a local signing
identity), ``keys`` (the public keys it hands out), ``release`` (the sealed payload an enclave
opens), ``enclave`` (an enclave's lease on its keys), ``store`` (SQLite, secrets sealed at rest),
``config``, ``service`` (the logic), ``app`` (HTTP), ``client``, ``server``
(``serve_keyservice``), ``wire`` (the JSON encoding).
"""
