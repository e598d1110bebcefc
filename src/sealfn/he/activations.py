"""Trainable low-degree polynomial activations: ``a·x² + b·x + c`` per channel, with ``a > 0``.

A positive leading coefficient lets the compiler write the activation as an affine map followed by
one square, ``(√a·x + b/(2√a))² + (c - b²/(4a))``; the affine part folds into the preceding linear
layer, so each activation costs exactly one multiplicative level under CKKS.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional

A_MIN = 1e-3  # keeps √a and b/(2√a) well conditioned when the activation is folded


class PolyAct(nn.Module):
    """``a·x² + b·x + c`` with per-channel trainable ``a = A_MIN + softplus(rho)``, ``b``, ``c``."""

    def __init__(self, channels: int, *, a: float = 0.05, b: float = 1.0) -> None:
        super().__init__()
        rho = float(np.log(np.expm1(a - A_MIN)))  # softplus⁻¹(a - A_MIN)
        self.rho = nn.Parameter(torch.full((channels,), rho))
        self.b = nn.Parameter(torch.full((channels,), b))
        self.c = nn.Parameter(torch.zeros(channels))

    def leading(self) -> torch.Tensor:
        return A_MIN + functional.softplus(self.rho)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        a, b, c = (p.view(1, -1, 1, 1) for p in (self.leading(), self.b, self.c))
        return a * x * x + b * x + c

    def coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a, b, c)``, each of shape (C,), as float64."""
        with torch.no_grad():
            return tuple(  # type: ignore[return-value]
                p.detach().double().numpy().copy() for p in (self.leading(), self.b, self.c)
            )
