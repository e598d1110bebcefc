"""Train a network on the digits with a progress bar; pure PyTorch on the CPU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from sealfn.he.data import Split
from sealfn.he.networks import Net, NetConfig


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch: int = 64
    lr: float = 0.01
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    net: Net
    test_accuracy: float  # fraction in [0, 1]
    train_s: float  # seconds


def train(
    config: NetConfig, data: Split, settings: TrainConfig, *, progress: bool = True
) -> TrainResult:
    """Adam with cosine decay and gradient clipping (polynomial activations can blow up)."""
    import time

    torch.manual_seed(settings.seed)
    net = Net(config)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    steps = settings.epochs * -(-len(data.y_train) // settings.batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    generator = torch.Generator().manual_seed(settings.seed)
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=f"train {config.kind}", disable=not progress, unit="step")
    with bar:
        for _ in range(settings.epochs):
            order = torch.randperm(len(y), generator=generator)
            for index in torch.split(order, settings.batch):
                loss = torch.nn.functional.cross_entropy(
                    net(x[index]), y[index], label_smoothing=0.1
                )
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    net.eval()
    return TrainResult(net, accuracy(net, data.x_test, data.y_test), time.perf_counter() - started)


def accuracy(net: Net, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        predicted = net(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((predicted == y).mean())
