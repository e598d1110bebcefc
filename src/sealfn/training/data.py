"""The offline training data: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sealfn.errors import ConfigError

TEST_FRACTION = 0.25
SPLIT_SEED = 0  # a fixed, public split, so every run evaluates on the same held-out images


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors: images flattened to (N, 64) in [0, 1], labels (N,) int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def digits(dtype: torch.dtype = torch.float32) -> Dataset:
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError("training data needs scikit-learn: pip install 'sealfn[models]'") from exc
    images, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    cut = int(len(labels) * (1 - TEST_FRACTION))
    x = torch.from_numpy(images / 16.0).to(dtype)
    y = torch.from_numpy(labels.astype(np.int64))
    train, test = torch.from_numpy(order[:cut]), torch.from_numpy(order[cut:])
    return Dataset(x[train], y[train], x[test], y[test])
