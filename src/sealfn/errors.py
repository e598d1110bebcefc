"""One error tree for sealfn; the gateway maps it to HTTP status codes in one table.

    SealfnError
    ├── ConfigError            a setting or deployment spec is invalid          (400)
    ├── InvalidInput           a request does not fit the model's signature     (400)
    │   └── PayloadTooLarge    a body is over the configured limit              (413)
    ├── NotFound               unknown function / model                         (404)
    ├── Conflict               the request clashes with current state           (409)
    ├── ModelError             a model cannot be loaded or run                  (422)
    ├── Unavailable            no capacity / instance lost mid-request          (503)
    │   ├── InstanceFailed     the instance serving the request died
    │   └── PeerLost           a collective peer left or timed out (a broken group)
    ├── DeadlineExceeded       waited longer than the request timeout           (504)
    ├── StorageError           the state directory refused a write (disk full)  (507)
    ├── ProtocolError          a malformed frame on the gateway↔instance IPC    (500)
    ├── AttestationError       evidence does not verify or fails the policy     (403)
    ├── AccessDenied           no grant for this (model, user, measurement)     (403)
    ├── Unauthenticated        an admin call without the right bearer token     (401)
    ├── EnvelopeError          a sealed message cannot be opened (opaque)       (400)
    └── IntegrityError         an untrusted worker's result fails verification

Core code raises these; foreign exceptions (onnxruntime, sqlite3, OSError) are translated once,
at the boundary, with ``raise X(...) from exc``.
"""

from __future__ import annotations


class SealfnError(Exception):
    """Base of every error sealfn raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(SealfnError):
    """A setting or deployment spec is invalid; the message names the key and the bad value."""


class InvalidInput(SealfnError):
    """A request does not match what the model expects; the message names the tensor."""


class PayloadTooLarge(InvalidInput):
    """A request body exceeds the configured limit."""


class NotFound(SealfnError):
    """An unknown function or model."""


class Conflict(SealfnError):
    """The request clashes with the current state (e.g. a function that is being removed)."""


class ModelError(SealfnError):
    """A model cannot be loaded or run."""


class Unavailable(SealfnError):
    """No capacity to serve the request now."""


class InstanceFailed(Unavailable):
    """The instance serving a request died after the request had started."""


class DeadlineExceeded(SealfnError):
    """A request waited longer than its timeout."""


class StorageError(SealfnError):
    """The state directory refused a write (disk full, quota, read-only); nothing was changed."""


class ProtocolError(SealfnError):
    """A malformed or unexpected frame on the gateway-instance IPC channel."""


class AttestationError(SealfnError):
    """Evidence failed verification or policy; the caller sees no detail (no oracle)."""


class AccessDenied(SealfnError):
    """A principal or enclave asked for something no grant allows."""


class Unauthenticated(SealfnError):
    """A call to a protected endpoint lacks valid credentials (the admin bearer token)."""


class EnvelopeError(SealfnError):
    """A sealed message cannot be opened: wrong key, tampered, replayed, expired, bad version.

    Always raised with the same opaque message; the reason goes to the debug log only.
    """

    def __init__(self, message: str = "cannot open envelope") -> None:
        super().__init__(message)


class PeerLost(Unavailable):
    """A collective peer closed its channel or did not answer in time (the group is broken)."""


class IntegrityError(SealfnError):
    """An untrusted worker's result failed verification (e.g. a Freivalds check); opaque."""
