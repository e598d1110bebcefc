"""Dirac-parameterised convolutions (DiracNets): the short skip is part of the kernel.

``DiracConv2d`` computes ``conv2d(x, diag(a)·δ + diag(b)·normalize(W))`` where δ is the identity
kernel, so ``conv(x) + x``-style shortcuts are learned inside one convolution and fold exactly into
a plain ``Conv2d`` at export: the network becomes a chain with no Add nodes.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional


class DiracConv2d(nn.Module):
    """A square 3x3 (or k x k, k odd) convolution with ``C_in == C_out`` and 'same' padding."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size {kernel_size} must be odd")
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight)
        self.alpha = nn.Parameter(torch.ones(channels))  # diag(a): weight of the identity
        self.beta = nn.Parameter(torch.full((channels,), 0.1))  # diag(b): weight of normalize(W)
        self.bias = nn.Parameter(torch.zeros(channels))
        delta = torch.zeros_like(self.weight)
        centre = kernel_size // 2
        delta[torch.arange(channels), torch.arange(channels), centre, centre] = 1.0
        self.register_buffer("delta", delta)

    def kernel(self) -> torch.Tensor:
        """The effective kernel (C_out, C_in, k, k) that a plain convolution would use."""
        flat = self.weight.flatten(1)
        normalized = (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(self.weight)
        delta = cast(torch.Tensor, self.delta)
        kernel = self.alpha.view(-1, 1, 1, 1) * delta + self.beta.view(-1, 1, 1, 1) * normalized
        return cast(torch.Tensor, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.conv2d(x, self.kernel(), self.bias, padding=self.padding)

    def fold(self) -> nn.Conv2d:
        """The same map as one plain ``Conv2d`` (exact up to float rounding)."""
        channels, _, k, _ = self.weight.shape
        conv = nn.Conv2d(channels, channels, k, padding=self.padding)
        with torch.no_grad():
            conv.weight.copy_(self.kernel())
            cast(torch.Tensor, conv.bias).copy_(self.bias)
        return conv
