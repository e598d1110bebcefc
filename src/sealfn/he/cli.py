"""The `sealfn he` commands: train, deploy, keygen, infer (encrypt → function → decrypt)."""

from __future__ import annotations

import argparse
import os
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.errors import ConfigError
from sealfn.he.backend import BACKENDS

DEFAULT_URL = (
    "http://127.0.0.1:8080"  # = sealfn.client.DEFAULT_URL (not imported: keeps this light)
)


def add_commands(commands: Any) -> None:
    """Register `sealfn he` on the `sealfn` parser."""
    he = commands.add_parser("he", help="encrypted-input inference under CKKS (no TEE)")
    sub = he.add_subparsers(required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train an HE-friendly (or standard) net on the digits")
    train.add_argument("--kind", choices=("he", "standard"), default="he")
    train.add_argument("--channels", type=int, default=4)
    train.add_argument("--blocks", type=int, default=1)
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--lr", type=float, default=0.01)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True, help="network file to deploy (.he)")
    train.add_argument("--onnx", type=Path, help="also export the folded network to ONNX")
    train.set_defaults(run=_train)

    deploy = sub.add_parser("deploy", help="serve a trained network as an HE function")
    deploy.add_argument("name")
    deploy.add_argument("model", type=Path)
    deploy.add_argument("--max-instances", type=int, default=1)
    deploy.add_argument("--keep-alive", type=float, default=300.0)
    _url(deploy)
    deploy.set_defaults(run=_deploy)

    keygen = sub.add_parser("keygen", help="make CKKS keys (the secret key stays in --out)")
    keygen.add_argument("--out", type=Path, required=True, help="secret key file (mode 0600)")
    keygen.add_argument("--function", help="size the keys for this served function")
    keygen.add_argument("--depth", type=int, help="…or for this depth (offline)")
    keygen.add_argument("--width", type=int, default=256)
    keygen.add_argument("--force", action="store_true", help="overwrite --out")
    keygen.add_argument(
        "--backend",
        choices=BACKENDS,
        default=BACKENDS[0],
        help="CKKS library (helayers: optional, IBM non-commercial licence, install it yourself)",
    )
    _url(keygen)
    keygen.set_defaults(run=_keygen)

    infer = sub.add_parser("infer", help="encrypt inputs, run the function, decrypt the logits")
    infer.add_argument("name")
    infer.add_argument("--keys", type=Path, required=True)
    source = infer.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help=".npy of shape (C, H, W) or (B, C, H, W)")
    source.add_argument("--digits", type=int, help="the first N test digits (reports accuracy)")
    infer.add_argument("--output", type=Path, help="save the logits (B, classes) as .npy")
    _url(infer)
    infer.set_defaults(run=_infer)


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"gateway URL (default {DEFAULT_URL})")


def _train(args: argparse.Namespace) -> int:
    _require_models()
    from sealfn.he.data import digits
    from sealfn.he.networks import NetConfig
    from sealfn.he.plan import compile_graph, cost
    from sealfn.he.train import TrainConfig, train

    config = NetConfig(kind=args.kind, channels=args.channels, blocks=args.blocks)
    result = train(config, digits(args.seed), TrainConfig(args.epochs, lr=args.lr, seed=args.seed))
    graph = result.net.graph()
    _write_atomic(args.out, graph.to_bytes())
    if args.onnx is not None:
        from sealfn.he.export import to_onnx

        _write_atomic(args.onnx, to_onnx(result.net))
    counted = cost(compile_graph(graph))
    print(
        f"{args.kind} net: test accuracy {result.test_accuracy:.2%} in {result.train_s:.0f} s; "
        f"depth {counted.depth}, {counted.rotations} rotations, 0 bootstraps → {args.out}"
    )
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from sealfn.client import Client

    with Client(args.url) as client:
        client.deploy(
            args.name,
            args.model,
            he=True,
            max_instances=args.max_instances,
            keep_alive_s=args.keep_alive,
        )
    print(f"deployed {args.name} (HE: send CKKS ciphertexts; sealfn he keygen / infer)")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from sealfn.he.backend import named
    from sealfn.he.params import choose

    if args.out.exists() and not args.force:
        raise ConfigError(f"{args.out} exists: pass --force to replace it")
    if args.function is not None:
        from sealfn.he.client import HeClient

        with HeClient(args.url) as client:
            needs = client.requirements(args.function)
        depth, width = needs.depth, needs.width
    elif args.depth is not None:
        depth, width = args.depth, args.width
    else:
        raise ConfigError("keygen needs --function NAME (with --url) or --depth D")
    params = choose(depth, width)
    backend = named(args.backend)
    print(
        f"generating CKKS keys ({backend.name}): N={params.poly_modulus}, "
        f"moduli {list(params.coeff_bits)} ..."
    )
    started = time.perf_counter()
    keys = backend.keygen(params)
    _write_private(args.out, keys.to_bytes())
    size = len(keys.evaluation_keys()) / 2**20
    print(
        f"keys {keys.key_id[:16]}… in {time.perf_counter() - started:.1f} s → {args.out} (secret); "
        f"evaluation keys {size:.1f} MiB (uploaded by sealfn he infer)"
    )
    return 0


def _infer(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sealfn.he.backend import load_secret
    from sealfn.he.client import HeClient

    keys = load_secret(_read_private(args.keys))  # TenSEAL or HElayers, by the file's magic
    images, labels = _inputs(args)
    logits = []
    with HeClient(args.url) as client:
        needs = client.requirements(args.name)
        print(f"uploading evaluation keys {keys.key_id[:16]}… (once per key set)")
        client.upload_keys(keys)
        for image in tqdm(images, desc="encrypted inference", unit="image"):
            logits.append(client.infer(args.name, keys, image, needs))
    result = np.stack(logits)
    predicted = result.argmax(axis=1)
    print("predicted:", " ".join(str(int(p)) for p in predicted))
    if labels is not None:
        print(f"accuracy on {len(labels)} test digits: {(predicted == labels).mean():.2%}")
    if args.output is not None:
        np.save(args.output, result)
    return 0


def _inputs(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    if args.digits is not None:
        from sealfn.he.data import digits

        split = digits()
        return split.x_test[: args.digits], split.y_test[: args.digits]
    array = np.load(args.input)
    return (array[None] if array.ndim == 3 else array), None


def _require_models() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise ConfigError("training needs PyTorch: pip install 'sealfn[models]'") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _write_private(path: Path, data: bytes) -> None:
    """Owner-only (0600) from the first byte, then renamed into place."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)


def _read_private(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is open to other users (mode {mode:o}); chmod 600 it")
    return path.read_bytes()
