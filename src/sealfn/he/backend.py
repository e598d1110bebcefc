"""The HE backend interface: every CKKS library sealfn can use sits behind this Protocol.

The user holds a ``SecretKeys`` (never sent anywhere); the server gets only the evaluation keys
(public key, relinearisation and Galois keys, as bytes), referenced by their content hash.

Backends: ``tenseal`` (default, Apache-2.0, the ``he`` extra) and ``helayers`` (optional, IBM's
non-commercial community licence, never installed with sealfn). Each is imported only when used:
chosen by name for new keys, recognised by its magic in key files and evaluation keys.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol, TypeVar

import numpy as np

from sealfn.errors import ConfigError
from sealfn.he.params import CkksParams
from sealfn.he.plan import Plan


def key_id(evaluation_keys: bytes) -> str:
    """The id of a set of evaluation keys: SHA-256 of their bytes, hex."""
    return hashlib.sha256(evaluation_keys).hexdigest()


BACKENDS = ("tenseal", "helayers")  # the first is the default


class SecretKeys(Protocol):
    """The user's side: can encrypt and decrypt; serialisable for the user's own disk only."""

    @property
    def backend(self) -> str: ...

    @property
    def key_id(self) -> str: ...

    @property
    def params(self) -> CkksParams: ...

    def evaluation_keys(self) -> bytes: ...

    def to_bytes(self) -> bytes: ...


class Evaluator(Protocol):
    """The server's side: evaluation keys loaded once, then any number of ciphertexts."""

    @property
    def key_id(self) -> str: ...

    @property
    def levels(self) -> int: ...

    def evaluate(self, plan: Plan, ciphertext: bytes) -> bytes: ...


K_contra = TypeVar("K_contra", bound=SecretKeys, contravariant=True)  # its own key type


class Backend(Protocol[K_contra]):
    name: str

    def keygen(self, params: CkksParams) -> SecretKeys: ...

    def load_secret(self, data: bytes) -> SecretKeys: ...

    def encrypt(self, keys: K_contra, values: np.ndarray, width: int) -> bytes: ...

    def decrypt(self, keys: K_contra, ciphertext: bytes, width: int, count: int) -> np.ndarray: ...

    def evaluator(self, evaluation_keys: bytes) -> Evaluator: ...


def named(name: str = BACKENDS[0]) -> Backend[Any]:
    """The backend called ``name``, imported now; ``ConfigError`` names what to install."""
    if name == "tenseal":
        from sealfn.he.tenseal_backend import TensealBackend

        return TensealBackend()
    if name == "helayers":
        from sealfn.he.helayers_backend import HelayersBackend

        return HelayersBackend()
    raise ConfigError(f"HE backend {name!r} is not one of {', '.join(BACKENDS)}")


def for_keys(data: bytes) -> Backend[Any]:
    """The backend that made ``data`` (a secret key file or evaluation keys), by its magic."""
    from sealfn.he.helayers_backend import EVAL_MAGIC, SECRET_MAGIC

    return named("helayers" if data.startswith((EVAL_MAGIC, SECRET_MAGIC)) else "tenseal")


def evaluator_for(evaluation_keys: bytes) -> Evaluator:
    return for_keys(evaluation_keys).evaluator(evaluation_keys)


def load_secret(data: bytes) -> SecretKeys:
    return for_keys(data).load_secret(data)
