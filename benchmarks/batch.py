"""Batch inference throughput: the batch job on 1, 2 and 4 instances vs one plain process.

Usage: ``.venv/bin/python benchmarks/batch.py [--quick] [--ray] [--records N]``. Writes
``benchmarks/results/batch.json`` and ``batch.png``.

Workload: a seeded ONNX MLP (256 -> 2048 -> 2048 -> 16, ReLU; 4.7 M multiply-adds per record)
over seeded random float32 records, 512 records per partition, onnxruntime batches of 256, one
onnxruntime thread per instance. The single-process arm is a fresh ``python`` process that loads
the model and runs every record with the same batch size and thread count: its wall clock, like
the job's, includes interpreter start, imports and the model load. The job's wall clock runs from
``run_job`` to its return: starting and loading the instances, the rounds, the gather of every
result to the root, and stopping the instances. Parallel efficiency = single-process seconds /
(instances x job seconds). CPU efficiency = single-process CPU seconds / the job's CPU seconds
(root + instances, local engine): what the distribution costs in work, which other processes on a
shared machine do not distort the way they distort wall clocks. The machine's core count bounds
useful instances (2 here): 4 instances on 2 cores show the cost of oversubscription. ``--ray``
adds the same job on the Ray engine (Ray started before the clock, actors at num_cpus=0.5).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WIDTHS = (256, 2048, 2048, 16)
PARTITION = 512
BATCH = 256
INSTANCES = (1, 2, 4)


def build_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "input"
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(WIDTHS)):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{layer}"))
        out = "output" if layer == len(WIDTHS) - 2 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [current, f"w{layer}"], [f"m{layer}"]))
        if out == "output":
            nodes.append(helper.make_node("Identity", [f"m{layer}"], [out]))
        else:
            nodes.append(helper.make_node("Relu", [f"m{layer}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "batch_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", WIDTHS[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", WIDTHS[-1]])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # what onnxruntime 1.31 reads (onnx 1.23 writes 14 by default)
    onnx.save(model, path)
    return path


def single_process(model: Path, data: Path) -> None:
    """The baseline, run as its own process: load once, run every record, report seconds."""
    from sealfn.batch.dataset import Dataset
    from sealfn.instance.models import ModelHost

    host = ModelHost(1)
    loaded = host.load("m", model)
    dataset = Dataset.open(data)
    outputs = []
    for start in range(0, dataset.records, BATCH):
        feeds = dataset.feeds(start, min(start + BATCH, dataset.records), loaded.input_names)
        outputs.append(host.run_batch("m", [feeds])[0]["output"])
    np.save(data.with_name("single-output.npy"), np.concatenate(outputs))


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of every child it has waited for."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def run_single(model: Path, data: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the single-process baseline."""
    cpu, started = cpu_seconds(), time.perf_counter()
    command = [sys.executable, __file__, "--single", str(model), str(data)]
    subprocess.run(command, check=True)
    return time.perf_counter() - started, cpu_seconds() - cpu


def run_job_arm(
    engine: str, instances: int, model: Path, data: Path, folder: Path
) -> dict[str, Any]:
    from sealfn.batch.dataset import Dataset
    from sealfn.batch.fleet import LocalFleet, WorkerSpec
    from sealfn.batch.job import JobConfig, run_job

    spec = WorkerSpec(model, data, folder / f"ckpt-{engine}-{instances}", 1, BATCH)
    if engine == "ray":
        from sealfn.runtime.executors.ray import RayFleet

        fleet: Any = RayFleet(spec)
    else:
        fleet = LocalFleet(spec)
    records = Dataset.open(data).records
    load = os.getloadavg()[0]
    cpu, started = cpu_seconds(), time.perf_counter()
    result = run_job(fleet, records, JobConfig(instances, PARTITION, progress=False))
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu  # root + instances (local engine: they are our children)
    expected = np.load(data.with_name("single-output.npy"))
    return {
        "engine": engine,
        "instances": instances,
        "seconds": seconds,
        "cpu_seconds": cpu if engine == "local" else None,  # Ray's actors are not our children
        "records_per_s": records / seconds,
        "model_loads": {name: log.loads for name, log in result.instances.items()},
        "rounds": result.rounds,
        "load_average_before": load,  # other work on the machine: the cores are shared
        "matches_single_process": bool(np.array_equal(result.outputs["output"], expected)),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    single = report["single_process"]["records_per_s"]
    for engine in ("local", "ray"):
        arms = [a for a in report["jobs"] if a["engine"] == engine]
        if arms:
            xs = [a["instances"] for a in arms]
            left.plot(xs, [a["records_per_s"] for a in arms], "o-", label=f"batch job ({engine})")
            right.plot(xs, [a["efficiency"] for a in arms], "o-", label=engine)
    left.axhline(single, color="grey", linestyle="--", label="one plain process")
    left.set_xlabel("instances")
    left.set_ylabel("records / s (end to end)")
    left.set_xticks(INSTANCES)
    left.legend()
    right.axhline(0.85, color="red", linestyle=":", label="85% target")
    right.set_xlabel("instances")
    right.set_ylabel("parallel efficiency")
    right.set_xticks(INSTANCES)
    right.set_ylim(0, 1.1)
    right.legend()
    figure.suptitle(f"batch inference, {report['records']} records, {os.cpu_count()} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--records", type=int, default=None, help="default 1048576 (quick 16384)")
    parser.add_argument("--single", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        single_process(*args.single)
        return 0
    # A large dataset (the single process runs ~50 s here): the job's fixed ~1.5 s (instance
    # interpreters, imports, model loads, rendezvous) is what smaller ones mostly measure.
    records = args.records or (16384 if args.quick else 1 << 20)
    with tempfile.TemporaryDirectory(prefix="sealfn-bench-batch-") as tmp:
        folder = Path(tmp)
        model = build_model(folder / "mlp.onnx")
        data = folder / "records.npy"
        rng = np.random.default_rng(1)
        np.save(data, rng.standard_normal((records, WIDTHS[0])).astype(np.float32))
        single_s, single_cpu = run_single(model, data)
        report: dict[str, Any] = {
            "method": __doc__,
            "records": records,
            "cpus": os.cpu_count(),
            "single_process": {
                "seconds": single_s,
                "cpu_seconds": single_cpu,
                "records_per_s": records / single_s,
                "load_average_after": os.getloadavg()[0],
            },
            "jobs": [],
        }
        print(f"single process: {single_s:.2f} s", flush=True)
        engines = ["local"]
        if args.ray:
            from sealfn.runtime.executors.ray import init_ray

            init_ray()
            engines.append("ray")
        for engine in engines:
            for instances in INSTANCES:
                arm = run_job_arm(engine, instances, model, data, folder)
                arm["efficiency"] = single_s / (instances * arm["seconds"])
                if arm["cpu_seconds"]:  # the job's overhead in CPU, whatever else runs here
                    arm["cpu_efficiency"] = single_cpu / arm["cpu_seconds"]
                report["jobs"].append(arm)
                print(json.dumps(arm), flush=True)
    report["one_load_per_instance"] = all(
        set(a["model_loads"].values()) == {1} for a in report["jobs"]
    )
    report["efficiency_at_core_count"] = {
        a["engine"]: a["efficiency"] for a in report["jobs"] if a["instances"] == os.cpu_count()
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, RESULTS / "batch.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
