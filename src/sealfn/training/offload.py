"""Where a layer's products run: in the coordinator, or on workers (plain, obfuscated, exact).

Every engine offers ``forward(x, w) -> (y, handle)`` and ``backward(handle, dy) -> (dx, dw)``;
:func:`product` wraps that in an autograd function, so the trusted coordinator's PyTorch does
everything else (non-linear layers, batch-norm statistics, loss, optimizer) unchanged.

* :class:`LocalEngine`: the product in the coordinator itself (the TEE-only baseline).
* :class:`PlainEngine`: operands sent in the clear, results trusted (the insecure baseline).
* :class:`ObfuscatedEngine`: Tempo's permutation-scaling with a fresh key per product, backward key
  shift (one new encryption per layer backward), Freivalds checks on every result.
* :class:`~sealfn.training.exact_engine.ExactEngine` (its own module): fixed point in Z_P with
  one-time masks split over four worker roles, exact Freivalds checks mod P.

A result that fails verification, or a worker that is lost (dies, answers out of turn, refuses),
makes the verified engines recompute the product with fresh keys on the next live worker; every
such incident is recorded, and when no worker is left the step is aborted with
``IntegrityError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from sealfn.errors import InstanceFailed, IntegrityError
from sealfn.training import freivalds
from sealfn.training import obfuscation as ob
from sealfn.training.keys import KeyPool, MatmulKey, csprng
from sealfn.training.pool import WorkerHandle, WorkerPool
from sealfn.training.wire import Product, WorkRequest, operand_id

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


class Engine(Protocol):
    counts: OpCounts

    def forward(self, x: torch.Tensor, w: torch.Tensor, keep: bool) -> tuple[torch.Tensor, Any]: ...

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]: ...


class _Product(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, engine: Engine, keep: bool) -> Any:
        y, handle = engine.forward(x.detach(), w.detach(), keep)
        ctx.engine, ctx.handle = engine, handle
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Any:
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx, dw = ctx.engine.backward(ctx.handle, dy.contiguous(), need_x, need_w)
        ctx.handle = None
        return dx, dw, None, None


def product(x: torch.Tensor, w: torch.Tensor, engine: Engine) -> torch.Tensor:
    """x (m, n) @ w (n, p) computed by ``engine``, differentiable."""
    keep = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
    return _Product.apply(x, w, engine, keep)  # type: ignore[no-untyped-call,no-any-return]


@dataclass
class LocalEngine:
    """Every product inside the coordinator (no worker)."""

    counts: OpCounts = field(default_factory=OpCounts)

    def forward(self, x: torch.Tensor, w: torch.Tensor, keep: bool) -> tuple[torch.Tensor, Any]:
        return x @ w, (x, w)

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, w = handle
        return (dy @ w.T if need_x else None), (x.T @ dy if need_w else None)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor's bytes for the wire (C order, on the CPU)."""
    return t.detach().contiguous().cpu().numpy()


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """A received array as a tensor of its own (received arrays are read-only views)."""
    return torch.from_numpy(np.array(a))


class Offloading:
    """What the offloading engines share: the pool, round-robin placement, retries, counts."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
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

    def _collect(self, worker: WorkerHandle, products: int) -> list[torch.Tensor]:
        """The reply to the request last submitted to ``worker``, as tensors."""
        reply = worker.collect()
        self.counts.products += products
        self.counts.worker_seconds += reply.seconds
        return [to_tensor(result) for result in reply.results]

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
    """Operands in the clear, results unchecked: the insecure offloading baseline."""

    def forward(self, x: torch.Tensor, w: torch.Tensor, keep: bool) -> tuple[torch.Tensor, Any]:
        index = self._place()
        xa, wa = to_numpy(x), to_numpy(w)
        ids = operand_id(), operand_id()
        drop = () if keep else ids
        request = WorkRequest(((ids[0], xa), (ids[1], wa)), (Product(*ids),), drop)
        (y,) = self._run(self.pool[index], request)
        return y, (index, ids)

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        index, ids = handle
        request = backward_request(to_numpy(dy), ids, need_x, need_w)
        results = iter(self._run(self.pool[index], request))
        return (next(results) if need_x else None), (next(results) if need_w else None)


def backward_request(
    dy: np.ndarray, ids: tuple[str, str], need_x: bool, need_w: bool
) -> WorkRequest:
    """Send dY; dX = dY·Wᵀ and dW = Xᵀ·dY on the cached X and W, which are then dropped."""
    dyid = operand_id()
    xid, wid = ids
    products = []
    if need_x:
        products.append(Product(dyid, wid, transpose_right=True))
    if need_w:
        products.append(Product(xid, dyid, transpose_left=True))
    return WorkRequest(((dyid, dy),), tuple(products), (dyid, xid, wid))


@dataclass
class _Sent:
    """A forward product's state kept in the TEE for its backward pass."""

    worker: int
    key: MatmulKey
    xp: torch.Tensor  # X', as the worker holds it
    wp: torch.Tensor  # W'
    abs_xp: torch.Tensor  # |X'| and |W'|, for the backward checks' tolerances
    abs_wp: torch.Tensor
    ids: tuple[str, str]
    x: torch.Tensor  # plaintext operands, for a recomputation elsewhere
    w: torch.Tensor


class ObfuscatedEngine(Offloading):
    """Tempo MM-obfuscation: fresh keys per product, key-shift backward, Freivalds checks.

    The coordinator does not sit idle while a worker computes: after sending a request it
    computes everything of the Freivalds checks that does not need the result (probes drawn and
    kept secret, A·(B·r), tolerances; see :mod:`~sealfn.training.freivalds`) and tops up its
    key pool; when the result arrives only C·r and the comparison are left. Every result is
    still verified before it is decoded and used.

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
    ) -> None:
        super().__init__(pool)
        self.key_shift = key_shift
        self.repetitions = repetitions
        self.identity = identity
        self._keys: dict[torch.dtype, KeyPool] = {}

    def forward(self, x: torch.Tensor, w: torch.Tensor, keep: bool) -> tuple[torch.Tensor, Any]:
        def job(index: int) -> tuple[torch.Tensor, _Sent]:
            return self._forward_on(index, x, w, keep and self.key_shift)

        return self._retrying(job, self._place(), "forward")

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        sent: _Sent = handle

        def job(index: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
            if self.key_shift and index == sent.worker:
                return self._shifted_backward(sent, dy, need_x, need_w)
            return self._fresh_backward(index, sent, dy, need_x, need_w)

        # The key-shift request itself drops X', W' from the worker, whether or not it verifies.
        return self._retrying(job, sent.worker, "backward")

    def _key(self, x: torch.Tensor, w: torch.Tensor) -> MatmulKey:
        m, n, p = x.shape[0], x.shape[1], w.shape[1]
        if self.identity:
            return MatmulKey.draw(m, n, p, self.rng, identity=True)
        if x.dtype not in self._keys:
            self._keys[x.dtype] = KeyPool(self.rng, x.dtype)
        return self._keys[x.dtype].draw(m, n, p)

    def _while_waiting(self) -> None:
        """Work for the idle time between sending a request and its reply."""
        for keys in self._keys.values():
            keys.refill()

    def _forward_on(
        self, index: int, x: torch.Tensor, w: torch.Tensor, keep: bool
    ) -> tuple[torch.Tensor, _Sent]:
        key = self._key(x, w)
        xp, wp = ob.encode_x(x, key), ob.encode_w(w, key)
        self.counts.encryptions += 2
        xa, wa = to_numpy(xp), to_numpy(wp)
        ids = operand_id(), operand_id()
        request = WorkRequest(((ids[0], xa), (ids[1], wa)), (Product(*ids),), () if keep else ids)
        worker = self.pool[index]
        worker.submit(request)
        abs_xp, abs_wp = xp.abs(), wp.abs()
        expectation = self._expect(xp, wp, abs_xp, abs_wp)
        self._while_waiting()
        (yp,) = self._collect(worker, 1)
        self._verify(expectation, yp)
        self.counts.decryptions += 1
        return ob.decode_y(yp, key), _Sent(index, key, xp, wp, abs_xp, abs_wp, ids, x, w)

    def _shifted_backward(
        self, sent: _Sent, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Encrypt dY once; dX' = dY' W'^T and dW' = X'^T dY' reuse the cached X', W'."""
        dyp = ob.encode_dy(dy, sent.key)
        self.counts.encryptions += 1
        request = backward_request(to_numpy(dyp), sent.ids, need_x, need_w)
        worker = self.pool[sent.worker]
        worker.submit(request)
        abs_dyp = dyp.abs()
        for_dx = self._expect(dyp, sent.wp.T, abs_dyp, sent.abs_wp.T) if need_x else None
        for_dw = self._expect(sent.xp.T, dyp, sent.abs_xp.T, abs_dyp) if need_w else None
        self._while_waiting()
        results = iter(self._collect(worker, len(request.products)))
        dx = dw = None
        if for_dx is not None:
            dxp = next(results)
            self._verify(for_dx, dxp)
            dx = ob.decode_dx(dxp, sent.key)
        if for_dw is not None:
            dwp = next(results)
            self._verify(for_dw, dwp)
            dw = ob.decode_dw(dwp, sent.key)
        self.counts.decryptions += int(need_x) + int(need_w)
        return dx, dw

    def _fresh_backward(
        self, index: int, sent: _Sent, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Without key shift: dX = dY W^T and dW = X^T dY as two new products, new keys each."""
        dx = self._forward_on(index, dy, sent.w.T, False)[0] if need_x else None
        dw = self._forward_on(index, sent.x.T, dy, False)[0] if need_w else None
        return dx, dw

    def _expect(
        self, a: torch.Tensor, b: torch.Tensor, abs_a: torch.Tensor, abs_b: torch.Tensor
    ) -> freivalds.Expectation:
        return freivalds.expect(
            a, b, self.rng, repetitions=self.repetitions, abs_a=abs_a, abs_b=abs_b
        )

    def _verify(self, expectation: freivalds.Expectation, c: torch.Tensor) -> None:
        self.counts.checks += 1
        expectation.verify(c)
