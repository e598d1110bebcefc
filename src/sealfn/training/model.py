"""The models the coordinator trains, and their forward pass with products offloaded.

This is model code: it lives only in the trusted coordinator, and the worker never imports it.
Models are ordinary ``nn.Sequential`` stacks, so the trained network exports to ONNX as is; only
:func:`forward` changes where the Linear and Conv2d products run.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from sealfn.training.bilinear import Conv2d
from sealfn.training.offload import Engine, product

MODELS = ("mlp", "cnn")
FEATURES = 64  # 8x8 digits
CLASSES = 10


def build(name: str, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """A freshly initialised model (``seed`` fixes the initial weights, for reproducible runs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "mlp":
            net = nn.Sequential(nn.Linear(FEATURES, 128), nn.ReLU(), nn.Linear(128, CLASSES))
        elif name == "cnn":
            net = nn.Sequential(
                nn.Unflatten(1, (1, 8, 8)),  # (B, 64) -> (B, 1, 8, 8)
                nn.Conv2d(1, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.MaxPool2d(2),  # (B, 16, 4, 4)
                nn.Conv2d(16, 32, 3, padding=1),
                nn.BatchNorm2d(32),
                nn.ReLU(),
                nn.MaxPool2d(2),  # (B, 32, 2, 2)
                nn.Flatten(),
                nn.Linear(128, CLASSES),
            )
        else:
            raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return net.to(dtype)


def forward(net: nn.Sequential, x: torch.Tensor, engine: Engine | None) -> torch.Tensor:
    """``net(x)``, with every Linear and Conv2d product computed by ``engine`` (None: in place)."""
    if engine is None:
        return net(x)  # type: ignore[no-any-return]
    for module in net:
        if isinstance(module, nn.Linear):
            x = linear(x, module, engine)
        elif isinstance(module, nn.Conv2d):
            x = conv2d(x, module, engine)
        else:
            x = module(x)
    return x


def linear(x: torch.Tensor, layer: nn.Linear, engine: Engine) -> torch.Tensor:
    y = product(x, layer.weight.T, engine)  # (B, in) @ (in, out)
    return y + layer.bias if layer.bias is not None else y


def conv2d(x: torch.Tensor, layer: nn.Conv2d, engine: Engine) -> torch.Tensor:
    """Conv2d as im2col then one product: (B*L, C*k*k) @ (C*k*k, O), L output positions; or,
    for an engine with ``conv == "channel"``, as one convolution with channel-level keys."""
    if layer.groups != 1 or not isinstance(layer.padding, tuple):
        raise ValueError("only ungrouped convolutions with explicit padding are offloaded")
    if engine.conv == "channel":
        (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
        ph, pw = (int(v) for v in layer.padding)
        op = Conv2d(
            (x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
            (layer.out_channels, layer.in_channels, kh, kw),
            (sh, sw),
            (ph, pw),
            (dh, dw),
        )
        y = product(x.contiguous(), layer.weight, engine, op)
        return y + layer.bias[None, :, None, None] if layer.bias is not None else y
    batch, _, height, width = x.shape
    kernel, stride, padding, dilation = (
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
    )
    cols = functional.unfold(
        x, kernel, dilation=dilation, padding=padding, stride=stride
    )  # (B, Ckk, L)
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    rows = cols.transpose(1, 2).reshape(batch * out_h * out_w, -1)
    weight = layer.weight.reshape(layer.out_channels, -1).T  # (Ckk, O)
    y = product(rows, weight, engine)  # (B*L, O)
    y = y.reshape(batch, out_h * out_w, layer.out_channels).transpose(1, 2)
    y = y.reshape(batch, layer.out_channels, out_h, out_w)
    return y + layer.bias[None, :, None, None] if layer.bias is not None else y
