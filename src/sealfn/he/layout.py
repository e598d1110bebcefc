"""The slot layout every HE backend uses: one vector of width ``d`` repeated ``slots / d`` times
(cyclic rotations by ``k < d`` then act on every copy alike), and the replica check on decrypt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sealfn.errors import EnvelopeError, InvalidInput
from sealfn.he.plan import INPUT, Add, Linear, LinearSteps, Plan, Square, cost, linear_steps

# Disagreement allowed between the replicated copies of a decrypted vector, relative to
# 1 + max|value|. An honest result's copies differ by CKKS noise only (measured: 3e-3 on logits
# of ~0.8 at N=8192 with a 25-bit scale); a ciphertext decrypted under the wrong key, or computed
# with someone else's evaluation keys, decrypts to noise of the size of the modulus (measured:
# copies 3.5e4 apart).
REPLICA_TOLERANCE = 5e-2


def tile(vector: np.ndarray, width: int, slots: int) -> np.ndarray:
    """``vector`` zero-padded to ``width``, repeated to fill ``slots`` (float64)."""
    return np.tile(np.pad(np.asarray(vector, np.float64), (0, width - len(vector))), slots // width)


def replicate(values: np.ndarray, width: int, slots: int) -> np.ndarray:
    """An input flattened and tiled; ``InvalidInput`` if it does not fit ``width``."""
    flat = np.asarray(values, np.float64).reshape(-1)
    if len(flat) > width:
        raise InvalidInput(f"{len(flat)} values do not fit the network's input width {width}")
    return tile(flat, width, slots)


def unreplicate(slots: np.ndarray, width: int, count: int) -> np.ndarray:
    """The first ``count`` values, averaged over the copies; ``EnvelopeError`` if the copies
    disagree (a wrong key). Opaque on purpose: the debug log never sees values."""
    copies = np.asarray(slots, np.float64).reshape(-1, width)[:, :count]
    spread = float(np.abs(copies - copies[0]).max())
    if not np.isfinite(spread) or spread > REPLICA_TOLERANCE * (1 + np.abs(copies[0]).max()):
        raise EnvelopeError()
    result: np.ndarray = copies.mean(axis=0)
    return result


def check_fits(plan: Plan, slots: int, levels: int) -> None:
    """``InvalidInput`` unless keys with ``slots`` slots and ``levels`` levels can run ``plan``."""
    if plan.width > slots or slots % plan.width:
        raise InvalidInput(f"the evaluation keys' ring has too few slots for width {plan.width}")
    depth = cost(plan).depth
    if depth > levels:
        raise InvalidInput(
            f"the evaluation keys allow depth {levels}; this network needs {depth} "
            "(make keys with sealfn he keygen for this function)"
        )


class PreparedPlans:
    """The plans an evaluator has checked against its keys (`check_fits`) and prepared (each
    Linear's diagonals and rotation steps), by identity; past ``keep`` the oldest goes (an
    instance serves one plan)."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._plans: dict[int, tuple[Plan, list[LinearSteps | None]]] = {}

    def steps(self, plan: Plan, slots: int, levels: int) -> list[LinearSteps | None]:
        cached = self._plans.get(id(plan))
        if cached is not None and cached[0] is plan:
            return cached[1]
        check_fits(plan, slots, levels)
        prepared = linear_steps(plan)
        if len(self._plans) >= self.keep:
            self._plans.pop(next(iter(self._plans)))
        self._plans[id(plan)] = (plan, prepared)
        return prepared


def interpret(  # noqa: PLR0917 - the plan, its steps, the input, then one callable per op kind
    plan: Plan,
    steps: list[LinearSteps | None],
    first: Any,
    linear: Callable[..., Any],
    square: Callable[[Any, np.ndarray], Any],
    add: Callable[[Any, Any], Any],
) -> Any:
    """Run ``plan``'s ops over registers holding one backend's ciphertexts, from ``first`` (the
    encrypted input): ``linear(x, op, diagonals, rotation_steps)``, ``square(x, offset)``,
    ``add(a, b)``; the output register's ciphertext."""
    registers = {INPUT: first}
    for op, prepared in zip(plan.ops, steps, strict=True):
        if isinstance(op, Linear) and prepared is not None:
            registers[op.dst] = linear(registers[op.src], op, *prepared)
        elif isinstance(op, Square):
            registers[op.dst] = square(registers[op.src], op.offset)
        elif isinstance(op, Add):
            registers[op.dst] = add(registers[op.a], registers[op.b])
    return registers[plan.output]
