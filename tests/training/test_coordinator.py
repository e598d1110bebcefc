"""Training through workers: same losses as plain training, no plaintext at the worker, tampering
caught and recomputed or aborted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional

from sealfn.errors import ConfigError, IntegrityError, Unavailable
from sealfn.training import model
from sealfn.training.bilinear import Bilinear
from sealfn.training.coordinator import (
    TrainConfig,
    Trainer,
    batches,
    make_engine,
    train,
    worker_pool,
)
from sealfn.training.data import digits
from sealfn.training.exact_engine import ExactEngine
from sealfn.training.offload import Engine, ObfuscatedEngine, OpCounts, PlainEngine
from sealfn.training.pool import WorkerOptions, WorkerPool
from sealfn_testing import lockstep

ONE_THREAD = WorkerOptions(threads=1)


@pytest.fixture(scope="module")
def pool() -> Any:
    with WorkerPool(1, ONE_THREAD) as workers:
        yield workers


@pytest.mark.parametrize(("name", "steps"), [("mlp", 100), ("cnn", 100)])
def test_float64_obfuscated_training_matches_plain_training_step_by_step(
    pool: WorkerPool, name: str, steps: int
) -> None:
    config = TrainConfig(model=name, mode="obfuscated", dtype="float64", batch_size=32)
    engine = ObfuscatedEngine(pool)
    plain, offloaded = lockstep(config, engine, steps)
    assert max(abs(a - b) for a, b in zip(plain, offloaded, strict=True)) <= 1e-8
    assert plain[-1] < plain[0] / 2  # it did learn: the comparison is not between two flat lines
    assert engine.counts.checks == engine.counts.products > 0


def test_float64_training_without_key_shift_matches_too(pool: WorkerPool) -> None:
    config = TrainConfig(model="mlp", dtype="float64", key_shift=False)
    plain, offloaded = lockstep(config, ObfuscatedEngine(pool, key_shift=False), 20)
    assert max(abs(a - b) for a, b in zip(plain, offloaded, strict=True)) <= 1e-8


def test_key_shift_halves_the_encryptions_per_step(pool: WorkerPool) -> None:
    counts: dict[bool, OpCounts] = {}
    for shift in (True, False):
        config = TrainConfig(model="cnn", dtype="float64", key_shift=shift)
        engine = ObfuscatedEngine(pool, key_shift=shift)
        lockstep(config, engine, 1)
        counts[shift] = engine.counts
    # 3 layers; the first needs no dX: with shift 2+1 per layer, without 2+2 (first) or 2+4
    assert counts[True].encryptions == 9
    assert counts[False].encryptions == 4 + 6 + 6
    assert counts[True].decryptions == counts[False].decryptions


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_float32_obfuscated_accuracy_within_half_a_point(pool: WorkerPool, name: str) -> None:
    config = TrainConfig(model=name, mode="obfuscated", epochs=4)
    offloaded = train(config, pool=pool)
    plain = train(TrainConfig(model=name, mode="local", epochs=4))
    assert plain.epochs[-1].test_accuracy > 90
    assert abs(offloaded.epochs[-1].test_accuracy - plain.epochs[-1].test_accuracy) <= 0.5


def test_exact_mode_trains_on_quantized_products(pool: WorkerPool) -> None:
    config = TrainConfig(model="mlp", mode="exact", epochs=2)
    result = train(config, pool=pool)
    assert result.epochs[-1].test_accuracy > 80
    assert result.counts.products == 4 * result.counts.decryptions  # four roles per product
    assert not ExactEngine(pool).non_collusion_possible  # one worker: all roles share it


# --- what the worker sees -----------------------------------------------------------------


class Recording:
    """Wraps an engine and keeps every plaintext operand the coordinator hands it."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.counts = inner.counts
        self.conv = inner.conv
        self.plaintext: list[np.ndarray] = []

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, keep: bool, op: Bilinear
    ) -> tuple[torch.Tensor, Any]:
        self.plaintext += [x.numpy().copy(), w.numpy().copy()]
        return self.inner.forward(x, w, keep, op)

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        self.plaintext.append(dy.numpy().copy())
        return self.inner.backward(handle, dy, need_x, need_w)


def _leaks(seen: list[np.ndarray], plaintext: list[np.ndarray]) -> bool:
    """True if any received tensor equals, or sorts to, a plaintext operand (or its transpose)."""
    fingerprints = {}
    for secret in plaintext:
        for form in (secret, secret.T):
            fingerprints[form.shape, form.tobytes()] = secret
            fingerprints["sorted", np.sort(form, axis=None).tobytes()] = secret
    return any(
        (tensor.shape, tensor.tobytes()) in fingerprints
        or ("sorted", np.sort(tensor, axis=None).tobytes()) in fingerprints
        for tensor in seen
    )


def _observe(
    tmp_path: Path, mode: str, *, identity: bool = False, conv: str = "im2col"
) -> tuple[list[Any], list[Any]]:
    trace = tmp_path / mode / str(identity)
    trace.mkdir(parents=True)
    config = TrainConfig(model="cnn", mode=mode, dtype="float32", conv=conv)
    with WorkerPool(1, WorkerOptions(threads=1, trace=trace)) as workers:
        inner: Engine = (
            ExactEngine(workers)
            if mode == "exact"
            else ObfuscatedEngine(workers, identity=identity, conv=conv)
        )
        engine = Recording(inner)
        trainer = Trainer(config, engine)
        for x, y in batches(digits(), config, 1)[:2]:
            trainer.step(x, y)
    seen = [np.load(path) for path in sorted(trace.iterdir())]
    assert seen and engine.plaintext
    return seen, engine.plaintext


@pytest.mark.parametrize(
    ("mode", "conv"), [("obfuscated", "im2col"), ("obfuscated", "channel"), ("exact", "im2col")]
)
def test_the_worker_never_receives_plaintext(tmp_path: Path, mode: str, conv: str) -> None:
    seen, plaintext = _observe(tmp_path, mode, conv=conv)
    assert not _leaks(seen, plaintext)
    assert any(tensor.ndim == 4 for tensor in seen) is (conv == "channel")  # whole convolutions


@pytest.mark.parametrize("conv", ["im2col", "channel"])
def test_negative_control_the_leak_detector_sees_unobfuscated_tensors(
    tmp_path: Path, conv: str
) -> None:
    seen, plaintext = _observe(tmp_path, "obfuscated", identity=True, conv=conv)
    assert _leaks(seen, plaintext)


# --- a malicious worker ---------------------------------------------------------------------


def test_a_tampering_worker_is_caught_and_its_products_recomputed_elsewhere() -> None:
    config = TrainConfig(model="mlp", dtype="float64", workers=2)
    options = WorkerOptions(threads=1, tamper="entry", tamper_workers=frozenset({0}))
    with WorkerPool(2, options) as workers:
        engine = ObfuscatedEngine(workers)
        plain, offloaded = lockstep(config, engine, 5)
    assert max(abs(a - b) for a, b in zip(plain, offloaded, strict=True)) <= 1e-8
    assert engine.incidents and {incident.worker for incident in engine.incidents} == {0}


def test_when_every_worker_tampers_steps_are_aborted_and_the_run_stops() -> None:
    config = TrainConfig(model="mlp", mode="obfuscated", epochs=1)
    with WorkerPool(1, WorkerOptions(threads=1, tamper="scale")) as workers:
        trainer = Trainer(config, ObfuscatedEngine(workers))
        before = [p.detach().clone() for p in trainer.net.parameters()]
        x, y = batches(digits(), config, 1)[0]
        with pytest.raises(IntegrityError):
            trainer.step(x, y)
        after = list(trainer.net.parameters())
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        with pytest.raises(IntegrityError):
            train(config, pool=workers)


def test_configs_are_checked() -> None:
    with pytest.raises(ConfigError, match="mode"):
        TrainConfig(mode="fast")
    with pytest.raises(ConfigError, match="workers"):
        TrainConfig(workers=0)
    with worker_pool(TrainConfig(mode="local")) as nothing:
        assert nothing is None


def test_exact_mode_on_four_workers_gives_each_role_its_own_worker(tmp_path: Path) -> None:
    config = TrainConfig(model="mlp", mode="exact", workers=4)
    with WorkerPool(4, WorkerOptions(threads=1, trace=tmp_path)) as workers:
        engine = ExactEngine(workers)
        assert engine.non_collusion_possible
        trainer = Trainer(config, engine)
        x, y = batches(digits(), config, 1)[0]
        trainer.step(x, y)
        pids = {worker.process.pid for worker in workers.workers}
    received: dict[str, list[np.ndarray]] = {}
    for path in sorted(tmp_path.iterdir()):
        received.setdefault(path.name.split("-")[0], []).append(np.load(path))
    assert set(received) == {str(pid) for pid in pids}
    products = engine.counts.decryptions  # one exact product = one operand pair per role
    assert all(len(tensors) == 2 * products for tensors in received.values())


@pytest.mark.parametrize(
    ("mode", "conv"), [("obfuscated", "im2col"), ("plain", "im2col"), ("plain", "channel")]
)
def test_a_lost_worker_is_skipped_and_its_products_recomputed_elsewhere(
    mode: str, conv: str
) -> None:
    config = TrainConfig(model="cnn", mode=mode, dtype="float64", workers=2, conv=conv)
    data = digits(config.torch_dtype)
    with WorkerPool(2, ONE_THREAD) as workers:
        engine = make_engine(config, workers)
        plain, offloaded = Trainer(config, None), Trainer(config, engine)
        for step, (x, y) in enumerate(batches(data, config, 1)[:6]):
            if step == 3:
                workers[0].process.kill()
                workers[0].process.wait()
            assert abs(plain.step(x, y)[0] - offloaded.step(x, y)[0]) <= 1e-8
        assert workers.alive() == [1]
    assert isinstance(engine, PlainEngine | ObfuscatedEngine)
    assert {(i.worker, i.reason) for i in engine.incidents} == {(0, "lost")}


def test_exact_mode_refuses_to_put_two_roles_on_one_worker_after_a_loss() -> None:
    config = TrainConfig(model="mlp", mode="exact", workers=4)
    x, y = batches(digits(), config, 1)[0]
    with WorkerPool(4, ONE_THREAD) as workers:
        trainer = Trainer(config, ExactEngine(workers))
        trainer.step(x, y)
        workers[2].process.kill()
        workers[2].process.wait()
        with pytest.raises(Unavailable):
            for _ in range(2):  # the first step may only now notice the loss
                trainer.step(x, y)


@pytest.mark.parametrize("mode", ["plain", "obfuscated"])
@pytest.mark.parametrize("conv", ["im2col", "channel"])
def test_a_worker_lost_between_forward_and_backward_is_replaced(mode: str, conv: str) -> None:
    """The backward of products whose operands sat on the lost worker runs on a live one, which
    is sent them again (obfuscated: under a fresh key), and the gradients are still exact."""
    config = TrainConfig(model="cnn", mode=mode, dtype="float64", workers=2, conv=conv)
    x, y = batches(digits(config.torch_dtype), config, 1)[0]
    local = Trainer(config, None)
    functional.cross_entropy(local.net(x), y).backward()  # type: ignore[no-untyped-call]
    with WorkerPool(2, ONE_THREAD) as workers:
        engine = (
            PlainEngine(workers, conv=conv)
            if mode == "plain"
            else ObfuscatedEngine(workers, conv=conv)
        )
        offloaded = Trainer(config, engine)
        loss = functional.cross_entropy(model.forward(offloaded.net, x, engine), y)
        workers[0].process.kill()
        workers[0].process.wait()
        loss.backward()  # type: ignore[no-untyped-call]
    for want, got in zip(local.net.parameters(), offloaded.net.parameters(), strict=True):
        assert want.grad is not None and got.grad is not None
        # atol: a conv bias before batch norm has a gradient of exactly 0, up to rounding
        assert torch.allclose(got.grad, want.grad, rtol=1e-9, atol=1e-12)
    assert {(i.worker, i.reason, i.phase) for i in engine.incidents} == {(0, "lost", "backward")}
