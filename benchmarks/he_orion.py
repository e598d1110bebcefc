"""The same networks on Orion (``orion-fhe``, MIT, Lattigo backend) — a measured candidate only.

Run with a Python that has ``orion-fhe`` (a throwaway venv: it declares torch/torchvision as
dependencies, which must not reach sealfn's venv), in its own process:
``python benchmarks/he_orion.py NET.he IMAGES.npy`` prints one JSON line. The network is rebuilt
from the ``NetGraph`` arrays with Orion's layers: Conv2d (the activation's affine part folded in,
as for the TenSEAL plan), Quad, BatchNorm2d (the activation's constant, and the skip's √a scale),
Add, Flatten, Linear.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FUSE = False  # fusing a BatchNorm into the next zero-padded conv is not exact (see docs/he.md)
# Enough levels that Orion places no bootstrap (its bootstrapping needs LogN 16: > 20 GB here).
CONFIG: dict[str, Any] = {
    "ckks_params": {
        "LogN": 15,
        "LogQ": [50, *([40] * 16)],
        "LogP": [60, 60],
        "LogScale": 40,
        "H": 192,
        "RingType": "standard",
    },
    "orion": {
        "margin": 2,
        "embedding_method": "hybrid",
        "backend": "lattigo",
        "debug": False,
        "fuse_modules": FUSE,
    },
}


def build(graph: Any) -> Any:
    import orion.nn as on
    import torch

    def conv(weight: np.ndarray, bias: np.ndarray) -> Any:
        layer = on.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=1)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
        return layer

    def affine(scale: np.ndarray, offset: np.ndarray) -> Any:
        layer = on.BatchNorm2d(len(scale))
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(scale))
            layer.bias.copy_(torch.from_numpy(offset))
            layer.running_mean.zero_()
            layer.running_var.fill_(1.0 - layer.eps)
        return layer

    def folded(conv_: Any, act: Any) -> Any:
        root = np.sqrt(act.a)
        return conv(
            conv_.weight * root[:, None, None, None], conv_.bias * root + act.b / (2 * root)
        )

    def constant(act: Any) -> np.ndarray:
        return np.asarray(act.c - act.b**2 / (4 * act.a))

    class Net(on.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kind = graph.kind
            self.stem = conv(graph.stem.weight, graph.stem.bias)
            self.conv1 = torch.nn.ModuleList(folded(b.conv1, b.act1) for b in graph.blocks)
            self.quad1 = torch.nn.ModuleList(on.Quad() for _ in graph.blocks)
            self.shift1 = torch.nn.ModuleList(
                affine(np.ones_like(b.act1.a), constant(b.act1)) for b in graph.blocks
            )
            self.conv2 = torch.nn.ModuleList(folded(b.conv2, b.act2) for b in graph.blocks)
            self.quad2 = torch.nn.ModuleList(on.Quad() for _ in graph.blocks)
            self.shift2 = torch.nn.ModuleList(
                affine(np.ones_like(b.act2.a), constant(b.act2)) for b in graph.blocks
            )
            self.skip = torch.nn.ModuleList(
                affine(np.sqrt(b.act2.a), np.zeros_like(b.act2.a)) for b in graph.blocks
            )
            self.add = torch.nn.ModuleList(on.Add() for _ in graph.blocks)
            self.flatten = on.Flatten()
            classes, features = graph.head_weight.shape
            self.head = on.Linear(features, classes)
            with torch.no_grad():
                self.head.weight.copy_(torch.from_numpy(graph.head_weight))
                self.head.bias.copy_(torch.from_numpy(graph.head_bias))

        def forward(self, x: Any) -> Any:
            source = self.stem(x)
            y = source
            for i in range(len(self.conv1)):
                u = self.shift1[i](self.quad1[i](self.conv1[i](y)))
                if self.kind == "standard":
                    summed = self.add[i](self.conv2[i](u), self.skip[i](y))
                    y = self.shift2[i](self.quad2[i](summed))
                else:
                    y = self.add[i](self.shift2[i](self.quad2[i](self.conv2[i](u))), source)
            return self.head(self.flatten(y))

    # eval(): a fresh module is in training mode, and orion.fit runs forward passes over the fit
    # data: Orion's BatchNorm2d would then normalise by the batch and overwrite its running mean
    # and variance (momentum 0.1), so Orion compiled another network (logits 0.35 off ours)
    net = Net().double()
    net.eval()  # Orion's Module.eval() returns None
    return net


def main(graph_path: str, images_path: str) -> None:
    import orion
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from sealfn.he.graph import NetGraph

    graph = NetGraph.from_bytes(Path(graph_path).read_bytes())
    images = np.load(images_path).astype(np.float64)
    net = build(graph)
    started = time.perf_counter()
    orion.init_scheme(CONFIG)
    orion.fit(net, torch.from_numpy(images))
    level = orion.compile(net)
    compile_s = time.perf_counter() - started
    latencies, logits = [], []
    for image in images:
        ciphertext = orion.encrypt(orion.encode(torch.from_numpy(image[None]), level))
        net.he()
        started = time.perf_counter()
        out = net(ciphertext)
        latencies.append(time.perf_counter() - started)
        logits.append(np.asarray(out.decrypt().decode()).reshape(-1)[: graph.classes].tolist())
        net.eval()
    print(
        json.dumps(
            {
                "library": f"orion-fhe {getattr(orion, '__version__', '?')} (Lattigo)",
                "input_level": int(level),
                "compile_s": compile_s,
                "latency_s": latencies,
                "latency_p50_s": statistics.median(latencies),
                "logits": logits,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
