"""Where a layer's products run: in the coordinator, or on workers (plain, obfuscated, exact).

Every engine offers ``forward(x, w, keep, op) -> (y, handle)`` and ``backward(handle, dy) ->
(dx, dw)`` for a :mod:`~sealfn.training.bilinear` product ``op`` (a matrix product, or a
convolution with channel-level keys); :func:`product` wraps that in an autograd function, so the
trusted coordinator's PyTorch does everything else (non-linear layers, batch-norm statistics,
loss, optimizer) unchanged.

* :class:`LocalEngine`: the product in the coordinator itself (the TEE-only baseline).
* :class:`PlainEngine`: operands sent in the clear, results trusted (the insecure baseline).
* :class:`ObfuscatedEngine`: Tempo's permutation-scaling with a fresh key per product, backward key
  shift (one new encryption per layer backward), Freivalds checks on every result.
* :class:`~sealfn.training.exact_engine.ExactEngine` (its own module): fixed point in Z_P with
  one-time masks split over four worker roles, exact Freivalds checks mod P.

A result that fails verification, or a worker that is lost (dies, answers out of turn, refuses),
makes the verified engines recompute the product with fresh keys on the next live worker; every
such incident is recorded, and when no worker is left the step is aborted with
``IntegrityError``. The plain engine recomputes on a live worker too when one is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from sealfn.errors import InstanceFailed, IntegrityError
from sealfn.training import freivalds
from sealfn.training.bilinear import MATMUL, Bilinear, Checks
from sealfn.training.keys import KeyPool, MatmulKey, csprng
from sealfn.training.pool import WorkerHandle, WorkerPool
from sealfn.training.wire import WorkRequest, operand_id

T = TypeVar("T")


@dataclass
class OpCounts:
    """Crypto and offload operations so far (mutable tally, read by reports and benchmarks)."""

    encryptions: int = 0  # operand tensors obfuscated or masked before leaving the TEE
    decryptions: int = 0  # results decoded inside the TEE
    products: int = 0  # products computed by workers
    checks: int = 0  # Freivalds checks run
    worker_seconds: float = 0.0  # compute time the workers report

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


@dataclass(frozen=True)
class Incident:
    """A worker that failed a product: its result failed verification, or the worker was lost."""

    worker: int
    phase: str  # "forward" / "backward"
    reason: str  # "verification" / "lost"


CONV_LOWERINGS = ("im2col", "channel")


class Engine(Protocol):
    counts: OpCounts
    conv: str  # how the model lowers a convolution for this engine: "im2col" or "channel"

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, keep: bool, op: Bilinear
    ) -> tuple[torch.Tensor, Any]: ...

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]: ...


class _Product(torch.autograd.Function):
    @staticmethod
    def forward(  # noqa: PLR0917 (autograd passes apply()'s arguments positionally)
        ctx: Any, x: torch.Tensor, w: torch.Tensor, engine: Engine, keep: bool, op: Bilinear
    ) -> Any:
        y, handle = engine.forward(x.detach(), w.detach(), keep, op)
        ctx.engine, ctx.handle = engine, handle
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Any:
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx, dw = ctx.engine.backward(ctx.handle, dy.contiguous(), need_x, need_w)
        ctx.handle = None
        return dx, dw, None, None, None


def product(
    x: torch.Tensor, w: torch.Tensor, engine: Engine, op: Bilinear = MATMUL
) -> torch.Tensor:
    """``op(x, w)`` (by default x (m, n) @ w (n, p)) computed by ``engine``, differentiable."""
    keep = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
    return _Product.apply(x, w, engine, keep, op)  # type: ignore[no-untyped-call,no-any-return]


@dataclass
class LocalEngine:
    """Every product inside the coordinator (no worker)."""

    conv: str = "im2col"
    counts: OpCounts = field(default_factory=OpCounts)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, keep: bool, op: Bilinear
    ) -> tuple[torch.Tensor, Any]:
        return op.y(x, w), (x, w, op)

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, w, op = handle
        return (op.dx(dy, w) if need_x else None), (op.dw(x, dy) if need_w else None)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor's bytes for the wire (C order, on the CPU)."""
    return t.detach().contiguous().cpu().numpy()


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """A received array as a tensor of its own (a copy: a view would keep the whole received
    frame alive for as long as the tensor lives, and may be misaligned)."""
    return torch.from_numpy(np.array(a))


def borrow(a: np.ndarray) -> torch.Tensor:
    """A received array as a tensor without a copy, for a result that is only read (checked,
    then decoded into a new tensor) and dropped with its frame. Received frames are buffers of
    their own, so the view is writable; a read-only one is copied rather than wrapped."""
    return torch.from_numpy(a if a.flags.writeable else np.array(a))


class Offloading:
    """What the offloading engines share: the pool, round-robin placement, retries, counts."""

    def __init__(self, pool: WorkerPool, *, conv: str = "im2col") -> None:
        if conv not in CONV_LOWERINGS:
            raise ValueError(f"conv={conv!r}: expected one of {', '.join(CONV_LOWERINGS)}")
        self.pool = pool
        self.conv = conv
        self.counts = OpCounts()
        self.incidents: list[Incident] = []
        self.rng = csprng()
        self._next = 0

    def _place(self) -> int:
        index = self._next % len(self.pool)
        self._next += 1
        return index

    def _run(self, worker: WorkerHandle, request: WorkRequest) -> list[torch.Tensor]:
        worker.submit(request)
        return self._collect(worker, len(request.products))

    def _collect(
        self, worker: WorkerHandle, products: int, *, keep: bool = True
    ) -> list[torch.Tensor]:
        """The reply to the request last submitted to ``worker``, as tensors: copies, or views
        of the received frame when the caller does not ``keep`` them (see :func:`borrow`)."""
        reply = worker.collect()
        self.counts.products += products
        self.counts.worker_seconds += reply.seconds
        wrap = to_tensor if keep else borrow
        return [wrap(result) for result in reply.results]

    def _retrying(self, job: Callable[[int], T], start: int, phase: str) -> T:
        """``job(worker index)``, moving on to the next live worker when a result fails
        verification or its worker fails (dies, answers out of turn, or refuses)."""
        count = len(self.pool)
        for index in [(start + step) % count for step in range(count)]:
            if self.pool[index].lost:
                continue
            try:
                return job(index)
            except IntegrityError:
                self.incidents.append(Incident(index, phase, "verification"))
            except InstanceFailed:
                self.incidents.append(Incident(index, phase, "lost"))
        raise IntegrityError("no worker returned a product that passes verification")


class PlainEngine(Offloading):
    """Operands in the clear, results unchecked: the insecure offloading baseline. A worker that
    is lost has its product recomputed on the next live one (a backward there gets X and W
    again, with dY)."""

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, keep: bool, op: Bilinear
    ) -> tuple[torch.Tensor, Any]:
        def job(index: int) -> tuple[torch.Tensor, Any]:
            xa, wa = to_numpy(x), to_numpy(w)
            ids = operand_id(), operand_id()
            drop = () if keep else ids
            request = WorkRequest(((ids[0], xa), (ids[1], wa)), (op.product_y(*ids),), drop)
            (y,) = self._run(self.pool[index], request)
            return y, _Plain(index, ids, x, w, op)

        return self._retrying(job, self._place(), "forward")

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        sent: _Plain = handle

        def job(index: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
            ids, upload = sent.ids, ()  # type: tuple[str, str], tuple[tuple[str, np.ndarray], ...]
            if index != sent.worker:  # X and W were on a lost worker: send them again
                ids = operand_id(), operand_id()
                upload = ((ids[0], to_numpy(sent.x)), (ids[1], to_numpy(sent.w)))
            request = backward_request(
                to_numpy(dy), ids, sent.op, need_x=need_x, need_w=need_w, upload=upload
            )
            results = iter(self._run(self.pool[index], request))
            return (next(results) if need_x else None), (next(results) if need_w else None)

        return self._retrying(job, sent.worker, "backward")


@dataclass(frozen=True)
class _Plain:
    worker: int
    ids: tuple[str, str]
    x: torch.Tensor  # kept for a recomputation on another worker
    w: torch.Tensor
    op: Bilinear


def backward_request(
    dy: np.ndarray,
    ids: tuple[str, str],
    op: Bilinear,
    *,
    need_x: bool,
    need_w: bool,
    upload: tuple[tuple[str, np.ndarray], ...] = (),
) -> WorkRequest:
    """Send dY (and ``upload``: X and W again); dX and dW from the worker's X and W, which are
    then dropped."""
    dyid = operand_id()
    xid, wid = ids
    products = []
    if need_x:
        products.append(op.product_dx(dyid, wid))
    if need_w:
        products.append(op.product_dw(xid, dyid))
    return WorkRequest(((dyid, dy), *upload), tuple(products), (dyid, xid, wid))


@dataclass
class _Sent:
    """A product's obfuscated operands on a worker, kept in the TEE for the backward pass."""

    worker: int
    op: Bilinear
    key: MatmulKey
    xp: torch.Tensor  # X', as the worker holds it
    wp: torch.Tensor  # W'
    ids: tuple[str, str]
    checks: Checks  # probes' CSPRNG, k, |X'|, |W'| (and later |dY'|)
    x: torch.Tensor  # plaintext operands, for a recomputation elsewhere
    w: torch.Tensor

    def upload(self) -> tuple[tuple[str, np.ndarray], ...]:
        return (self.ids[0], to_numpy(self.xp)), (self.ids[1], to_numpy(self.wp))


class ObfuscatedEngine(Offloading):
    """Tempo MM-obfuscation: fresh keys per product, key-shift backward, Freivalds checks.

    The coordinator does not sit idle while a worker computes: after sending a request it
    computes everything of the Freivalds checks that does not need the result (probes drawn and
    kept secret, A·(B·r), tolerances; see :mod:`~sealfn.training.freivalds`) and tops up its
    key pool; when the result arrives only C·r and the comparison are left. Every result is
    still verified before it is decoded and used.

    ``conv="channel"`` offloads convolutions whole, with channel-level keys
    (:class:`~sealfn.training.bilinear.Conv2d`); it needs the key shift.

    ``identity`` draws P = D = I keys: no obfuscation at all. It exists only so tests can prove
    that their leak detectors do detect plaintext (a negative control); never use it otherwise.
    """

    def __init__(
        self,
        pool: WorkerPool,
        *,
        key_shift: bool = True,
        repetitions: int = freivalds.DEFAULT_REPETITIONS,
        identity: bool = False,
        conv: str = "im2col",
    ) -> None:
        super().__init__(pool, conv=conv)
        if conv == "channel" and not key_shift:
            raise ValueError("channel-level convolution keys need the key shift")
        self.key_shift = key_shift
        self.repetitions = repetitions
        self.identity = identity
        self._keys: dict[torch.dtype, KeyPool] = {}
        self._probes: dict[torch.dtype, freivalds.ProbePool] = {}

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, keep: bool, op: Bilinear
    ) -> tuple[torch.Tensor, Any]:
        def job(index: int) -> tuple[torch.Tensor, _Sent]:
            return self._forward_on(index, x, w, keep and self.key_shift, op)

        return self._retrying(job, self._place(), "forward")

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        sent: _Sent = handle

        def job(index: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
            if not self.key_shift:
                return self._fresh_backward(index, sent, dy, need_x, need_w)
            if index == sent.worker:
                return self._shifted_backward(sent, dy, need_x, need_w, upload=False)
            # X', W' were on a worker that failed: a fresh key, X', W' sent with dY'
            moved = self._encode(index, sent.x, sent.w, sent.op)
            return self._shifted_backward(moved, dy, need_x, need_w, upload=True)

        # The key-shift request itself drops X', W' from the worker, whether or not it verifies.
        return self._retrying(job, sent.worker, "backward")

    def _encode(self, index: int, x: torch.Tensor, w: torch.Tensor, op: Bilinear) -> _Sent:
        """A fresh key and the obfuscated operands for ``index``."""
        m, n, p = op.sizes(x, w)
        if x.dtype not in self._keys:
            self._keys[x.dtype] = KeyPool(self.rng, x.dtype)
            self._probes[x.dtype] = freivalds.ProbePool(self.rng, x.dtype, self.repetitions)
        if self.identity:
            key = MatmulKey.draw(m, n, p, self.rng, identity=True)
        else:
            key = self._keys[x.dtype].draw(m, n, p)
        xp, wp = op.encode_x(x, key), op.encode_w(w, key)
        self.counts.encryptions += 2
        checks = Checks(self._probes[x.dtype], self.repetitions, {})
        return _Sent(index, op, key, xp, wp, (operand_id(), operand_id()), checks, x, w)

    def _while_waiting(self) -> None:
        """Work for the idle time between sending a request and its reply."""
        for keys in self._keys.values():
            keys.refill()

    def _forward_on(
        self, index: int, x: torch.Tensor, w: torch.Tensor, keep: bool, op: Bilinear
    ) -> tuple[torch.Tensor, _Sent]:
        sent = self._encode(index, x, w, op)
        request = WorkRequest(sent.upload(), (op.product_y(*sent.ids),), () if keep else sent.ids)
        worker = self.pool[index]
        worker.submit(request)
        expectation = op.expect_y(sent.xp, sent.wp, sent.checks)
        self._while_waiting()
        (yp,) = self._collect(worker, 1, keep=False)  # checked, decoded, dropped
        self._verify(expectation, yp)
        self.counts.decryptions += 1
        return op.decode_y(yp, sent.key), sent

    def _shifted_backward(
        self, sent: _Sent, dy: torch.Tensor, need_x: bool, need_w: bool, *, upload: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Encrypt dY once; dX' and dW' reuse X', W' (cached on the worker, or ``upload``ed)."""
        op = sent.op
        dyp = op.encode_dy(dy, sent.key)
        self.counts.encryptions += 1
        more = sent.upload() if upload else ()
        request = backward_request(
            to_numpy(dyp), sent.ids, op, need_x=need_x, need_w=need_w, upload=more
        )
        worker = self.pool[sent.worker]
        worker.submit(request)
        for_dx = op.expect_dx(dyp, sent.wp, sent.checks) if need_x else None
        for_dw = op.expect_dw(sent.xp, dyp, sent.checks) if need_w else None
        self._while_waiting()
        results = iter(self._collect(worker, len(request.products), keep=False))
        dx = dw = None
        if for_dx is not None:
            dxp = next(results)
            self._verify(for_dx, dxp)
            dx = op.decode_dx(dxp, sent.key)
        if for_dw is not None:
            dwp = next(results)
            self._verify(for_dw, dwp)
            dw = op.decode_dw(dwp, sent.key)
        self.counts.decryptions += int(need_x) + int(need_w)
        return dx, dw

    def _fresh_backward(
        self, index: int, sent: _Sent, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Without key shift: dX = dY W^T and dW = X^T dY as two new products, new keys each."""
        dx = self._forward_on(index, dy, sent.w.T, False, MATMUL)[0] if need_x else None
        dw = self._forward_on(index, sent.x.T, dy, False, MATMUL)[0] if need_w else None
        return dx, dw

    def _verify(self, expectation: freivalds.Expectation, c: torch.Tensor) -> None:
        self.counts.checks += 1
        expectation.verify(c)
