"""A trained network as plain arrays: what the HE compiler reads (no PyTorch needed).

Both network kinds are one stem convolution (no activation: it is the shared source), ``blocks``
two-convolution blocks with polynomial activations, and a linear head on the flattened features:

- ``standard``: ``y = act2(conv2(act1(conv1(x))) + x)``   (a ResNet basic block)
- ``he``:       ``y = act2(conv2(act1(conv1(x)))) + s``   (Dirac-folded convs, ``s`` = stem output)
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sealfn.errors import ModelError

Kind = Literal["standard", "he"]
KINDS: tuple[Kind, ...] = ("standard", "he")


@dataclass(frozen=True)
class Conv:
    weight: np.ndarray  # (C_out, C_in, k, k), float64; 'same' padding k // 2
    bias: np.ndarray  # (C_out,)


@dataclass(frozen=True)
class Act:
    a: np.ndarray  # (C,) leading coefficients, all > 0
    b: np.ndarray  # (C,)
    c: np.ndarray  # (C,)

    def __call__(self, x: np.ndarray) -> np.ndarray:  # (C, H, W)
        a, b, c = (v[:, None, None] for v in (self.a, self.b, self.c))
        result: np.ndarray = a * x * x + b * x + c
        return result


@dataclass(frozen=True)
class Block:
    conv1: Conv
    act1: Act
    conv2: Conv
    act2: Act


@dataclass(frozen=True)
class NetGraph:
    kind: Kind
    image: tuple[int, int, int]  # (C, H, W) of one input
    stem: Conv
    blocks: tuple[Block, ...]
    head_weight: np.ndarray  # (classes, C·H·W), channel-major
    head_bias: np.ndarray  # (classes,)

    @property
    def classes(self) -> int:
        return int(self.head_weight.shape[0])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Reference logits (classes,) for one image (C, H, W), in float64."""
        source = _conv(self.stem, x.astype(np.float64))
        y = source
        for block in self.blocks:
            z = _conv(block.conv2, block.act1(_conv(block.conv1, y)))
            y = block.act2(z + y) if self.kind == "standard" else block.act2(z) + source
        logits: np.ndarray = self.head_weight @ y.reshape(-1) + self.head_bias
        return logits

    def to_bytes(self) -> bytes:
        """An ``.npz`` archive (no pickles) of every array plus a JSON header."""
        arrays: dict[str, np.ndarray] = {
            "head_weight": self.head_weight,
            "head_bias": self.head_bias,
        }
        arrays |= _conv_arrays("stem", self.stem)
        for i, block in enumerate(self.blocks):
            for name in ("conv1", "conv2"):
                arrays |= _conv_arrays(f"b{i}.{name}", getattr(block, name))
            for name in ("act1", "act2"):
                act = getattr(block, name)
                arrays |= {f"b{i}.{name}.{k}": getattr(act, k) for k in "abc"}
        header = {"version": 1, "kind": self.kind, "image": self.image, "blocks": len(self.blocks)}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        out = io.BytesIO()
        np.savez(out, allow_pickle=False, **arrays)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> NetGraph:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            header = json.loads(arrays["header"].tobytes())
            if header.get("version") != 1 or header.get("kind") not in KINDS:
                raise ModelError(f"unsupported HE network header {header!r}")
            blocks = tuple(_block(arrays, i) for i in range(int(header["blocks"])))
            return cls(
                header["kind"],
                tuple(header["image"]),
                _conv_from(arrays, "stem"),
                blocks,
                arrays["head_weight"],
                arrays["head_bias"],
            )
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"not an HE network file: {exc}") from exc


def tiny(seed: int = 0) -> NetGraph:
    """A seeded, untrained network of the smallest useful shape: a 1-channel 3x3 stem conv on
    8x8 and a linear head to 10 classes (depth 2, width 64: one N=8192 ring). Builds in
    microseconds without PyTorch: for tests, fuzzing and soaks, never for accuracy."""
    rng = np.random.default_rng(seed)
    stem = Conv(rng.normal(size=(1, 1, 3, 3)), rng.normal(size=1))
    return NetGraph("he", (1, 8, 8), stem, (), rng.normal(size=(10, 64)) / 8, rng.normal(size=10))


def _conv(conv: Conv, x: np.ndarray) -> np.ndarray:
    """'same' convolution of x (C_in, H, W) → (C_out, H, W) (cross-correlation, like PyTorch)."""
    c_out, _, k, _ = conv.weight.shape
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    _, h, w = x.shape
    out = np.zeros((c_out, h, w))
    for dy in range(k):
        for dx in range(k):
            window = padded[:, dy : dy + h, dx : dx + w]  # (C_in, H, W)
            out += np.einsum("oi,ihw->ohw", conv.weight[:, :, dy, dx], window)
    result: np.ndarray = out + conv.bias[:, None, None]
    return result


def _conv_arrays(prefix: str, conv: Conv) -> dict[str, np.ndarray]:
    return {f"{prefix}.weight": conv.weight, f"{prefix}.bias": conv.bias}


def _conv_from(arrays: dict[str, np.ndarray], prefix: str) -> Conv:
    return Conv(arrays[f"{prefix}.weight"], arrays[f"{prefix}.bias"])


def _block(arrays: dict[str, np.ndarray], i: int) -> Block:
    acts = [Act(*(arrays[f"b{i}.{name}.{k}"] for k in "abc")) for name in ("act1", "act2")]
    return Block(
        _conv_from(arrays, f"b{i}.conv1"), acts[0], _conv_from(arrays, f"b{i}.conv2"), acts[1]
    )
