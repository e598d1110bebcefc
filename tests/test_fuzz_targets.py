"""The coverage-guided fuzz targets (fuzz/targets.py, run by `make fuzz`) stay runnable: each
accepts its seeds and refuses a corrupted seed only in its documented way."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from targets import TARGETS

AUTHENTICATED = {"envelope", "session", "sealed_model"}  # any change to these is refused


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_accepted_and_corruption_is_refused_cleanly(name: str) -> None:
    target = TARGETS[name]
    assert target.seeds
    for seed in target.seeds:
        target.run(seed)
        corrupted = bytearray(seed)
        corrupted[len(corrupted) // 2] ^= 0x5A
        refusal = pytest.raises(target.allowed) if name in AUTHENTICATED else None
        with refusal or contextlib.suppress(*target.allowed):
            target.run(bytes(corrupted))
