"""The demo workload: CAI's redshift task on SYNTHETIC galaxies, run as a sealfn batch job.

Usage: ``.venv/bin/python benchmarks/batch_redshift.py [--quick]``. Writes
``benchmarks/results/batch_redshift.json`` and ``batch_redshift.png`` (predicted vs true).

Steps: generate seeded synthetic galaxies (``sealfn.workloads.redshift``: astropy cosmology for
sizes and magnitudes, a toy colour model; not real survey data), train the two-branch CNN+MLP
with torch, export it to ONNX, store the test set as ``.npz`` shards (CAI's record layout), run
``sealfn batch`` over them on 2 instances, check the job's predictions against onnxruntime in
this process record for record, and score them against predict-the-mean and a magnitude-only
kNN baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.batch.dataset import Dataset
from sealfn.batch.fleet import LocalFleet
from sealfn.batch.job import JobConfig, run_job
from sealfn.batch.messages import WorkerSpec
from sealfn.workloads import redshift

RESULTS = Path(__file__).resolve().parent / "results"


def plot(true: np.ndarray, arms: dict[str, np.ndarray], scores: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 4.2), sharey=True)
    for ax, (name, predicted) in zip(axes, arms.items(), strict=True):
        ax.scatter(true, predicted, s=2, alpha=0.3)
        ax.plot([0, 1.5], [0, 1.5], "r--", linewidth=1)
        ax.set_title(f"{name}\nMAE {scores[name]['mae']:.4f}, R² {scores[name]['r2']:.3f}")
        ax.set_xlabel("true redshift (synthetic)")
    axes[0].set_ylabel("predicted redshift")
    figure.suptitle("SYNTHETIC galaxies (not survey data): redshift, batch job vs baselines")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_train, n_test, epochs = (2000, 1000, 2) if args.quick else (8000, 4000, 5)
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    train_set = redshift.galaxies(n_train, seed=1)
    test_set = redshift.galaxies(n_test, seed=2)
    timings["generate_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    net = redshift.train(train_set, epochs=epochs, seed=0)
    timings["train_s"] = time.perf_counter() - mark
    with tempfile.TemporaryDirectory(prefix="sealfn-redshift-") as tmp:
        folder = Path(tmp)
        model = redshift.export(net, folder / "redshift.onnx")
        redshift.write_shards(test_set, folder / "shards", per_shard=1000)
        spec = WorkerSpec(model, folder / "shards", folder / "checkpoints", batch_size=256)
        mark = time.perf_counter()
        result = run_job(LocalFleet(spec), n_test, JobConfig(2, 500, progress=False))
        timings["batch_job_s"] = time.perf_counter() - mark
        predicted = result.outputs["redshift"].reshape(-1)
        import onnxruntime as ort

        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        feeds = Dataset.open(folder / "shards").feeds(0, n_test, ("image", "mags"))
        in_process = session.run(None, feeds)[0].reshape(-1)
    true = test_set["redshift"]
    arms = {
        "two-branch CNN+MLP (batch job)": predicted,
        "kNN on magnitudes": redshift.knn_magnitudes(
            train_set["mags"], train_set["redshift"], test_set["mags"]
        ),
        "predict the mean": redshift.predict_mean(train_set["redshift"], n_test),
    }
    scores = {name: vars(redshift.Scores.of(p, true)) for name, p in arms.items()}
    report = {
        "data": "SYNTHETIC galaxies (sealfn.workloads.redshift), not survey data",
        "train": n_train,
        "test": n_test,
        "epochs": epochs,
        "scores": scores,
        "batch_equals_in_process": bool(np.array_equal(predicted, in_process)),
        "model_loads": {name: log.loads for name, log in result.instances.items()},
        "timings": timings,
        "method": __doc__,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch_redshift.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(true, arms, scores, RESULTS / "batch_redshift.png")
    print(
        json.dumps({"scores": scores, "batch_equals_in_process": report["batch_equals_in_process"]})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
