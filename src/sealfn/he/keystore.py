"""Evaluation keys on the server: content-addressed files, ``<state_dir>/he-keys/<sha256>``.

Evaluation keys are public material (no secret key: the instance refuses keys that hold one),
so the untrusted gateway may store them. They are streamed to disk as they arrive (tens to
hundreds of MB) and hashed on the way; the hash is the id every request refers to.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from sealfn.errors import InvalidInput, NotFound, PayloadTooLarge
from sealfn.he.protocol import check_key_id

KEYS_DIR = "he-keys"


class KeyStore:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / KEYS_DIR
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key_id: str) -> Path:
        """The file of ``key_id``; ``NotFound`` if it was never uploaded (or was deleted)."""
        path = self.root / check_key_id(key_id)
        if not path.is_file():
            raise NotFound(f"evaluation keys {key_id} are not uploaded: PUT them to /v2/he/keys")
        return path

    async def save(self, chunks: AsyncIterator[bytes], limit: int) -> str:
        """Stream ``chunks`` to disk (at most ``limit`` bytes) and return their id."""
        digest, size = hashlib.sha256(), 0
        handle, name = tempfile.mkstemp(prefix=".upload.", dir=self.root)
        try:
            with os.fdopen(handle, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"evaluation keys exceed the {limit}-byte limit")
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise InvalidInput("the body must be the evaluation keys")
            key_id = digest.hexdigest()
            os.replace(name, self.root / key_id)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return key_id

    def delete(self, key_id: str) -> None:
        self.path(key_id).unlink()
