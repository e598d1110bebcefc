"""The `sealfn` command line: serve, deploy, invoke, status, undeploy; keyservice, principal,
model, enclave (sealed inference); he (encrypted inference); train; batch; demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.batch.cli import add_commands as add_batch_commands
from sealfn.client import DEFAULT_URL, Client
from sealfn.config import FunctionSpec, ServerConfig
from sealfn.errors import SealfnError
from sealfn.he.cli import add_commands as add_he_commands
from sealfn.sealed_cli import add_commands, add_sealed_flags, deployment_key, signer
from sealfn.training.cli import add_commands as add_train_commands


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except SealfnError as exc:
        print(f"sealfn: {exc.message}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"sealfn: no such file: {exc.filename}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sealfn", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway and instance pool (foreground)")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 8080")
    serve.add_argument("--state-dir", default=None, help="where deployments live (.sealfn)")
    serve.add_argument("--log-level", default="warning")
    serve.add_argument("--engine", choices=("local", "ray"), default=None, help="default local")
    serve.set_defaults(run=_serve)

    deploy = commands.add_parser("deploy", help="register an ONNX model as a function")
    deploy.add_argument("name")
    deploy.add_argument("model", type=Path, nargs="?", help="omit with --model-store")
    _url(deploy)
    defaults = FunctionSpec("x")
    for flag, kind in (
        ("min-instances", int),
        ("max-instances", int),
        ("keep-alive", float),
        ("max-batch", int),
        ("slo-ms", float),
        ("memory-mb", int),
        ("concurrency", int),
    ):
        key = _spec_key(flag)
        deploy.add_argument(f"--{flag}", type=kind, help=f"default {getattr(defaults, key)}")
    deploy.add_argument("--group", default=None, help="share instances with this group")
    add_sealed_flags(deploy, invoke=False)
    deploy.set_defaults(run=_deploy)

    invoke = commands.add_parser("invoke", help="run a function on a .npy input")
    invoke.add_argument("name")
    invoke.add_argument("--input", type=Path, required=True, help="X.npy (name it NAME=X.npy)")
    invoke.add_argument("--output", type=Path, default=None, help="write the first output here")
    _url(invoke)
    add_sealed_flags(invoke, invoke=True)
    invoke.set_defaults(run=_invoke)

    status = commands.add_parser("status", help="functions, instances, latency and cost")
    _url(status)
    status.set_defaults(run=_status)

    undeploy = commands.add_parser("undeploy", help="remove a function and stop its instances")
    undeploy.add_argument("name")
    _url(undeploy)
    undeploy.set_defaults(run=_undeploy)

    add_commands(commands)
    add_he_commands(commands)
    add_train_commands(commands)
    add_batch_commands(commands)

    demo = commands.add_parser("demo", help="the end-to-end demo `make demo` runs")
    demo.add_argument("--workdir", type=Path, default=Path(".sealfn-demo"))
    demo.add_argument("--requests", type=int, default=200)
    demo.set_defaults(run=_demo)
    return parser


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"gateway URL (default {DEFAULT_URL})")


def _spec_key(flag: str) -> str:
    return {"keep-alive": "keep_alive_s"}.get(flag, flag.replace("-", "_"))


def _serve(args: argparse.Namespace) -> int:
    from sealfn.runtime.server import serve

    config = ServerConfig.from_env(
        host=args.host, port=args.port, state_dir=args.state_dir, engine=args.engine
    )
    serve(config, log_level=args.log_level)
    return 0


def _deploy(args: argparse.Namespace) -> int:
    settings: dict[str, Any] = {}
    for flag in (
        "min-instances",
        "max-instances",
        "keep-alive",
        "max-batch",
        "slo-ms",
        "memory-mb",
        "concurrency",
        "group",
    ):
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            settings[_spec_key(flag)] = value
    if args.sealed:
        settings.update(sealed=True, keyservice=args.keyservice)
        if args.model_store:
            settings["model_store"] = args.model_store
    elif args.model is None:
        raise SealfnError("deploy needs MODEL.onnx (or --sealed --model-store URL)")
    with Client(args.url) as client:
        result = client.deploy(args.name, args.model, **settings)
    inputs = ", ".join(f"{t['name']}{t['shape']}" for t in result["signature"]["inputs"])
    print(f"deployed {args.name} ({inputs or 'sealed: signature known only to enclaves'})")
    return 0


def _invoke(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        raw = str(args.input)
        name, _, file = raw.rpartition("=")
        array = np.load(file)
        if args.sealed:
            key, user = deployment_key(args, args.name), signer(args)
            outputs = client.infer_sealed(args.name, {name or "input": array}, key=key, signer=user)
        else:
            if not name:
                name = client.metadata(args.name)["inputs"][0]["name"]
            outputs = client.infer(args.name, {name: array})
    for key, value in outputs.items():
        print(f"{key}: {value.dtype} {list(value.shape)}")
        print(np.array2string(value, threshold=20, precision=4))
    if args.output is not None:
        np.save(args.output, next(iter(outputs.values())))
    return 0


def _status(args: argparse.Namespace) -> int:
    from sealfn.report import status_table

    with Client(args.url) as client:
        print(status_table(client.status()["functions"]))
    return 0


def _undeploy(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        client.undeploy(args.name)
    print(f"undeployed {args.name}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sealfn.demo import run_demo

    return int(run_demo(args.workdir, requests=args.requests))


if __name__ == "__main__":
    sys.exit(main())
