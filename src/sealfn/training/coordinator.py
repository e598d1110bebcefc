"""The trusted coordinator's training loop: data, weights, optimizer and keys never leave it.

It runs the model's non-linear layers, batch-norm statistics, loss and optimizer itself, and hands
each Linear/Conv2d product to an :mod:`~sealfn.training.offload` engine. A step whose products fail
verification on every worker is aborted (weights, optimizer and batch-norm statistics untouched)
and counted; too many aborted steps in a row end the run with ``IntegrityError``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from sealfn.errors import ConfigError, IntegrityError, SealfnError
from sealfn.training import model
from sealfn.training.data import Dataset, digits
from sealfn.training.exact_engine import ROLES, ExactEngine
from sealfn.training.offload import (
    CONV_LOWERINGS,
    Engine,
    Incident,
    LocalEngine,
    ObfuscatedEngine,
    OpCounts,
    PlainEngine,
)
from sealfn.training.pool import WorkerOptions, WorkerPool

MODES = ("local", "plain", "obfuscated", "exact")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
MAX_ABORTS_IN_A_ROW = 3


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``mode``: local (coordinator only), plain, obfuscated or exact."""

    model: str = "mlp"
    mode: str = "obfuscated"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    workers: int = 1
    dtype: str = "float32"
    seed: int = 0  # initial weights and batch order (not keys: those come from os.urandom)
    key_shift: bool = True
    repetitions: int = 2  # Freivalds repetitions per product
    conv: str = "im2col"  # convolutions as im2col products, or "channel": channel-level keys

    def __post_init__(self) -> None:
        choices = {
            "model": model.MODELS,
            "mode": MODES,
            "dtype": tuple(DTYPES),
            "conv": CONV_LOWERINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                value = getattr(self, name)
                raise ConfigError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "workers", "repetitions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr!r}: must be positive")
        if self.conv == "channel" and (self.mode == "exact" or not self.key_shift):
            raise ConfigError("conv='channel' needs mode local, plain or obfuscated with key shift")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    loss: float  # mean training loss of the epoch's completed steps
    train_accuracy: float  # percent, on the batches as they were trained
    test_accuracy: float  # percent, on the held-out images
    seconds: float


@dataclass
class TrainResult:
    """What a run produced: the trained network and everything the report says about it."""

    config: TrainConfig
    net: nn.Sequential
    epochs: list[EpochStats] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # per completed step
    step_seconds: list[float] = field(default_factory=list)
    counts: OpCounts = field(default_factory=OpCounts)
    incidents: list[Incident] = field(default_factory=list)
    aborted_steps: int = 0
    workers: list[str] = field(default_factory=list)  # each worker's device

    def summary(self) -> dict[str, Any]:
        steps = max(len(self.losses), 1)
        return {
            "config": asdict(self.config),
            "epochs": [asdict(epoch) for epoch in self.epochs],
            "steps": len(self.losses),
            "aborted_steps": self.aborted_steps,
            "incidents": [asdict(incident) for incident in self.incidents],
            "ops": self.counts.as_dict(),
            "ops_per_step": {k: v / steps for k, v in self.counts.as_dict().items()},
            "mean_step_seconds": sum(self.step_seconds) / steps,
            "workers": self.workers,
            # exact mode hides values only if each of its four roles has a worker of its own
            "exact_roles_on_distinct_workers": (
                self.config.mode == "exact" and self.config.workers >= ROLES
            ),
        }


def make_engine(config: TrainConfig, pool: WorkerPool | None) -> Engine:
    if config.mode == "local":
        return LocalEngine(conv=config.conv)
    if pool is None:
        raise ConfigError(f"mode={config.mode!r} needs workers")
    if config.mode == "plain":
        return PlainEngine(pool, conv=config.conv)
    if config.mode == "exact":
        return ExactEngine(pool, repetitions=config.repetitions)
    return ObfuscatedEngine(
        pool, key_shift=config.key_shift, repetitions=config.repetitions, conv=config.conv
    )


@contextlib.contextmanager
def worker_pool(
    config: TrainConfig, options: WorkerOptions | None = None
) -> Iterator[WorkerPool | None]:
    """The workers a run needs (none for ``local``), stopped when the block ends."""
    if config.mode == "local":
        yield None
        return
    with WorkerPool(config.workers, options) as pool:
        yield pool


def batches(
    data: Dataset, config: TrainConfig, epoch: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's shuffled mini-batches (order from ``seed`` and ``epoch``, reproducible)."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(len(data.train_y), generator=generator)
    size = config.batch_size
    return [
        (data.train_x[order[i : i + size]], data.train_y[order[i : i + size]])
        for i in range(0, len(order), size)
    ]


def accuracy(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> float:
    """Percent correct, evaluated inside the coordinator."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        correct = int((net(x).argmax(dim=1) == y).sum())
    net.train(was_training)
    return 100.0 * correct / len(y)


class Trainer:
    """One model, its optimizer and an engine; :meth:`step` trains on one batch."""

    def __init__(self, config: TrainConfig, engine: Engine | None) -> None:
        self.config = config
        self.engine = engine
        self.net = model.build(config.model, seed=config.seed, dtype=config.torch_dtype)
        self.optimizer = torch.optim.SGD(
            self.net.parameters(), lr=config.lr, momentum=config.momentum
        )

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """One SGD step; (loss, correct predictions). A failed step (IntegrityError, a lost
        worker) leaves weights, optimizer and batch-norm statistics untouched."""
        self.net.train()
        saved = [buffer.clone() for buffer in self.net.buffers()]
        self.optimizer.zero_grad(set_to_none=True)
        try:
            logits = model.forward(self.net, x, self.engine)
            loss = functional.cross_entropy(logits, y)
            loss.backward()  # type: ignore[no-untyped-call]
        except SealfnError:
            self.optimizer.zero_grad(set_to_none=True)
            for buffer, old in zip(self.net.buffers(), saved, strict=True):
                buffer.copy_(old)
            raise
        self.optimizer.step()
        return float(loss.detach()), int((logits.detach().argmax(dim=1) == y).sum())


def train(
    config: TrainConfig,
    *,
    pool: WorkerPool | None = None,
    data: Dataset | None = None,
    progress: bool = False,
    max_steps: int | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train ``config.model`` on the digits; ``pool`` is needed unless ``mode`` is local."""
    from tqdm import tqdm

    data = data or digits(config.torch_dtype)
    engine = make_engine(config, pool)
    trainer = Trainer(config, engine)
    result = TrainResult(config, trainer.net, counts=engine.counts)
    result.workers = [worker.device for worker in pool.workers] if pool is not None else []
    aborted_in_a_row = 0
    for epoch in range(1, config.epochs + 1):
        start, seen, correct, losses = time.perf_counter(), 0, 0, []
        bar = tqdm(batches(data, config, epoch), desc=f"epoch {epoch}", disable=not progress)
        for x, y in bar:
            if max_steps is not None and len(result.losses) >= max_steps:
                break
            step_start = time.perf_counter()
            try:
                loss, hits = trainer.step(x, y)
            except IntegrityError:
                result.aborted_steps += 1
                aborted_in_a_row += 1
                if aborted_in_a_row >= MAX_ABORTS_IN_A_ROW:
                    raise
                continue
            aborted_in_a_row = 0
            result.step_seconds.append(time.perf_counter() - step_start)
            result.losses.append(loss)
            losses.append(loss)
            seen, correct = seen + len(y), correct + hits
            bar.set_postfix(loss=f"{loss:.4f}")
        result.epochs.append(
            EpochStats(
                epoch,
                sum(losses) / max(len(losses), 1),
                100.0 * correct / max(seen, 1),
                accuracy(trainer.net, data.test_x, data.test_y),
                time.perf_counter() - start,
            )
        )
        if on_epoch is not None:
            on_epoch(result.epochs[-1])
    result.incidents = list(getattr(engine, "incidents", []))
    return result
