"""How well Freivalds checks catch tampered products, and how small a tamper slips through.

Usage: ``.venv/bin/python benchmarks/training_integrity.py``. Writes
``benchmarks/results/training_integrity.json``.

Products of random shapes (each dimension 2..23) and magnitudes (10^-3..10^3), checked with
``sealfn.training.freivalds.check`` (k = 2) in float32 and float64: false alarms over 5,000
honest products per dtype; detection over 1,000 trials per tampering kind (one entry off by 0.1 %
of the largest entry, the result scaled by 1.001, two rows swapped, a stale product with
weights one small SGD update old); and detection of one entry off by a fraction delta of the
largest entry, delta swept down to the rounding level, where detection must fall off.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from sealfn.errors import IntegrityError
from sealfn.training import freivalds
from sealfn.training.keys import csprng
from sealfn.training.tampering import Tamper, one_entry, scaled, stale, swapped_rows

RESULTS = Path(__file__).resolve().parent / "results"
TRIALS = 1000
HONEST = 5000
DELTAS = {"float32": (1e-3, 1e-4, 1e-5, 1e-6), "float64": (1e-9, 1e-11, 1e-13, 1e-14)}


def operands(rng: np.random.Generator, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    m, n, p = (int(v) for v in rng.integers(2, 24, size=3))
    scale = 10.0 ** rng.uniform(-3, 3)
    a = torch.from_numpy(rng.standard_normal((m, n)) * scale).to(dtype)
    return a, torch.from_numpy(rng.standard_normal((n, p))).to(dtype)


def passes(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, rng: np.random.Generator) -> bool:
    try:
        freivalds.check(a, b, c, rng)
    except IntegrityError:
        return False
    return True


def caught(tamper: Tamper, dtype: torch.dtype, rng: np.random.Generator) -> int:
    hits = tried = 0
    while tried < TRIALS:
        a, b = operands(rng, dtype)
        c = a @ b
        bad = tamper(a, b, c, rng)
        if torch.equal(bad, c):
            continue
        tried += 1
        hits += not passes(a, b, bad, rng)
    return hits


def main() -> int:
    torch.set_num_threads(1)
    rng = csprng()
    results: dict[str, object] = {"trials": TRIALS, "honest": HONEST, "repetitions": 2}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        alarms = 0
        for _ in range(HONEST):
            a, b = operands(rng, dtype)
            alarms += not passes(a, b, a @ b, rng)
        kinds = {"one_entry_1e-3": one_entry(1e-3), "scaled": scaled, "swapped_rows": swapped_rows}
        kinds["stale"] = stale
        row = {
            "false_alarms": alarms,
            "caught": {kind: caught(tamper, dtype, rng) for kind, tamper in kinds.items()},
            "one_entry_delta_sweep": {
                str(delta): caught(one_entry(delta), dtype, rng) for delta in DELTAS[name]
            },
        }
        results[name] = row
        print(name, json.dumps(row))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_integrity.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
