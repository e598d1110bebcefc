"""One trained network pair on every CKKS library that runs here: TenSEAL (sealfn's default),
IBM HElayers and Orion, the last two from another venv, each in its own process.

Usage: .venv/bin/python benchmarks/he_libraries.py --python /tmp/hevenv/bin/python [--images 2]
Writes benchmarks/results/he_libraries.json and he_libraries.png.

``--python`` is a Python with ``pyhelayers`` and/or ``orion-fhe`` installed (a throwaway venv:
HElayers' licence is non-commercial and Orion declares torch/torchvision as dependencies; neither
may enter sealfn's environment). A library that does not import there is recorded as such.
Correctness: every library's decrypted logits against the plaintext network (max |Δ|).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from he import _machine, measure  # the TenSEAL measurement, in a child process
from he_helayers import onnx_for_helayers, run_in_subprocess

RESULTS = Path(__file__).parent / "results"
ORION = Path(__file__).parent / "he_orion.py"


def run_orion(python: str, graph_bytes: bytes, images: np.ndarray) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        graph, data = Path(folder) / "net.he", Path(folder) / "images.npy"
        graph.write_bytes(graph_bytes)
        np.save(data, images)
        try:
            done = subprocess.run(
                [python, str(ORION), str(graph), str(data)],
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": "timed out after 1800 s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout)[-400:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def importable(python: str, module: str) -> str | None:
    """The module's import error in ``python``, or None when it imports."""
    done = subprocess.run(
        [python, "-c", f"import {module}"], capture_output=True, text=True, timeout=300, check=False
    )
    return None if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", required=True, help="a Python with pyhelayers / orion-fhe")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    from sealfn.he.data import digits
    from sealfn.he.graph import NetGraph
    from sealfn.he.networks import NetConfig
    from sealfn.he.plan import compile_graph
    from sealfn.he.train import TrainConfig, train

    data = digits()
    x, y = data.x_test[: args.images], data.y_test[: args.images]
    context = multiprocessing.get_context("spawn")
    missing = {m: importable(args.python, m) for m in ("pyhelayers", "orion")}
    rows = []
    for kind in ("standard", "he"):
        result = train(NetConfig(kind=kind, channels=4, blocks=1), data, TrainConfig(args.epochs))
        graph_bytes = result.net.graph().to_bytes()
        plan = compile_graph(NetGraph.from_bytes(graph_bytes))
        reference = np.stack([plan.run_plain(image) for image in x])
        with context.Pool(1) as pool:
            tenseal = pool.apply(measure, (graph_bytes, x, y))
        rows.append(_row(kind, "tenseal 0.3.18 (SEAL)", result.test_accuracy, tenseal, None))
        if missing["pyhelayers"] is None:
            helayers = run_in_subprocess(args.python, onnx_for_helayers(plan_graph(graph_bytes)), x)
            rows.append(_row(kind, "pyhelayers", result.test_accuracy, helayers, reference))
        if missing["orion"] is None and kind == "he":  # Orion's compile alone takes minutes
            orion = run_orion(args.python, graph_bytes, x)
            rows.append(_row(kind, "orion-fhe", result.test_accuracy, orion, reference))
        for row in rows[-3:]:
            print(json.dumps({k: v for k, v in row.items() if k != "latency_s"}), flush=True)
    report = {
        "rows": rows,
        "not_importable": {m: e for m, e in missing.items() if e},
        "machine": _machine(),
        "command": f"benchmarks/he_libraries.py --python {args.python} --images {args.images}",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "he_libraries.json").write_text(json.dumps(report, indent=2))
    plot(rows, RESULTS / "he_libraries.png")


def plan_graph(graph_bytes: bytes) -> Any:
    from sealfn.he.graph import NetGraph

    return NetGraph.from_bytes(graph_bytes)


def _row(
    kind: str, library: str, accuracy: float, measured: dict[str, Any], reference: Any
) -> dict[str, Any]:
    row = {"kind": kind, "library": library, "plain_test_accuracy": accuracy}
    if "error" in measured:
        return row | {"error": measured["error"]}
    row |= {
        key: measured.get(key)
        for key in (
            "latency_s",
            "latency_p50_s",
            "peak_rss_mb",
            "depth",
            "poly_modulus",
            "bootstraps",
            "max_logit_error",
            "compile_s",
            "setup_s",
            "input_level",
            "requirement",
        )
        if key in measured
    }
    text = str(measured.get("requirement", ""))
    for key, pattern in (("depth", r"Multiplication depth: (\d+)"), ("slots", r"slots: (\d+)")):
        if found := re.search(pattern, text):
            row[key] = int(found.group(1))
    if "Bootstrappable: False" in text:
        row["bootstraps"] = 0
    if reference is not None and "logits" in measured:
        logits = np.asarray(measured["logits"])[:, : reference.shape[1]]
        row["max_logit_error"] = float(np.abs(logits - reference).max())
    return row


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if "latency_p50_s" in r]
    labels = [f"{r['library'].split()[0]}\n{r['kind']}" for r in measured]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].bar(labels, [r["latency_p50_s"] for r in measured])
    axes[0].set_yscale("log")
    axes[0].set_title("encrypted latency per image, p50 (s, log)", fontsize=10)
    axes[1].bar(labels, [r["peak_rss_mb"] / 1024 for r in measured])
    axes[1].set_title("peak memory (GB)", fontsize=10)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("Same 1-block digits networks on three CKKS libraries (this 2-core machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
