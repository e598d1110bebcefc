"""The HE backend interface: every CKKS library sealfn can use sits behind this Protocol.

The user holds a ``SecretKeys`` (never sent anywhere); the server gets only the evaluation keys
(public key, relinearisation and Galois keys, as bytes), referenced by their content hash.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import numpy as np

from sealfn.he.params import CkksParams
from sealfn.he.plan import Plan


def key_id(evaluation_keys: bytes) -> str:
    """The id of a set of evaluation keys: SHA-256 of their bytes, hex."""
    return hashlib.sha256(evaluation_keys).hexdigest()


class SecretKeys(Protocol):
    """The user's side: can encrypt and decrypt; serialisable for the user's own disk only."""

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


class Backend(Protocol):
    name: str

    def keygen(self, params: CkksParams) -> SecretKeys: ...

    def load_secret(self, data: bytes) -> SecretKeys: ...

    def encrypt(self, keys: SecretKeys, values: np.ndarray, width: int) -> bytes: ...

    def decrypt(
        self, keys: SecretKeys, ciphertext: bytes, width: int, count: int
    ) -> np.ndarray: ...

    def evaluator(self, evaluation_keys: bytes) -> Evaluator: ...
