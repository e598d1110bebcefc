"""The offline dataset: scikit-learn's handwritten digits (8x8, 16 grey levels), split once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sealfn.errors import ConfigError

TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray  # (N, 1, 8, 8) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray


def digits(seed: int = 0) -> Split:
    """The 1,797 digits, shuffled with ``seed`` and split 80/20 (ships with scikit-learn)."""
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            "the digits dataset needs scikit-learn: pip install 'sealfn[models]'"
        ) from exc
    bunch = load_digits()
    x = (np.asarray(bunch.images, np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = np.asarray(bunch.target, np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * (1 - TEST_FRACTION))
    train, test = order[:cut], order[cut:]
    return Split(x[train], y[train], x[test], y[test])
