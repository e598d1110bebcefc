"""A dataset of records on disk: one ``.npy``/``.npz`` file, or a folder of them as shards.

A record is one row (dim 0) of every array. An ``.npz`` names its arrays after the model's
inputs; a ``.npy`` holds one unnamed array, fed to a model with one input. Shards (CAI stores
partitions of ~5,000 samples per object) are read in file-name order and must agree on names.
``.npy`` files are memory-mapped, so an instance reads only its partitions' pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.errors import ConfigError, InvalidInput

Array = np.ndarray[Any, Any]
UNNAMED = ""  # the name of a .npy file's one array
SUFFIXES = (".npy", ".npz")


@dataclass(frozen=True)
class _Shard:
    path: Path
    start: int  # index of its first record in the dataset
    records: int


class Dataset:
    """Read-only access to records ``[start, stop)`` across shards."""

    def __init__(self, shards: list[_Shard], names: tuple[str, ...]) -> None:
        self._shards = shards
        self.names = names
        self.records = sum(s.records for s in shards)
        self._cache: tuple[Path, Mapping[str, Array]] | None = None

    @classmethod
    def open(cls, path: Path) -> Dataset:
        files = (
            sorted(p for p in path.iterdir() if p.suffix in SUFFIXES) if path.is_dir() else [path]
        )
        if not files:
            raise ConfigError(f"data {str(path)!r} holds no .npy or .npz shards")
        shards, names, start = [], None, 0
        for file in files:
            arrays = _load(file)
            these = tuple(sorted(arrays))
            if names is not None and these != names:
                raise ConfigError(f"shard {file.name!r} holds {these}, others {names}")
            names = these
            records = _records(file, arrays)
            shards.append(_Shard(file, start, records))
            start += records
        return cls(shards, names or ())

    def read(self, start: int, stop: int) -> dict[str, Array]:
        """Records ``[start, stop)`` of every array, as fresh in-memory arrays."""
        if not 0 <= start <= stop <= self.records:
            raise InvalidInput(f"records [{start}, {stop}) are outside 0..{self.records}")
        pieces: dict[str, list[Array]] = {name: [] for name in self.names}
        for shard in self._shards:
            lo, hi = max(start, shard.start), min(stop, shard.start + shard.records)
            if lo >= hi:
                continue
            arrays = self._arrays(shard.path)
            for name in self.names:
                pieces[name].append(np.asarray(arrays[name][lo - shard.start : hi - shard.start]))
        return {name: np.concatenate(parts) for name, parts in pieces.items()}

    def feeds(self, start: int, stop: int, inputs: tuple[str, ...]) -> dict[str, Array]:
        """Records ``[start, stop)`` keyed by the model's input names."""
        arrays = self.read(start, stop)
        if self.names == (UNNAMED,) and len(inputs) == 1:
            return {inputs[0]: arrays[UNNAMED]}
        missing = [name for name in inputs if name not in arrays]
        if missing:
            raise InvalidInput(f"the data has no array for model input(s) {missing}")
        return {name: arrays[name] for name in inputs}

    def _arrays(self, path: Path) -> Mapping[str, Array]:
        if self._cache is None or self._cache[0] != path:  # one shard open at a time
            self._cache = (path, _load(path))
        return self._cache[1]


def _load(path: Path) -> Mapping[str, Array]:
    try:
        if path.suffix == ".npy":
            return {UNNAMED: np.load(path, mmap_mode="r", allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"data file {str(path)!r} cannot be read: {exc}") from exc


def _records(path: Path, arrays: Mapping[str, Array]) -> int:
    counts = {int(a.shape[0]) if a.ndim else 1 for a in arrays.values()}
    if len(counts) != 1:
        raise ConfigError(f"the arrays of {path.name!r} hold different numbers of records")
    return counts.pop()
