"""Example ONNX models (a tiny MLP and a ResNet-18) built offline from seeded PyTorch modules.

The demo, the tests and the benchmarks all serve these. They are exported with
``torch.onnx.export`` (input ``"input"``, output ``"output"``, batch dim 0 dynamic) into one
self-contained ``.onnx`` file each; no weights are downloaded. PyTorch is only needed to *build*
them (the ``sealfn[models]`` extra) and is imported lazily, so the runtime never imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sealfn.errors import ModelError
from sealfn.torch_onnx import export_onnx

if TYPE_CHECKING:
    import torch

__all__ = [
    "BUILDER_VERSION",
    "ExampleModel",
    "build_examples",
    "build_mlp",
    "build_resnet18",
    "mlp_module",
    "resnet18_module",
]

BUILDER_VERSION = 1
"""Bump when a builder's output changes, so cached files are rebuilt."""

_INPUT_NAME = "input"
_OUTPUT_NAME = "output"
_RESNET_INPUT_SHAPE = (1, 3, 224, 224)  # (B, C, H, W)
_RESNET_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of first block)
_CALIBRATION_BATCHES = 4  # random batches that set the BatchNorm running statistics


@dataclass(frozen=True)
class ExampleModel:
    """An ONNX file on disk and the signature of its single input."""

    name: str
    path: Path
    input_name: str
    input_shape: tuple[int, ...]  # per-sample shape with batch dim 1, e.g. (1, 16)

    def sample(self, batch: int = 1, seed: int = 0) -> npt.NDArray[np.float32]:
        """A float32 standard-normal input of shape ``(batch, *input_shape[1:])``."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, *self.input_shape[1:]), dtype=np.float32)


def build_mlp(
    path: Path, *, in_features: int = 16, hidden: int = 64, out_features: int = 4, seed: int = 0
) -> ExampleModel:
    """Build a tiny MLP ``in_features -> hidden (ReLU) -> out_features`` at ``path``."""
    net = mlp_module(in_features=in_features, hidden=hidden, out_features=out_features, seed=seed)
    example = ExampleModel("mlp", Path(path), _INPUT_NAME, (1, in_features))
    _export(net, example, seed)
    return example


def build_resnet18(path: Path, *, num_classes: int = 1000, seed: int = 0) -> ExampleModel:
    """Build a ResNet-18-shaped CNN (BasicBlock [2,2,2,2]) for 1x3x224x224 inputs.

    The exporter's optimizer folds each eval-mode BatchNorm into the convolution before it.
    """
    net = resnet18_module(num_classes=num_classes, seed=seed)
    example = ExampleModel("resnet18", Path(path), _INPUT_NAME, _RESNET_INPUT_SHAPE)
    _export(net, example, seed)
    return example


def mlp_module(
    *, in_features: int = 16, hidden: int = 64, out_features: int = 4, seed: int = 0
) -> torch.nn.Module:
    """The seeded eval-mode torch module that :func:`build_mlp` exports (a reference to compare)."""
    _require_torch()
    from torch import nn

    with _seeded(seed) as generator:
        net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features)
        )
        _init_weights(net, generator)
    return net.eval()


def resnet18_module(*, num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """The seeded eval-mode torch module that :func:`build_resnet18` exports."""
    _require_torch()
    with _seeded(seed) as generator:
        net = _resnet18(num_classes)
        _init_weights(net, generator)
        _calibrate_batchnorm(net, generator)
    return net.eval()


@dataclass(frozen=True)
class _Recipe:
    build: Callable[..., ExampleModel]
    filename: str
    params: Mapping[str, int]  # keyword arguments of ``build``, seed included


_RECIPES: Mapping[str, _Recipe] = {
    "mlp": _Recipe(
        build_mlp, "mlp.onnx", {"in_features": 16, "hidden": 64, "out_features": 4, "seed": 0}
    ),
    "resnet18": _Recipe(build_resnet18, "resnet18.onnx", {"num_classes": 1000, "seed": 0}),
}


def build_examples(directory: Path, *, force: bool = False) -> dict[str, ExampleModel]:
    """Build every example model into ``directory``, reusing files a sidecar says are current."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    examples: dict[str, ExampleModel] = {}
    for name, recipe in _RECIPES.items():
        path = directory / recipe.filename
        example = None if force else _load_cached(name, path, recipe)
        if example is None:
            example = recipe.build(path, **recipe.params)
            _write_sidecar(example, recipe)
        examples[name] = example
    return examples


# --- building -------------------------------------------------------------------------------


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            "building example models needs PyTorch: pip install 'sealfn[models]'"
        ) from exc


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed torch for the block without leaking the seed into the caller's global RNG state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)


def _init_weights(net: torch.nn.Module, generator: torch.Generator) -> None:
    """Deterministic He/LeCun-style init from ``generator``; module order fixes the stream."""
    import torch
    from torch import nn

    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(
                    module.weight, mode="fan_out", nonlinearity="relu", generator=generator
                )
            elif isinstance(module, nn.Linear):
                bound = module.in_features**-0.5
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.5, 1.5, generator=generator)
                nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)


def _calibrate_batchnorm(net: torch.nn.Module, generator: torch.Generator) -> None:
    """Give BatchNorm realistic running statistics, so activations stay O(1) through the net."""
    import torch
    from torch import nn

    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(_CALIBRATION_BATCHES):
            net(torch.randn((2, *_RESNET_INPUT_SHAPE[1:]), generator=generator))
    net.eval()


def _resnet18(num_classes: int) -> torch.nn.Module:
    import torch
    from torch import nn

    # Defined here, not at module level, so that importing this module does not import torch.
    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
            bodies, shortcuts, channels = [], [], 64
            for width, stride in _RESNET_STAGES:
                for block_in, block_stride in ((channels, stride), (width, 1)):
                    body, shortcut = _basic_block(block_in, width, block_stride)
                    bodies.append(body)
                    shortcuts.append(shortcut)
                channels = width
            self.bodies = nn.ModuleList(bodies)
            self.shortcuts = nn.ModuleList(shortcuts)
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 224, 224) -> (B, classes)
            x = self.stem(x)  # (B, 64, 56, 56)
            for body, shortcut in zip(self.bodies, self.shortcuts, strict=True):
                x = torch.relu(body(x) + shortcut(x))
            return self.head(x)  # type: ignore[no-any-return]

    return ResNet18()


def _basic_block(
    in_channels: int, out_channels: int, stride: int
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A BasicBlock as ``(body, shortcut)``: two 3x3 convs, and identity or a 1x1 projection."""
    from torch import nn

    body = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )
    shortcut: nn.Module = nn.Identity()
    if stride != 1 or in_channels != out_channels:
        shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    return body, shortcut


def _export(net: torch.nn.Module, example: ExampleModel, seed: int) -> None:
    """Export ``net`` to one self-contained ONNX file at ``example.path``, written atomically."""
    import torch

    inputs = (torch.from_numpy(example.sample(batch=1, seed=seed)),)
    _write_atomic(example.path, export_onnx(net, inputs, [example.input_name], [_OUTPUT_NAME]))


# --- cache ----------------------------------------------------------------------------------


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".build.json")


def _sidecar(model: ExampleModel, recipe: _Recipe) -> dict[str, Any]:
    return {
        "builder_version": BUILDER_VERSION,
        "name": model.name,
        "params": dict(recipe.params),
        "input_name": model.input_name,
        "input_shape": list(model.input_shape),
        "sha256": _sha256(model.path),
    }


def _write_sidecar(model: ExampleModel, recipe: _Recipe) -> None:
    text = json.dumps(_sidecar(model, recipe), indent=2, sort_keys=True) + "\n"
    _write_atomic(_sidecar_path(model.path), text.encode())


def _load_cached(name: str, path: Path, recipe: _Recipe) -> ExampleModel | None:
    """The model at ``path`` if its sidecar records this builder version and these params."""
    try:
        record = json.loads(_sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not path.is_file():
        return None
    if record.get("builder_version") != BUILDER_VERSION or record.get("name") != name:
        return None
    if record.get("params") != dict(recipe.params) or record.get("sha256") != _sha256(path):
        return None
    try:
        shape = tuple(int(d) for d in record["input_shape"])
        return ExampleModel(name, path, str(record["input_name"]), shape)
    except (KeyError, TypeError, ValueError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and ``os.replace`` it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the file is a plain artifact, not a secret
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
