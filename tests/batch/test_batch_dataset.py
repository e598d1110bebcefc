from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sealfn.batch.dataset import Dataset
from sealfn.errors import ConfigError, InvalidInput


def test_shards_read_as_one_dataset(tmp_path: Path) -> None:
    images = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    mags = np.arange(10, dtype=np.float64)
    for i, (lo, hi) in enumerate([(0, 3), (3, 7), (7, 10)]):
        np.savez(tmp_path / f"shard-{i}.npz", image=images[lo:hi], mags=mags[lo:hi])
    data = Dataset.open(tmp_path)
    assert data.records == 10 and data.names == ("image", "mags")
    part = data.read(2, 8)  # spans all three shards
    np.testing.assert_array_equal(part["image"], images[2:8])
    np.testing.assert_array_equal(data.feeds(2, 8, ("mags",))["mags"], mags[2:8])


def test_a_single_npy_feeds_a_single_input_model(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((4, 2)))
    data = Dataset.open(tmp_path / "x.npy")
    assert data.feeds(1, 3, ("input",))["input"].shape == (2, 2)


def test_missing_inputs_and_ranges_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.ones((4, 2)))
    data = Dataset.open(tmp_path / "x.npz")
    with pytest.raises(InvalidInput, match="no array for model input"):
        data.feeds(0, 2, ("b",))
    with pytest.raises(InvalidInput):
        data.read(3, 5)


def test_shards_must_agree(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.ones(2))
    np.savez(tmp_path / "b.npz", y=np.ones(2))
    with pytest.raises(ConfigError, match="holds"):
        Dataset.open(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no \.npy"):
        Dataset.open(empty)
