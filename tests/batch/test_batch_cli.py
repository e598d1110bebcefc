"""`sealfn batch run` as a user runs it, and Ray staying out of the default path."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sealfn.cli import main
from sealfn_testing import Models

Reference = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]


def test_batch_run_writes_outputs_summary_and_timeline(
    models: Models, tmp_path: Path, reference: Reference, capsys: object
) -> None:
    data = np.random.default_rng(5).standard_normal((301, 16)).astype(np.float32)
    np.save(tmp_path / "data.npy", data)
    code = main(
        [
            "batch", "run", str(models.mlp), str(tmp_path / "data.npy"),
            "--instances", "2", "--partition-records", "50", "--no-progress",
            "--output", str(tmp_path / "out.npz"), "--report-dir", str(tmp_path / "report"),
        ]
    )  # fmt: skip
    assert code == 0
    out = np.load(tmp_path / "out.npz")["output"]
    np.testing.assert_array_equal(out, reference(models.mlp, {"input": data})["output"])
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["records"] == 301 and summary["partitions"] == 7
    assert summary["model_loads"] == {"i0": 1, "i1": 1}
    assert summary["partitions_computed"] == 7 and summary["gb_seconds"] > 0
    assert (tmp_path / "report" / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_a_missing_model_is_a_clear_error(tmp_path: Path, capsys: object) -> None:
    np.save(tmp_path / "data.npy", np.ones((2, 16), dtype=np.float32))
    assert main(["batch", "run", str(tmp_path / "none.onnx"), str(tmp_path / "data.npy")]) == 1


def test_the_default_path_never_imports_ray() -> None:
    code = (
        "import sys, sealfn.cli, sealfn.batch.job, sealfn.batch.worker, sealfn.collective, "
        "sealfn.runtime.server; print('ray' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
