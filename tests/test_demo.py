"""`make demo` end to end (slow: it builds the example models with PyTorch): `make test-slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealfn.demo import run_demo


@pytest.mark.slow
def test_the_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(tmp_path / "demo", requests=20) == 0
    out = capsys.readouterr().out
    assert "equals the plain model: True" in out  # the sealed round trip
    assert "equal to in-process onnxruntime: True" in out  # the batch job
    assert "stopped cleanly (exit status 0)" in out
