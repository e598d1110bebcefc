"""What a lying worker may return instead of C = A·B: the tamper kinds the integrity tests and the
integrity benchmark check Freivalds against (adversary models, never used on a real run)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Tamper = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, np.random.Generator], torch.Tensor]


def one_entry(delta: float) -> Tamper:
    """One of the m·p entries off by ``delta`` times the largest entry."""

    def tamper(
        a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        out = c.clone()
        i, j = int(rng.integers(c.shape[0])), int(rng.integers(c.shape[1]))
        out[i, j] += delta * float(c.abs().max())
        return out

    return tamper


def scaled(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, rng: np.random.Generator
) -> torch.Tensor:
    """The whole result scaled by 1.001."""
    return c * (1 + 1e-3)


def swapped_rows(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, rng: np.random.Generator
) -> torch.Tensor:
    """Two rows exchanged."""
    i, k = rng.choice(c.shape[0], size=2, replace=False)
    out = c.clone()
    out[[i, k]] = c[[k, i]]
    return out


def stale(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, rng: np.random.Generator
) -> torch.Tensor:
    """The product of the previous step's operands: the weights moved by one small SGD update."""
    update = torch.from_numpy(rng.standard_normal(tuple(b.shape))).to(b.dtype) * 1e-2
    return a @ (b - update * b.abs().max())
