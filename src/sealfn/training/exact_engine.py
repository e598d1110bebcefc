"""The exact mode's engine: each product as four masked products mod P on four worker roles.

The algebra (quantisation, masks, recombination) is :mod:`sealfn.training.fieldmask`; this module
places the roles on workers, collects and checks their results (Freivalds mod P), and fails
closed when a lost worker would make two roles share one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sealfn.errors import ConfigError, InstanceFailed, Unavailable
from sealfn.training import fieldmask, freivalds
from sealfn.training.bilinear import MATMUL, Bilinear
from sealfn.training.offload import Offloading, to_numpy, to_tensor
from sealfn.training.pool import WorkerPool
from sealfn.training.wire import Product, WorkRequest, operand_id

ROLES = 4  # the four masked products of one exact product


class ExactEngine(Offloading):
    """Fixed point in Z_P, one-time additive masks, four roles on (ideally) four workers."""

    def __init__(
        self, pool: WorkerPool, *, repetitions: int = freivalds.DEFAULT_REPETITIONS
    ) -> None:
        super().__init__(pool)
        self.repetitions = repetitions
        self.distinct = len(pool) >= ROLES  # started with a worker per role: keep it that way

    @property
    def non_collusion_possible(self) -> bool:
        """Whether each role has a live worker of its own (the condition for hiding values)."""
        return len(self.pool.alive()) >= ROLES

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, keep: bool, op: Bilinear
    ) -> tuple[torch.Tensor, Any]:
        if op is not MATMUL:
            raise ConfigError("exact mode offloads matrix products only (convolutions by im2col)")
        return self._product(x, w, "forward"), (x, w)

    def backward(
        self, handle: Any, dy: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, w = handle
        dx = self._product(dy, w.T, "backward") if need_x else None
        dw = self._product(x.T, dy, "backward") if need_w else None
        return dx, dw

    def _product(self, x: torch.Tensor, w: torch.Tensor, phase: str) -> torch.Tensor:
        bx, bw = fieldmask.bits_for(x.shape[1])
        xq, wq = fieldmask.quantize(x, bx), fieldmask.quantize(w, bw)

        def job(start: int) -> torch.Tensor:
            masked = fieldmask.split(xq.values, wq.values, self.rng)
            self.counts.encryptions += 2
            parts = self._dispatch(masked, start)
            self.counts.decryptions += 1
            return fieldmask.combine(parts)

        exact = self._retrying(job, self._place(), phase)
        return (exact / (xq.factor * wq.factor)).to(x.dtype)

    def _dispatch(self, masked: fieldmask.MaskedProduct, start: int) -> list[torch.Tensor]:
        """Send role r's pair to the r-th live worker from ``start``, then collect and check.

        Roles that share a worker travel in one request, so each worker gets one request and
        sends one reply: the coordinator never blocks writing to a worker that is blocked
        writing its reply back. Every submitted request is collected before anything is raised,
        so no reply is left behind to be mistaken for the next one.
        """
        alive = self.pool.alive()
        if self.distinct and len(alive) < ROLES:  # fail closed rather than share roles
            raise Unavailable("exact mode lost a worker: two masked roles would share one")
        first = alive.index(start) if start in alive else 0
        plans: dict[int, list[int]] = {}
        for role in range(len(masked.pairs)):
            plans.setdefault(alive[(first + role) % len(alive)], []).append(role)
        submitted, failure = [], None
        for index, roles in plans.items():
            try:
                self.pool[index].submit(self._role_request(masked, roles))
                submitted.append(index)
            except InstanceFailed as exc:
                failure = failure or exc
        parts: dict[int, torch.Tensor] = {}
        for index in submitted:
            try:
                reply = self.pool[index].collect()
            except InstanceFailed as exc:
                failure = failure or exc
                continue
            self.counts.products += len(plans[index])
            self.counts.worker_seconds += reply.seconds
            parts.update(zip(plans[index], (to_tensor(r) for r in reply.results), strict=True))
        if failure is not None:
            raise failure
        for role, (left, right) in enumerate(masked.pairs):
            self.counts.checks += 1
            freivalds.check_mod_p(left, right, parts[role], self.rng, repetitions=self.repetitions)
        return [parts[role] for role in range(len(masked.pairs))]

    @staticmethod
    def _role_request(masked: fieldmask.MaskedProduct, roles: list[int]) -> WorkRequest:
        store: list[tuple[str, np.ndarray]] = []
        products: list[Product] = []
        drop: list[str] = []
        for role in roles:
            la, ra = (to_numpy(t) for t in masked.pairs[role])
            ids = operand_id(), operand_id()
            store += [(ids[0], la), (ids[1], ra)]
            products.append(Product(*ids, modular=True))
            drop += ids
        return WorkRequest(tuple(store), tuple(products), tuple(drop))
