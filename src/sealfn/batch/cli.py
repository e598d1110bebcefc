"""The `sealfn batch` subcommands."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.errors import ConfigError
from sealfn.sealed_cli import DEFAULT_KEYSERVICE

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

    seal = sub.add_parser("seal", help="seal DATA for a sealed job (the user's side)")
    seal.add_argument("data", type=Path, help="a .npy/.npz file, or a folder of them")
    seal.add_argument("--model-id", required=True, help="the sealed model the job will run")
    seal.add_argument("--out", type=Path, required=True, help="folder for the sealed partitions")
    seal.add_argument("--as", dest="principal", required=True, help="the user (a principal)")
    seal.add_argument("--key-file", type=Path, default=None, help="default OUT.key (mode 0600)")
    seal.add_argument("--partition-records", type=int, default=512, help="default 512")
    seal.add_argument("--keyservice", default=DEFAULT_KEYSERVICE, help="KeyService URL")
    seal.add_argument(
        "--accept-simulated",
        action="store_true",
        help="trust a SIMULATED TEE (no isolation; development only)",
    )
    seal.add_argument("--platform-dir", type=Path, default=None)
    seal.set_defaults(run=_seal)

    opener = sub.add_parser("open", help="open a sealed job's results (the user's side)")
    opener.add_argument("results", type=Path, help="the sealed job's --output .npz")
    opener.add_argument("--data", type=Path, required=True, help="the sealed dataset folder")
    opener.add_argument("--key-file", type=Path, required=True, help="the data key (batch seal)")
    opener.add_argument("--output", type=Path, required=True, help="the plain outputs (.npz)")
    opener.set_defaults(run=_open)

    measurement = sub.add_parser("measurement", help="the enclave measurement owners grant")
    measurement.set_defaults(run=_measurement)


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


def _seal(args: argparse.Namespace) -> int:
    import uuid

    from sealfn.batch.dataset import Dataset
    from sealfn.batch.sealed import job_ticket, seal_dataset
    from sealfn.sealed_cli import deployment_key, signer
    from sealfn.sealed_model import generate_model_key

    key = deployment_key(args, args.model_id)  # verifies the KeyService's attestation first
    data_key = generate_model_key()
    key_file = args.key_file or args.out.with_suffix(".key")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data_key.hex() + "\n")
    ticket = job_ticket(
        data_key, public_key=key.public_key, model_id=args.model_id, signer=signer(args)
    )
    job = uuid.uuid4().hex[:12]
    manifest = seal_dataset(
        Dataset.open(args.data), args.out, data_key=data_key, job=job, model_id=args.model_id,
        ticket=ticket, partition_records=args.partition_records,
    )  # fmt: skip
    print(
        f"sealed {sum(manifest.records)} records in {len(manifest.records)} partitions → "
        f"{args.out} (job {job}; data key: {key_file}, keep it safe; run the job within 30 s)"
    )
    return 0


def _open(args: argparse.Namespace) -> int:
    from sealfn.batch.sealed import MANIFEST, SealedManifest, open_results

    manifest = SealedManifest.from_bytes((args.data / MANIFEST).read_bytes())
    data_key = bytes.fromhex(args.key_file.read_text().strip())
    with np.load(args.results) as npz:
        blobs = {int(name.split("-")[1]): npz[name].tobytes() for name in npz.files}
    outputs: dict[str, Any] = open_results(blobs, data_key, manifest.job)
    np.savez(args.output, **outputs)
    print(f"opened {len(blobs)} partitions → {args.output}")
    return 0


def _measurement(_: argparse.Namespace) -> int:
    from sealfn.batch.sealed import batch_enclave_measurement

    print(batch_enclave_measurement().hex())
    return 0
