"""The two network kinds in PyTorch: a standard ResNet and its HE-friendly twin (same depth,
width and activations). See ``graph.py`` for the block equations."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from sealfn.errors import ConfigError
from sealfn.he.activations import PolyAct
from sealfn.he.dirac import DiracConv2d
from sealfn.he.graph import KINDS, Act, Block, Conv, Kind, NetGraph


@dataclass(frozen=True)
class NetConfig:
    """Shape of a network; defaults are the demo network (digits, 8x8 single-channel)."""

    kind: Kind = "he"
    channels: int = 4
    blocks: int = 1
    image: tuple[int, int, int] = (1, 8, 8)  # (C, H, W)
    classes: int = 10

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r} must be one of {', '.join(KINDS)}")
        if self.channels < 1 or self.blocks < 0:
            raise ConfigError(f"channels={self.channels}, blocks={self.blocks} must be ≥ 1 and ≥ 0")


class _Block(nn.Module):
    def __init__(self, kind: Kind, channels: int) -> None:
        super().__init__()
        self.kind = kind
        self.conv1, self.conv2 = (_conv_layer(kind, channels) for _ in range(2))
        self.act1, self.act2 = PolyAct(channels), PolyAct(channels)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        z = self.conv2(self.act1(self.conv1(x)))
        if self.kind == "standard":
            return self.act2(z + x)  # type: ignore[no-any-return]
        return self.act2(z) + source  # type: ignore[no-any-return]


class Net(nn.Module):
    """Stem conv → blocks → linear head on the flat features. (B, C, H, W) → (B, classes)."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = nn.Conv2d(config.image[0], config.channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            _Block(config.kind, config.channels) for _ in range(config.blocks)
        )
        _, h, w = config.image
        self.head = nn.Linear(config.channels * h * w, config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = self.stem(x)
        y = source
        for block in self.blocks:
            y = block(y, source)
        return self.head(y.flatten(1))  # type: ignore[no-any-return]

    def folded(self) -> Net:
        """A copy with every ``DiracConv2d`` replaced by the plain ``Conv2d`` it equals."""
        clone = copy.deepcopy(self)
        for block in clone.blocks:
            for name in ("conv1", "conv2"):
                conv = getattr(block, name)
                if isinstance(conv, DiracConv2d):
                    setattr(block, name, conv.fold())
        return clone

    def graph(self) -> NetGraph:
        """The folded network as plain float64 arrays (what the HE compiler reads)."""
        net = self.folded()
        blocks = tuple(
            Block(_conv(b.conv1), _act(b.act1), _conv(b.conv2), _act(b.act2))
            for b in cast(list[_Block], list(net.blocks))
        )
        return NetGraph(
            self.config.kind,
            self.config.image,
            _conv(net.stem),
            blocks,
            _array(net.head.weight),
            _array(cast(torch.Tensor, net.head.bias)),
        )


def _conv_layer(kind: Kind, channels: int) -> nn.Module:
    if kind == "he":
        return DiracConv2d(channels)
    return nn.Conv2d(channels, channels, 3, padding=1)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy().copy()


def _conv(conv: nn.Module) -> Conv:
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected a folded Conv2d, got {type(conv).__name__}")
    return Conv(_array(conv.weight), _array(cast(torch.Tensor, conv.bias)))


def _act(act: nn.Module) -> Act:
    if not isinstance(act, PolyAct):
        raise TypeError(f"expected PolyAct, got {type(act).__name__}")
    return Act(*act.coefficients())
