"""sealfn's two HE backends on the same compiled plan: TenSEAL (default) and HElayers (optional).

Usage: .venv/bin/python benchmarks/he_backends.py --helayers-python /tmp/hevenv/bin/python
Writes benchmarks/results/he_backends.json.

Both run sealfn's plan (same layout, rotations, depth, parameters from ``params.choose``); only the
CKKS library under it differs. Each backend is measured in a fresh child process (peak RSS is its
own): key generation, evaluation-key and ciphertext sizes, latency per image, and the decrypted
logits against the plan in plaintext. ``--helayers-python`` is a Python with ``pyhelayers`` (a
venv of your own: non-commercial licence) that can import sealfn (a ``.pth`` line to ``src``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


def child(backend_name: str, graph_path: str, images_path: str) -> dict[str, Any]:
    from sealfn.he.backend import named
    from sealfn.he.graph import NetGraph
    from sealfn.he.params import choose
    from sealfn.he.plan import compile_graph, cost

    plan = compile_graph(NetGraph.from_bytes(Path(graph_path).read_bytes()))
    images = np.load(images_path)
    backend = named(backend_name)
    params = choose(cost(plan).depth, plan.width)
    started = time.perf_counter()
    keys = backend.keygen(params)
    keygen_s = time.perf_counter() - started
    evaluator = backend.evaluator(keys.evaluation_keys())
    latencies, errors, agree, sizes = [], [], 0, (0, 0)
    for image in images:
        ciphertext = backend.encrypt(keys, image, plan.width)
        started = time.perf_counter()
        reply = evaluator.evaluate(plan, ciphertext)
        latencies.append(time.perf_counter() - started)
        got = backend.decrypt(keys, reply, plan.width, plan.outputs)
        expected = plan.run_plain(image)
        errors.append(float(np.abs(got - expected).max()))
        agree += int(got.argmax() == expected.argmax())
        sizes = (len(ciphertext), len(reply))
    return {
        "backend": backend_name,
        "params": {"N": params.poly_modulus, "coeff_bits": list(params.coeff_bits)},
        "levels": evaluator.levels,
        "keygen_s": keygen_s,
        "evaluation_keys_mib": len(keys.evaluation_keys()) / 2**20,
        "ciphertext_in_bytes": sizes[0],
        "ciphertext_out_bytes": sizes[1],
        "latency_s": latencies,
        "latency_p50_s": statistics.median(latencies),
        "latency_min_s": min(latencies),
        "max_logit_error": max(errors),
        "same_class": f"{agree}/{len(images)}",
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def measure(python: str, backend: str, graph: Path, images: Path) -> dict[str, Any]:
    done = subprocess.run(
        [python, __file__, "--child", backend, str(graph), str(images)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"backend": backend, "error": f"exit {done.returncode}: {done.stderr[-400:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helayers-python", default=sys.executable)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--child", nargs=3, metavar=("BACKEND", "GRAPH", "IMAGES"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    from sealfn.he.data import digits
    from sealfn.he.networks import NetConfig
    from sealfn.he.train import TrainConfig, train

    data = digits()
    settings = TrainConfig(epochs=args.epochs, seed=0)
    trained = train(NetConfig(kind="he"), data, settings, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        graph, images = Path(folder) / "net.he", Path(folder) / "images.npy"
        graph.write_bytes(trained.net.graph().to_bytes())
        np.save(images, data.x_test[: args.images])
        results = [
            measure(sys.executable, "tenseal", graph, images),
            measure(args.helayers_python, "helayers", graph, images),
        ]
    report = {"network": "demo (Dirac + shared source, 1 block, 4 channels)", "results": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "he_backends.json").write_text(json.dumps(report, indent=2) + "\n")
    for result in results:
        print(json.dumps({k: v for k, v in result.items() if k != "latency_s"}))


if __name__ == "__main__":
    main()
