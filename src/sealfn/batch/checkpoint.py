"""Per-partition checkpoints: a finished partition is written once, atomically, and never redone.

An instance writes ``part-<index>.bin`` (a partition's result bytes, sealed or not) to a
temporary name and renames it into place, so a kill mid-write leaves no half checkpoint; a later
round restores it instead of running the model again. Only the job's instances and its root read
the folder. No fsync: a killed instance's writes are already in the host's page cache (the
failure this guards against); surviving a crash of the host itself would need one per partition.
"""

from __future__ import annotations

import os
from pathlib import Path


class Checkpoints:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, partition: int, result: bytes) -> None:
        final = self._path(partition)
        partial = final.with_name(f"{final.name}.{os.getpid()}.part")
        with open(partial, "wb") as out:
            out.write(result)
        os.replace(partial, final)

    def load(self, partition: int) -> bytes | None:
        try:
            return self._path(partition).read_bytes()
        except FileNotFoundError:
            return None

    def _path(self, partition: int) -> Path:
        return self.folder / f"part-{partition:08d}.bin"
