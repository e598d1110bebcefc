"""A request body spooled as it arrives: in memory up to a threshold, then in an unlinked temp
file; bounded; read back as one read-only ``uint8`` array without another copy.

The gateway holds at most one copy of an HE request: a ``bytearray`` (small ciphertexts, 0.5 MB
at N=8192) or the page cache of an anonymous file (large ones), which the instance handle copies
straight into the shared-memory arena.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sealfn.errors import PayloadTooLarge, StorageError

SPOOL_DIR = "he-spool"  # under the state dir: temp files are unlinked at once (O_TMPFILE)


class Spool:
    """Append-only, at most ``limit`` bytes; spills to a file past ``memory_bytes``."""

    def __init__(self, limit: int, memory_bytes: int, folder: Path) -> None:
        self.limit, self.memory_bytes, self.folder = limit, memory_bytes, folder
        self.size = 0
        self._memory = bytearray()
        self._file: BinaryIO | None = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def in_memory(self) -> bool:
        return self._file is None

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; ``PayloadTooLarge`` past the limit, ``StorageError`` on a full disk."""
        if self.size + len(chunk) > self.limit:
            raise PayloadTooLarge(
                f"the HE request exceeds the {self.limit}-byte limit (max_body_bytes)"
            )
        self.size += len(chunk)
        if self._file is None and self.size <= self.memory_bytes:
            self._memory += chunk
            return
        try:
            if self._file is None:
                self._file = self._spill()
            self._file.write(chunk)
        except OSError as exc:  # ENOSPC, EDQUOT: nothing is left behind (the file is unlinked)
            raise StorageError(f"cannot spool the HE request: {exc.strerror or exc}") from exc

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer if the body is shorter)."""
        if self._file is None:
            return bytes(self._memory[:n])
        self._file.flush()
        return os.pread(self._file.fileno(), n, 0)

    def array(self) -> np.ndarray:
        """The whole body as a read-only ``uint8`` array: a view, never a copy."""
        if self._file is None:
            view = np.frombuffer(self._memory, np.uint8)
        else:
            self._file.flush()
            view = np.memmap(self._file, np.uint8, mode="r", shape=(self.size,))
        view.flags.writeable = False
        return view

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # a memmap of it keeps its own mapping until it is collected
            self._file = None
        self._memory = bytearray()

    def _spill(self) -> BinaryIO:
        self.folder.mkdir(parents=True, exist_ok=True)
        spilled: BinaryIO = tempfile.TemporaryFile(dir=self.folder)  # noqa: SIM115 (closed in close)
        spilled.write(self._memory)
        self._memory = bytearray()
        return spilled
