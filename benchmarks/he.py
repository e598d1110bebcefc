"""Standard vs HE-friendly ResNets under CKKS (TenSEAL/SEAL), side by side in one run.

Usage: .venv/bin/python benchmarks/he.py [--quick] [--blocks 1 2] [--images 8]
Writes benchmarks/results/he.json and he.png.

For each depth (blocks) both kinds are trained on the digits until their test accuracies are
within one point (more epochs for the weaker one, up to a cap). Each network is then measured in
a fresh child process (so peak memory is its own): key generation, evaluation-key and ciphertext
sizes, encrypted latency per image (median, one thread: SEAL's evaluator is single-threaded),
decrypted logits against the plaintext network, class agreement, and peak RSS. Depth, rotations
and plaintext products are counted from the compiled plan. TenSEAL has no bootstrapping, so
bootstraps are 0 and depth is paid in coefficient-modulus primes (the ring grows with depth).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
ACCURACY_GAP = 0.01  # "trained to the same accuracy (within 1 point)"
EPOCHS = (30, 45, 60, 90)
KINDS = ("standard", "he")  # tried in turn for the weaker network until the gap closes


def measure(
    graph_bytes: bytes, images: np.ndarray, labels: np.ndarray, extra_levels: int = 0
) -> dict[str, Any]:
    """In a child process: keys, one encrypted inference per image, sizes and peak memory.
    ``extra_levels``: keys with that many more levels than the plan needs (what one more level
    of depth would cost the same network)."""
    from sealfn.he.graph import NetGraph
    from sealfn.he.params import choose
    from sealfn.he.plan import compile_graph, cost
    from sealfn.he.tenseal_backend import TensealBackend

    plan = compile_graph(NetGraph.from_bytes(graph_bytes))
    counted = cost(plan)
    params = choose(counted.depth + extra_levels, plan.width)
    backend = TensealBackend()
    started = time.perf_counter()
    keys = backend.keygen(params)
    keygen_s = time.perf_counter() - started
    rss_before_eval = _rss_mb()
    evaluator = backend.evaluator(keys.evaluation_keys())
    latencies, errors, agree, correct, sizes = [], [], 0, 0, (0, 0)
    for image, label in zip(images, labels, strict=True):
        ciphertext = backend.encrypt(keys, image, plan.width)
        started = time.perf_counter()
        reply = evaluator.evaluate(plan, ciphertext)
        latencies.append(time.perf_counter() - started)
        logits = backend.decrypt(keys, reply, plan.width, plan.outputs)
        plain = plan.run_plain(image)
        errors.append(float(np.abs(logits - plain).max()))
        agree += int(logits.argmax() == plain.argmax())
        correct += int(logits.argmax() == label)
        sizes = (len(ciphertext), len(reply))
    return {
        "depth": counted.depth,
        "bootstraps": counted.bootstraps,
        "rotations": counted.rotations,
        "plain_mults": counted.plain_mults,
        "linears": counted.linears,
        "squares": counted.squares,
        "adds": counted.adds,
        "width": plan.width,
        "poly_modulus": params.poly_modulus,
        "coeff_bits": list(params.coeff_bits),
        "keygen_s": keygen_s,
        "eval_key_bytes": len(keys.evaluation_keys()),
        "ciphertext_in_bytes": sizes[0],
        "ciphertext_out_bytes": sizes[1],
        "latency_s": latencies,
        "latency_p50_s": statistics.median(latencies),
        "max_logit_error": max(errors),
        "he_plain_class_agreement": agree / len(images),
        "he_accuracy": correct / len(images),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_keys_loaded_mb": rss_before_eval,
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train_pair(blocks: int, channels: int, epochs: tuple[int, ...]) -> dict[str, Any]:
    """Both kinds at ``blocks``, the weaker retrained with more epochs until within 1 point."""
    from sealfn.he.data import digits
    from sealfn.he.networks import NetConfig
    from sealfn.he.train import TrainConfig, train

    data = digits()
    runs: dict[str, Any] = {}
    for kind in KINDS:
        config = NetConfig(kind=kind, channels=channels, blocks=blocks)  # type: ignore[arg-type]
        runs[kind] = (train(config, data, TrainConfig(epochs[0]), progress=True), epochs[0])
    for more in epochs[1:]:
        gap = runs["standard"][0].test_accuracy - runs["he"][0].test_accuracy
        if abs(gap) <= ACCURACY_GAP:
            break
        weaker = "he" if gap > 0 else "standard"
        config = NetConfig(kind=weaker, channels=channels, blocks=blocks)  # type: ignore[arg-type]
        candidate = train(config, data, TrainConfig(more), progress=True)
        if candidate.test_accuracy > runs[weaker][0].test_accuracy:
            runs[weaker] = (candidate, more)
    return {"data": data, **runs}


def plaintext_latency_s(net: Any, image: np.ndarray) -> float:
    """onnxruntime on the folded ONNX export, one image, median of 200 runs (for scale)."""
    import onnxruntime as ort

    from sealfn.he.export import INPUT_NAME, to_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(to_onnx(net), options, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: image[None]}
    times = []
    for _ in range(200):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(
    blocks_list: list[int], channels: int, images: int, epochs: tuple[int, ...]
) -> dict[str, Any]:
    rows = []
    for blocks in blocks_list:
        pair = train_pair(blocks, channels, epochs)
        data = pair["data"]
        x, y = data.x_test[:images], data.y_test[:images]
        graphs = {kind: pair[kind][0].net.graph().to_bytes() for kind in KINDS}
        measured = _alternating(graphs, x, y)
        for kind in KINDS:
            result, used_epochs = pair[kind]
            row = {
                "kind": kind,
                "blocks": blocks,
                "channels": channels,
                "epochs": used_epochs,
                "test_accuracy": result.test_accuracy,
                "test_images": len(data.y_test),
                "plaintext_onnx_latency_s": plaintext_latency_s(result.net, data.x_test[0]),
                **measured[kind],
            }
            rows.append(row)
            print(
                f"blocks={blocks} {kind:8s} acc={result.test_accuracy:.2%} depth={row['depth']} "
                f"N={row['poly_modulus']} p50={row['latency_p50_s']:.2f}s "
                f"min={row['latency_min_s']:.2f}s rss={row['peak_rss_mb']:.0f}MB "
                f"evk={row['eval_key_bytes'] / 2**20:.0f}MiB",
                flush=True,
            )
    return {
        "rows": rows,
        "ratios": _ratios(rows),
        "one_more_level": _one_more_level(blocks_list[0], channels, images, epochs[0]),
        "machine": _machine(),
    }


def _one_more_level(blocks: int, channels: int, images: int, epochs: int) -> dict[str, Any]:
    """The HE-friendly net evaluated with keys sized for its depth and for depth + 1: the price
    of the one extra level an explicit skip costs in HElayers' layouts (paper note)."""
    from sealfn.he.data import digits
    from sealfn.he.networks import NetConfig
    from sealfn.he.train import TrainConfig, train

    data = digits()
    config = NetConfig(kind="he", channels=channels, blocks=blocks)
    graph = train(config, data, TrainConfig(epochs), progress=False).net.graph().to_bytes()
    x, y = data.x_test[:images], data.y_test[:images]
    context = multiprocessing.get_context("spawn")
    out: dict[str, Any] = {"blocks": blocks}
    for name, extra in (("own_depth", 0), ("depth_plus_one", 1)):
        with context.Pool(1) as pool:
            row = pool.apply(measure, (graph, x, y, extra))
        out[name] = {
            k: row[k]
            for k in (
                "poly_modulus",
                "coeff_bits",
                "latency_p50_s",
                "peak_rss_mb",
                "eval_key_bytes",
                "ciphertext_in_bytes",
            )
        }
    out["latency_ratio"] = (
        out["depth_plus_one"]["latency_p50_s"] / out["own_depth"]["latency_p50_s"]
    )
    rings = f"N={out['own_depth']['poly_modulus']} → {out['depth_plus_one']['poly_modulus']}"
    print(f"one more level: x{out['latency_ratio']:.2f} latency ({rings})", flush=True)
    return out


def _alternating(
    graphs: dict[str, bytes], x: np.ndarray, y: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Each kind in its own fresh process (sizes, peak memory, accuracy), then the latencies of
    both kinds paired in one process with one key set (same depth ⇒ same ring), the order swapped
    on every image: the machine is shared, and drift must hit both kinds alike."""
    context = multiprocessing.get_context("spawn")
    measured = {}
    for kind, graph in graphs.items():
        with context.Pool(1) as pool:
            measured[kind] = pool.apply(measure, (graph, x, y))
    with context.Pool(1) as pool:
        paired = pool.apply(paired_latency, (graphs, x))
    for kind in graphs:
        latencies = paired[kind]
        measured[kind] |= {
            "latency_s": latencies,
            "latency_p50_s": statistics.median(latencies),
            "latency_min_s": min(latencies),
        }
    return measured


def paired_latency(graphs: dict[str, bytes], images: np.ndarray) -> dict[str, list[float]]:
    """Encrypted latency of each kind, interleaved image by image (order alternating)."""
    from sealfn.he.graph import NetGraph
    from sealfn.he.params import choose
    from sealfn.he.plan import compile_graph, cost
    from sealfn.he.tenseal_backend import TensealBackend

    plans = {kind: compile_graph(NetGraph.from_bytes(g)) for kind, g in graphs.items()}
    depth = max(cost(plan).depth for plan in plans.values())
    width = max(plan.width for plan in plans.values())
    backend = TensealBackend()
    keys = backend.keygen(choose(depth, width))
    evaluator = backend.evaluator(keys.evaluation_keys())
    times: dict[str, list[float]] = {kind: [] for kind in plans}
    kinds = list(plans)
    for i, image in enumerate(images):
        ciphertext = backend.encrypt(keys, image, width)
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            started = time.perf_counter()
            evaluator.evaluate(plans[kind], ciphertext)
            times[kind].append(time.perf_counter() - started)
    return times


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """standard / HE-friendly per depth: the paper claims ~1.3 less computation."""
    out = []
    for blocks in sorted({r["blocks"] for r in rows}):
        std = next(r for r in rows if r["blocks"] == blocks and r["kind"] == "standard")
        he = next(r for r in rows if r["blocks"] == blocks and r["kind"] == "he")
        out.append(
            {
                "blocks": blocks,
                "latency": std["latency_p50_s"] / he["latency_p50_s"],
                "latency_min": std["latency_min_s"] / he["latency_min_s"],
                "latency_paired_median": statistics.median(
                    a / b for a, b in zip(std["latency_s"], he["latency_s"], strict=True)
                ),
                "depth": std["depth"] / he["depth"],
                "plain_mults": std["plain_mults"] / he["plain_mults"],
                "rotations": std["rotations"] / he["rotations"],
                "peak_rss": std["peak_rss_mb"] / he["peak_rss_mb"],
                "accuracy_gap_points": 100 * (std["test_accuracy"] - he["test_accuracy"]),
            }
        )
    return out


def _machine() -> dict[str, Any]:
    import os

    import tenseal  # type: ignore[import-untyped]
    import torch

    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "tenseal": tenseal.__version__,
        "torch": torch.__version__,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    blocks = sorted({r["blocks"] for r in rows})
    panels = [
        ("latency_p50_s", "encrypted latency p50 (s)"),
        ("depth", "multiplicative depth"),
        ("peak_rss_mb", "peak memory (MB)"),
        ("eval_key_bytes", "evaluation keys (MiB)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 3.6))
    width = 0.38
    for ax, (key, title) in zip(axes, panels, strict=True):
        for offset, kind in ((-width / 2, "standard"), (width / 2, "he")):
            values = [
                next(r[key] for r in rows if r["blocks"] == b and r["kind"] == kind) for b in blocks
            ]
            if key == "eval_key_bytes":
                values = [v / 2**20 for v in values]
            label = "standard ResNet" if kind == "standard" else "Dirac + shared source"
            ax.bar([b + offset for b in blocks], values, width, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(blocks, [f"{b} block{'s' if b > 1 else ''}" for b in blocks])
    axes[0].legend(fontsize=8)
    fig.suptitle("CKKS inference on 8x8 digits, TenSEAL/SEAL, one thread, no bootstrapping")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 block, 4 images, fewer epochs")
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    if args.quick:
        args.blocks, args.images = [1], 4
    epochs = (10, 20) if args.quick else EPOCHS
    report = run(args.blocks, args.channels, args.images, epochs)
    report["command"] = "benchmarks/he.py" + (" --quick" if args.quick else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "he.json").write_text(json.dumps(report, indent=2))
    plot(report, RESULTS / "he.png")
    for ratio in report["ratios"]:
        print(
            f"blocks={ratio['blocks']}: standard/HE-friendly latency x{ratio['latency']:.2f}, "
            f"depth x{ratio['depth']:.2f}, accuracy gap {ratio['accuracy_gap_points']:+.1f} points"
        )


if __name__ == "__main__":
    main()
