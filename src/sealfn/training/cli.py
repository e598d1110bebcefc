"""The `sealfn train` command: confidential training on untrusted workers, sealed output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_commands(commands: Any) -> None:
    """Register `sealfn train` on the `sealfn` parser."""
    parser = commands.add_parser(
        "train", help="train on untrusted workers (obfuscated, verified), seal the result"
    )
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--mode",
        choices=("local", "plain", "obfuscated", "exact"),
        default="obfuscated",
        help="local: all in the coordinator; plain: workers see plaintext (insecure baseline)",
    )
    parser.add_argument("--workers", type=int, default=1, help="exact mode hides values at >= 4")
    parser.add_argument("--out", type=Path, required=True, help="report, plot, sealed model")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument("--no-key-shift", action="store_true", help="fresh keys for backward too")
    parser.add_argument("--repetitions", type=int, default=2, help="Freivalds repetitions")
    parser.add_argument(
        "--conv",
        choices=("im2col", "channel"),
        default="im2col",
        help="channel: whole convolutions with channel-level keys (cheaper; leaks spatial layout)",
    )
    parser.add_argument("--model-id", default="trained")
    parser.add_argument("--tee", choices=("auto", "simulated"), default="auto")
    parser.add_argument("--platform-dir", type=Path, default=None, help="simulated platform")
    parser.add_argument(
        "--worker-threads", type=int, default=0, help="0: a fair share of the cores"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> int:
    from sealfn.training.coordinator import EpochStats, TrainConfig
    from sealfn.training.run import RunOptions, run

    config = TrainConfig(
        model=args.model,
        mode=args.mode,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=args.workers,
        dtype=args.dtype,
        seed=args.seed,
        key_shift=not args.no_key_shift,
        repetitions=args.repetitions,
        conv=args.conv,
    )
    options = RunOptions(
        out_dir=args.out,
        model_id=args.model_id,
        tee=args.tee,
        platform_dir=args.platform_dir,
        progress=not args.no_progress,
        worker_threads=args.worker_threads,
    )

    def report_epoch(stats: EpochStats) -> None:
        print(
            f"epoch {stats.epoch}: loss {stats.loss:.4f}, train {stats.train_accuracy:.1f}%, "
            f"test {stats.test_accuracy:.1f}% ({stats.seconds:.1f} s)",
            flush=True,
        )

    if config.mode == "exact" and config.workers < 4:
        print(
            "warning: exact mode with fewer than 4 workers puts several masked roles on one "
            "worker, which can then unmask them: values are NOT hidden (use --workers 4)",
            file=sys.stderr,
        )
    report = run(config, options, on_epoch=report_epoch)
    tee = report["attestation"]
    print(json.dumps({"ops_per_step": report["ops_per_step"], "incidents": report["incidents"]}))
    print(
        f"sealed model: {report['sealed_model']['path']} (key {report['sealed_model']['key_file']})"
    )
    label = "SIMULATED TEE: no isolation" if tee["simulated"] else f"{tee['tee']} TEE"
    print(f"coordinator measurement {tee['measurement'][:16]}... ({label})")
    return 0
