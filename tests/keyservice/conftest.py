"""KeyService fixtures: a :class:`Harness` per test (see keyservice_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from keyservice_harness import Harness


@pytest.fixture
def ks(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.service.close()
