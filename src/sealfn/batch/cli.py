"""The `sealfn batch` subcommands."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.errors import ConfigError

ENGINES = ("local", "ray")


def add_commands(commands: Any) -> None:
    """Register `sealfn batch run` on the `sealfn` parser."""
    batch = commands.add_parser("batch", help="distributed batch inference over a dataset")
    sub = batch.add_subparsers(required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run MODEL over every record of DATA on N instances")
    run.add_argument("model", type=Path, help="an ONNX model")
    run.add_argument("data", type=Path, help="a .npy/.npz file, or a folder of them (shards)")
    run.add_argument("--instances", type=int, default=2, help="default 2")
    run.add_argument("--engine", choices=ENGINES, default="local", help="default local")
    run.add_argument("--partition-records", type=int, default=512, help="default 512")
    run.add_argument("--batch-size", type=int, default=256, help="records per model run")
    run.add_argument("--threads", type=int, default=1, help="onnxruntime threads per instance")
    run.add_argument("--output", type=Path, default=Path("batch-output.npz"))
    run.add_argument("--report-dir", type=Path, default=None, help="summary JSON + timeline PNG")
    run.add_argument("--checkpoints", type=Path, default=None, help="keep (and resume from) here")
    run.add_argument("--memory-mb", type=int, default=1024, help="billed size of an instance")
    run.add_argument("--no-progress", action="store_true")
    sealed = run.add_argument_group(
        "sealed jobs (MODEL sealed, DATA from batch.sealed.seal_dataset)"
    )
    sealed.add_argument("--sealed", action="store_true", help="instances are enclaves")
    sealed.add_argument("--keyservice", default=None, help="URL of the KeyService")
    sealed.add_argument("--tee", default="auto", help="TEE backend of the instances (auto)")
    sealed.add_argument("--tee-platform-dir", default=None, help="the simulated TEE's platform")
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from sealfn.batch.dataset import Dataset
    from sealfn.batch.job import JobConfig, run_job
    from sealfn.batch.messages import WorkerSpec
    from sealfn.batch.report import summary, timeline_png

    if not args.model.is_file():
        raise ConfigError(f"model {str(args.model)!r} is not a file")
    checkpoints = args.checkpoints or Path(tempfile.mkdtemp(prefix="sealfn-batch-"))
    spec = WorkerSpec(args.model, args.data, checkpoints, args.threads, args.batch_size)
    config = JobConfig(
        args.instances, args.partition_records, progress=not args.no_progress, sealed=args.sealed
    )
    partitions = None
    if args.sealed:
        if not args.keyservice:
            raise ConfigError("a sealed job needs --keyservice URL")
        from sealfn.batch.sealed import MANIFEST, SealedManifest

        manifest = SealedManifest.from_bytes((args.data / MANIFEST).read_bytes())
        partitions = manifest.partitions()
        records = sum(manifest.records)
        spec = replace(
            spec, keyservice=args.keyservice, model_id=manifest.model_id, tee=args.tee,
            tee_platform_dir=args.tee_platform_dir,
        )  # fmt: skip
    else:
        records = Dataset.open(args.data).records
    result = run_job(_fleet(args.engine, spec), records, config, partitions=partitions)
    # Sealed: the results stay sealed to the user (batch.sealed.open_results opens them).
    outputs: dict[str, Any] = dict(result.outputs) or {
        f"part-{index:08d}": np.frombuffer(blob, dtype=np.uint8)
        for index, blob in result.blobs.items()
    }
    np.savez(args.output, **outputs)
    report = summary(result, args.memory_mb) | {"engine": args.engine, "output": str(args.output)}
    if args.report_dir is not None:
        args.report_dir.mkdir(parents=True, exist_ok=True)
        (args.report_dir / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
        timeline_png(result, args.report_dir / "timeline.png")
    if args.checkpoints is None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


def _fleet(engine: str, spec: Any) -> Any:
    if engine == "ray":
        from sealfn.runtime.executors.ray import RayFleet

        return RayFleet(spec)
    from sealfn.batch.fleet import LocalFleet

    return LocalFleet(spec)
