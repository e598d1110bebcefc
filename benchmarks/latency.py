"""One-client latency of sealfn against in-process onnxruntime: interleaved ratio and phases.

Usage: ``.venv/bin/python benchmarks/latency.py [--models resnet18,mlp] [--rounds 12]
[--block-s 1.5] [--trace 300]``. Writes ``benchmarks/results/latency.json``.

- The ratio is the serving benchmark's (`measure.interleave`: alternating blocks of in-process
  ORT and ``sealfn serve`` at 1 client, the default function settings with ``min_instances=1``),
  for one or two models only, so an A/B of a change takes minutes, not ``make bench``'s half hour.
- ``--trace N`` then restarts the server with ``SEALFN_TRACE_PHASES`` set and sends N requests per
  model one at a time, alternating with in-process runs: the median of each phase of one request,
  from CLOCK_MONOTONIC stamps taken by this client, the gateway and the instance.
- ``--cpu N`` restarts the server(s) untraced and runs N rounds of blocks (``--block-s``) of one
  client's requests, servers alternating: per server, p50 and the CPU seconds per request of
  the gateway process and of its instances, and, with ``--baseline-src``, the per-round ratios.
  CPU per request moves less with the neighbours' load than latency does.
- ``--cold N`` times one fixed piece of the gateway's Python (decoding a small OIP request, 5x)
  N times each: warm, right after an in-process ResNet-18 run, and after sleeping as long: how
  much slower the code around a large model's run gets once the run has filled the caches.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import figures
import ort_arm
import resources
import sealfn_arm
from loadgen import HttpCall
from measure import FULL, HOST, Context, interleave, log
from payloads import Workload
from sealfn import oip
from sealfn.workloads.models import build_examples
from servers import SealfnServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
SETTINGS = {"min_instances": 1}  # the serving benchmark's "-default" config
# (phase, from stamp, to stamp): consecutive, so the phases add up to the round trip
PHASES = (
    ("http in: send .. handler entered", "c_send", "g_enter"),
    ("read body", "g_enter", "g_body"),
    ("oip decode", "g_body", "g_decoded"),
    ("validate", "g_decoded", "g_validated"),
    ("pool: queue, pump, pick", "g_validated", "p_dispatch"),
    ("dispatch: slot (+ task start before)", "p_dispatch", "h_write"),
    ("tensors to arena, frame built", "h_write", "h_sent"),
    ("frame write + instance wake-up", "h_sent", "i_recv"),
    ("instance frame receive + decode", "i_recv", "i_frame"),
    ("instance read inputs", "i_frame", "i_run"),
    ("instance ORT run + outputs", "i_run", "i_done"),
    ("reply frame to gateway", "i_done", "h_arrived"),
    ("reply frame parsed (settle starts)", "h_arrived", "h_resumed"),
    ("read outputs", "h_resumed", "h_read"),
    ("pool: observe, resolve future", "h_read", "p_resolve"),
    ("back in handler", "p_resolve", "g_replied"),
    ("oip encode", "g_replied", "g_encoded"),
    ("handler return (metrics)", "g_encoded", "g_end"),
    ("http out: response .. client has it", "g_end", "c_done"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18", help="comma-separated example models")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds (0: none)")
    parser.add_argument("--block-s", type=float, default=1.5, help="seconds per block")
    parser.add_argument("--trace", type=int, default=0, help="traced requests per model")
    parser.add_argument("--cpu", type=int, default=0, help="rounds of CPU per request (see above)")
    parser.add_argument("--cold", type=int, default=0, help="timings of cold Python (see above)")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also serve from this src/ (`git archive HEAD src | tar -x -C /tmp/base`, then "
        "/tmp/base/src): a third, interleaved arm",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latency.json")
    args = parser.parse_args(argv)
    if args.baseline_src is not None and not (args.baseline_src / "sealfn").is_dir():
        # PYTHONPATH would not shadow the installed sealfn: both arms would serve this tree
        parser.error(f"--baseline-src {args.baseline_src}: no sealfn/ package in it (pass .../src)")
    models = build_examples(ROOT / "benchmarks" / ".models")
    workloads = {n: Workload(models[n], 1) for n in args.models.split(",")}
    settings = dataclasses.replace(
        FULL, clients=(1,), interleave_rounds=args.rounds, interleave_block_s=args.block_s
    )
    tmp = Path(tempfile.mkdtemp(prefix="sealfn-latency-"))
    ctx = Context(settings, workloads, ROOT, tmp)
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": _git_head(),
        "loadavg_start": os.getloadavg(),
        "settings": settings.to_dict(),
    }
    if args.rounds:
        result["interleaved"] = _ab(ctx, args.baseline_src)
    if args.trace:
        result["phases"] = _phases(ctx, args.trace, args.baseline_src)
    if args.cpu:
        result["cpu_per_request"] = _cpu(ctx, args.cpu, args.baseline_src)
    if args.cold:
        result["cold_python"] = _cold_python(models, args.cold)
    result["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"load average {result['loadavg_start']} -> {result['loadavg_end']}; wrote {args.out}")
    return 0


def _servers(ctx: Context, tag: str, baseline_src: Path | None) -> dict[str, SealfnServer]:
    """A server of this src, and one of the baseline's src if given, in ``tag``'s folders."""
    servers = {"sealfn": _server(ctx.tmp / tag, {})}
    if baseline_src is not None:
        servers["sealfn-base"] = _server(ctx.tmp / f"{tag}-base", {"PYTHONPATH": str(baseline_src)})
    return servers


def _ab(ctx: Context, baseline_src: Path | None) -> dict[str, Any]:
    servers = _servers(ctx, "ab", baseline_src)
    found: dict[str, Any] = {}
    with _serving(servers):
        for name, workload in ctx.workloads.items():
            _deploy_warm(servers, name, workload)
            arms: dict[str, Any] = {"ort": (ort_arm.local_calls(workload), None)}
            for label, server in servers.items():
                path = f"/v2/models/{name}/infer"
                arms[label] = (sealfn_arm.http_calls(workload, server.port, path), server.pid)
            run = interleave(ctx, arms, 1, name)
            run["ratios_p50"] = {}
            for label in servers:
                ratio = figures.interleaved_ratio(run, label, "ort", "p50_ms")
                run["ratios_p50"][label] = ratio
                log(
                    f"  {name}: {label}/ORT p50 {ratio['ratio']:.3f} "
                    f"(rounds {ratio['round_min']:.3f}..{ratio['round_max']:.3f}), "
                    f"ORT {run['arms']['ort']['p50_ms']:.3f} ms, "
                    f"{label} {run['arms'][label]['p50_ms']:.3f} ms"
                )
            found[name] = run
            for server in servers.values():
                server.undeploy(name)
    return found


def _server(folder: Path, env: dict[str, str]) -> SealfnServer:
    """`sealfn serve` with ``env`` added to our environment (its instances inherit it)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return SealfnServer(sys.executable, folder / "state", folder.with_suffix(".log"))
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


def _phases(ctx: Context, count: int, baseline_src: Path | None) -> dict[str, Any]:
    """Traced servers (this src, and the baseline's if given), requests alternating among them."""
    traced = {"sealfn": ({}, ctx.tmp / "phases.jsonl")}
    if baseline_src is not None:
        env = {"PYTHONPATH": str(baseline_src)}
        traced["sealfn-base"] = (env, ctx.tmp / "phases-base.jsonl")
    servers = {
        label: _server(ctx.tmp / f"trace-{label}", {**env, "SEALFN_TRACE_PHASES": str(file)})
        for label, (env, file) in traced.items()
    }
    found: dict[str, Any] = {}
    with _serving(servers):
        for name, workload in ctx.workloads.items():
            _deploy_warm(servers, name, workload)
            files = {label: file for label, (_, file) in traced.items()}
            found[name] = _trace_model(servers, files, workload, name, count)
            for server in servers.values():
                server.undeploy(name)
    return found


@contextlib.contextmanager
def _serving(servers: dict[str, SealfnServer]) -> Iterator[None]:
    """Wait until every server is ready; stop them all at the end, whatever happens."""
    try:
        for server in servers.values():
            server.wait_ready()
        yield
    finally:
        for server in servers.values():
            server.stop()


def _deploy_warm(servers: dict[str, SealfnServer], name: str, workload: Workload) -> None:
    """Deploy ``workload`` as ``name`` on every server and wait for a warm instance on each."""
    for server in servers.values():
        server.deploy(name, workload.model.path, **SETTINGS)
        if not server.wait_instances(name, 1):
            raise RuntimeError(f"{name}: no warm instance after deploy")


def _trace_model(
    servers: dict[str, SealfnServer],
    files: dict[str, Path],
    workload: Workload,
    name: str,
    count: int,
) -> dict[str, Any]:
    path = f"/v2/models/{name}/infer"
    calls = {
        label: HttpCall(HOST, server.port, workload.request(0, HOST, server.port, path))
        for label, server in servers.items()
    }
    for _ in range(max(20, count // 5)):  # warm: connection, caches, the batcher's estimate
        for call in calls.values():
            call()
        workload.run_local(0)
    for file in files.values():
        file.unlink(missing_ok=True)
    client: dict[str, list[dict[str, int]]] = {label: [] for label in calls}
    local = []
    # Servers alternate request by request, the order reversed every round so each follows
    # the other as often. In-process runs come after, in one block: onnxruntime's threads in
    # this process spin for milliseconds after a run and would slow whichever request came next.
    order = list(calls)
    for i in range(count):
        for label in order if i % 2 else order[::-1]:
            began = time.monotonic_ns()
            calls[label]()
            client[label].append({"c_send": began, "c_done": time.monotonic_ns()})
    for _ in range(count):
        began = time.monotonic_ns()
        workload.run_local(0)
        local.append(time.monotonic_ns() - began)
    for call in calls.values():
        call.close()
    ort_us = statistics.median(local) / 1000
    found: dict[str, Any] = {"count": count, "ort_in_process_us": ort_us}
    for label, stamps in client.items():
        found[label] = _breakdown(stamps, files[label], name)
    log(f"  {name}: phases of one request (median of {count}, us; servers alternate)")
    labels = list(calls)
    log(f"    {'phase':40} " + " ".join(f"{label:>12}" for label in labels))
    for phase in [label for label, _, _ in PHASES] + ["sum of phase medians", "round trip"]:
        log(f"    {phase:40} " + " ".join(f"{found[lb][phase]:12.1f}" for lb in labels))
    log(f"    {'in-process ORT run (block after)':40} {ort_us:12.1f}")
    return found


def _breakdown(client: list[dict[str, int]], trace_file: Path, name: str) -> dict[str, float]:
    """Median of each phase (us), their sum, and the median round trip."""
    server_side = [json.loads(line) for line in trace_file.read_text().splitlines()]
    if len(server_side) != len(client):
        raise RuntimeError(f"{name}: {len(server_side)} traced requests, expected {len(client)}")
    stamps = [c | s for c, s in zip(client, server_side, strict=True)]
    phases = {
        label: statistics.median((s[b] - s[a]) / 1000 for s in stamps) for label, a, b in PHASES
    }
    phases["sum of phase medians"] = sum(phases.values())
    phases["round trip"] = statistics.median((s["c_done"] - s["c_send"]) / 1000 for s in stamps)
    return phases


def _cpu(ctx: Context, rounds: int, baseline_src: Path | None) -> dict[str, Any]:
    """Untraced servers (this src, and the baseline's if given), blocks alternating among them."""
    servers = _servers(ctx, "cpu", baseline_src)
    found: dict[str, Any] = {}
    with _serving(servers):
        for name, workload in ctx.workloads.items():
            _deploy_warm(servers, name, workload)
            found[name] = _cpu_model(servers, workload, name, rounds, ctx.settings)
            for server in servers.values():
                server.undeploy(name)
    return found


def _cpu_model(
    servers: dict[str, SealfnServer], workload: Workload, name: str, rounds: int, settings: Any
) -> dict[str, Any]:
    path = f"/v2/models/{name}/infer"
    calls = {
        label: HttpCall(HOST, server.port, workload.request(0, HOST, server.port, path))
        for label, server in servers.items()
    }
    blocks: dict[str, list[tuple[float, float, float]]] = {label: [] for label in servers}
    labels = list(servers)
    for round_ in range(-1, rounds):  # round -1 warms up and is not kept
        for label in labels if round_ % 2 else labels[::-1]:
            block = _cpu_block(calls[label], servers[label].pid, settings.interleave_block_s)
            if round_ >= 0:
                blocks[label].append(block)
    for call in calls.values():
        call.close()
    found: dict[str, Any] = {}
    for label, rows in blocks.items():
        p50s, gateway, instances = zip(*rows, strict=True)
        found[label] = {
            "p50_ms": statistics.median(p50s),
            "gateway_cpu_ms_per_request": statistics.mean(gateway),
            "instances_cpu_ms_per_request": statistics.mean(instances),
        }
        log(
            f"  {name}: {label} p50 {found[label]['p50_ms']:.3f} ms, CPU per request: gateway "
            f"{statistics.mean(gateway):.3f} ms, instances {statistics.mean(instances):.3f} ms"
        )
    if "sealfn-base" in blocks:
        ratios = [a[0] / b[0] for a, b in zip(blocks["sealfn"], blocks["sealfn-base"], strict=True)]
        found["p50_ratio_to_base"] = statistics.median(ratios)
        log(
            f"  {name}: sealfn/sealfn-base p50 {statistics.median(ratios):.3f} per-round median "
            f"({min(ratios):.3f}..{max(ratios):.3f})"
        )
    return found


def _cpu_block(call: HttpCall, pid: int, seconds: float) -> tuple[float, float, float]:
    """Requests one at a time for ``seconds``: p50 ms, gateway and instances CPU ms a request."""
    with contextlib.suppress(ConnectionError):  # idle past keep-alive: reconnected, sent again
        call()
    gateway, instances = _cpu_split(pid)
    times = []
    ends = time.perf_counter() + seconds
    while (began := time.perf_counter()) < ends:
        call()
        times.append(time.perf_counter() - began)
    gateway_after, instances_after = _cpu_split(pid)
    count = len(times)
    return (
        statistics.median(times) * 1e3,
        (gateway_after - gateway) / count * 1e3,
        (instances_after - instances) / count * 1e3,
    )


def _cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the gateway process, and of its live children."""
    gateway, *children = resources.tree(pid)
    own = gateway.cpu_times()
    return own.user + own.system, sum(sum(c.cpu_times()[:2]) for c in children)


def _cold_python(models: dict[str, Any], count: int) -> dict[str, float]:
    """Median microseconds of 5 decodes of the MLP's request: warm, after a ResNet-18 run in this
    process, and after a sleep of about as long (caches left alone, the core idle)."""
    large, small = Workload(models["resnet18"], 1), Workload(models["mlp"], 1)
    payload = small.payload(0)
    header = int(payload.headers[oip.HEADER_LENGTH])

    def decode() -> float:
        began = time.perf_counter()
        for _ in range(5):
            oip.decode_request(payload.body, header, aligned=False)
        return (time.perf_counter() - began) * 1e6

    found: dict[str, list[float]] = {"warm": [], "after a ResNet-18 run": [], "after sleeping": []}
    for _ in range(count):
        large.run_local(0)
        found["after a ResNet-18 run"].append(decode())
        time.sleep(0.009)
        found["after sleeping"].append(decode())
        found["warm"].append(decode())
    medians = {label: statistics.median(times) for label, times in found.items()}
    log(
        "  5 decodes of the MLP's request, median us: "
        + ", ".join(f"{label} {us:.1f}" for label, us in medians.items())
    )
    return medians


def _git_head() -> str:
    head = (ROOT / ".git" / "HEAD").read_text().strip()
    if head.startswith("ref: "):
        ref = ROOT / ".git" / head[5:]
        return ref.read_text().strip() if ref.exists() else head
    return head


if __name__ == "__main__":
    sys.exit(main())
