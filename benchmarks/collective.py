"""Collectives on loopback: sealfn's communicator (direct TCP) vs Ray's gloo collectives.

Usage: ``.venv/bin/python benchmarks/collective.py [--quick]`` (needs the ray extra for the Ray
arm; without it only sealfn is measured and the JSON says so). Writes
``benchmarks/results/collective.json`` and ``collective.png``.

Both arms run every rank as its own process (sealfn: ``multiprocessing`` spawn; Ray: one actor
per rank with ``num_cpus=0.25``) and time the same loop at rank 0: a barrier, ``n`` back-to-back
operations, a barrier; the figure is the mean seconds per operation. Operations: allreduce (sum),
bcast from rank 0, gather to rank 0, of one float32 and of 10 MB of float32 (2,621,440 values),
at 2, 4 and 8 ranks. Ray's collective API has no gather: its arm gathers with point-to-point
``send``/``recv`` to rank 0 (what ray.util.collective's docs suggest), the same traffic as ours.
The Ray arm is ``ray.util.collective`` with backend "gloo", which Ray 2.60 implements with
torch.distributed's gloo (pygloo is not needed). The machine's cores are shared by all ranks:
at 4 and 8 ranks both arms are oversubscribed on a 2-core machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RANKS = (2, 4, 8)
SIZES = {"1 float": 1, "10 MB": (10 << 20) // 4}  # float32 values
OPS = ("allreduce", "bcast", "gather")


def iterations(values: int, ranks: int, quick: bool) -> int:
    if values == 1:
        return 50 if quick else 300
    return 2 if quick else (6 if ranks < 8 else 3)


# ---- sealfn arm ---------------------------------------------------------------------------


def _timed(run: Any, n: int, barrier: Any) -> float:
    """Mean seconds per call of ``run`` over ``n`` back-to-back calls, between barriers."""
    run()  # warm-up
    barrier()
    t0 = time.perf_counter()
    for _ in range(n):
        run()
    barrier()
    return (time.perf_counter() - t0) / n


def _sealfn_op(comm: Any, op: str, array: np.ndarray) -> None:
    from sealfn.collective import Op

    if op == "allreduce":
        comm.allreduce(array, Op.SUM)
    elif op == "bcast":
        comm.bcast(array if comm.rank == 0 else None, 0)
    else:
        comm.gather(array, 0)


def _sealfn_rank(
    where: tuple[tuple[str, int], str], rank: int, size: int, quick: bool, out: Any
) -> None:
    from sealfn.collective import Communicator, TcpChannel

    address, group = where
    started = time.perf_counter()
    comm = Communicator(TcpChannel.join(address, group, rank, size, timeout=600))
    setup_s = time.perf_counter() - started
    results = {}
    for label, values in SIZES.items():
        array = np.ones(values, dtype=np.float32)
        n = iterations(values, size, quick)
        for op in OPS:
            run = functools.partial(_sealfn_op, comm, op, array)
            results[f"{op}/{label}"] = _timed(run, n, comm.barrier)
    comm.close()
    if rank == 0:
        out.put({"setup_s": setup_s, "seconds": results})


def sealfn_arm(size: int, quick: bool) -> dict[str, Any]:
    from sealfn.collective import RendezvousServer

    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    with RendezvousServer() as server:
        group = uuid.uuid4().hex
        procs = [
            context.Process(
                target=_sealfn_rank, args=((server.address, group), r, size, quick, out)
            )
            for r in range(size)
        ]
        for p in procs:
            p.start()
        result: dict[str, Any] = out.get(timeout=900)
        for p in procs:
            p.join(60)
    return result


# ---- Ray arm ------------------------------------------------------------------------------


class _RayRank:
    def __init__(self, rank: int, size: int, group: str) -> None:
        import ray.util.collective as col

        self.col, self.rank, self.size, self.group = col, rank, size, group
        started = time.perf_counter()
        col.init_collective_group(size, rank, backend="gloo", group_name=group)
        self.setup_s = time.perf_counter() - started

    def run(self, quick: bool) -> dict[str, Any]:
        import torch

        col, group = self.col, self.group
        results = {}
        barrier = functools.partial(col.barrier, group_name=group)
        for label, values in SIZES.items():
            tensor = torch.ones(values, dtype=torch.float32)
            buffers = [torch.empty(values, dtype=torch.float32) for _ in range(self.size)]
            n = iterations(values, self.size, quick)
            for op in OPS:
                run = functools.partial(self._op, op, tensor, buffers)
                results[f"{op}/{label}"] = _timed(run, n, barrier)
        return {"setup_s": self.setup_s, "seconds": results}

    def _op(self, op: str, tensor: Any, buffers: list[Any]) -> None:
        if op == "allreduce":
            self.col.allreduce(tensor, group_name=self.group)
        elif op == "bcast":
            self.col.broadcast(tensor, 0, group_name=self.group)
        elif self.rank == 0:
            for src in range(1, self.size):
                self.col.recv(buffers[src], src, group_name=self.group)
        else:
            self.col.send(tensor, 0, group_name=self.group)


def ray_arm(size: int, quick: bool) -> dict[str, Any]:
    import ray

    actor = ray.remote(num_cpus=0.25)(_RayRank)
    group = uuid.uuid4().hex[:8]
    ranks = [actor.remote(r, size, group) for r in range(size)]
    results = ray.get([r.run.remote(quick) for r in ranks], timeout=900)
    for r in ranks:
        ray.kill(r)
    return dict(results[0])


# ---- report -------------------------------------------------------------------------------


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(13, 7))
    for row, label in enumerate(SIZES):
        for col, op in enumerate(OPS):
            ax = axes[row][col]
            for arm, style in (("sealfn", "o-"), ("ray_gloo", "s--")):
                points = [
                    (p, report["arms"][arm][str(p)]["seconds"][f"{op}/{label}"] * 1e3)
                    for p in RANKS
                    if arm in report["arms"] and str(p) in report["arms"][arm]
                ]
                if points:
                    ax.plot(*zip(*points, strict=True), style, label=arm)
            ax.set_title(f"{op}, {label}")
            ax.set_xlabel("ranks")
            ax.set_ylabel("ms per operation")
            ax.set_xticks(RANKS)
            ax.legend()
    figure.suptitle(f"collectives on loopback, {os.cpu_count()} cores (lower is better)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "method": __doc__,
        "arms": {"sealfn": {}},
    }
    for size in RANKS:
        report["arms"]["sealfn"][str(size)] = sealfn_arm(size, args.quick)
        print(f"sealfn {size} ranks: {report['arms']['sealfn'][str(size)]}", flush=True)
    try:
        import ray
    except ImportError:
        report["ray_gloo_missing"] = "ray is not installed (make test-ray installs the extra)"
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        report["ray_version"] = ray.__version__
        report["arms"]["ray_gloo"] = {}
        for size in RANKS:
            report["arms"]["ray_gloo"][str(size)] = ray_arm(size, args.quick)
            print(f"ray gloo {size} ranks: {report['arms']['ray_gloo'][str(size)]}", flush=True)
        ray.shutdown()
    report["allreduce_1_float_le_ray"] = {
        str(p): report["arms"]["sealfn"][str(p)]["seconds"]["allreduce/1 float"]
        <= report["arms"]["ray_gloo"][str(p)]["seconds"]["allreduce/1 float"]
        for p in RANKS
        if "ray_gloo" in report["arms"]
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "collective.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, RESULTS / "collective.png")
    print(json.dumps(report["allreduce_1_float_le_ray"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
