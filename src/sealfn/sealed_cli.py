"""The sealed-inference commands: keyservice, principal, model seal|upload|grant|revoke, enclave."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from sealfn.errors import ConfigError

DEFAULT_KEYSERVICE = "http://127.0.0.1:8090"
SUITES = {"x25519": 1, "mlkem768-x25519": 2}


def add_commands(commands: Any) -> None:
    """Register the sealed-inference subcommands on the `sealfn` parser."""
    from sealfn.keyservice.__main__ import add_arguments

    keyservice = commands.add_parser("keyservice", help="run the KeyService (releases model keys)")
    add_arguments(keyservice)
    keyservice.set_defaults(run=_keyservice)

    principal = commands.add_parser("principal", help="owner/user identities")
    verbs = principal.add_subparsers(required=True, metavar="VERB")
    register = verbs.add_parser("register", help="make (or load) an identity and register it")
    register.add_argument("name")
    register.add_argument("--kind", choices=("owner", "user"), default="user")
    register.add_argument("--file", type=Path, default=None, help="default ~/.sealfn/principals")
    _keyservice_flags(register, attest=False)
    register.set_defaults(run=_register)

    model = commands.add_parser("model", help="seal a model, upload its key, grant access")
    verbs = model.add_subparsers(required=True, metavar="VERB")
    seal = verbs.add_parser("seal", help="encrypt an ONNX model for the untrusted store")
    seal.add_argument("model", type=Path)
    seal.add_argument("--model-id", required=True, help="also the function name to deploy")
    seal.add_argument("--out", type=Path, required=True)
    seal.add_argument("--key-file", type=Path, default=None, help="default OUT.key (mode 0600)")
    seal.set_defaults(run=_seal)
    upload = verbs.add_parser("upload", help="hand the model key to the attested KeyService")
    upload.add_argument("model_id")
    upload.add_argument("--key-file", type=Path, required=True)
    upload.add_argument("--as", dest="principal", required=True, help="the owner")
    upload.add_argument("--suite", choices=sorted(SUITES), default="x25519")
    upload.add_argument("--sealed-file", type=Path, default=None, help="also put it in --store")
    upload.add_argument("--store", default=None, help="model store: a folder or an fsspec URL")
    _keyservice_flags(upload)
    upload.set_defaults(run=_upload)
    for verb, run in (("grant", _grant), ("revoke", _revoke)):
        change = verbs.add_parser(verb, help=f"{verb} a user's access to a model")
        change.add_argument("model_id")
        change.add_argument("user")
        change.add_argument("--as", dest="principal", required=True, help="the owner")
        if verb == "grant":
            change.add_argument(
                "--measurement",
                action="append",
                default=None,
                help="allowed enclave measurement (hex); default: this build's enclave",
            )
        _keyservice_flags(change, attest=False)
        change.set_defaults(run=run)

    enclave = commands.add_parser("enclave", help="facts about this build's enclave code")
    verbs = enclave.add_subparsers(required=True, metavar="VERB")
    measurement = verbs.add_parser("measurement", help="print the measurement owners grant")
    measurement.set_defaults(run=_measurement)


def add_sealed_flags(parser: argparse.ArgumentParser, *, invoke: bool) -> None:
    """`deploy --sealed` / `invoke --sealed` flags."""
    parser.add_argument("--sealed", action="store_true", help="a sealed model / sealed request")
    if not invoke:
        parser.add_argument(
            "--model-store", default=None, help="the enclave fetches the sealed model from here"
        )
    if invoke:
        parser.add_argument("--as", dest="principal", default=None, help="the user (sealed)")
    _keyservice_flags(parser, attest=invoke)


def _keyservice_flags(parser: argparse.ArgumentParser, *, attest: bool = True) -> None:
    parser.add_argument("--keyservice", default=DEFAULT_KEYSERVICE, help="KeyService URL")
    if attest:
        parser.add_argument(
            "--accept-simulated",
            action="store_true",
            help="trust a SIMULATED TEE (no isolation; development only)",
        )
        parser.add_argument("--platform-dir", type=Path, default=None)


def policy(args: argparse.Namespace) -> Any:
    """The attestation policy the user/owner verifies the KeyService (and its keys) with."""
    from sealfn.attestation import Policy

    if not args.accept_simulated:
        return Policy(None)  # hardware evidence only (fails closed where none can be verified)
    from sealfn.tee.simulated import SimulatedPlatform

    folder = args.platform_dir or Path("~/.sealfn/simulated-platform").expanduser()
    if not (folder / "platform.json").exists():
        raise ConfigError(f"no simulated platform at {folder} (--platform-dir)")
    root = SimulatedPlatform.load_or_create(folder).root_public_key()
    return Policy(None, accept_simulated=True, trusted_simulated_roots=frozenset({root}))


def deployment_key(args: argparse.Namespace, model_id: str) -> Any:
    from sealfn.keyservice.client import KeyServiceClient

    with KeyServiceClient(args.keyservice) as client:
        return client.deployment_key(model_id, policy=policy(args))


def signer(args: argparse.Namespace) -> Any:
    from sealfn.keyservice.principal import Principal

    if not args.principal:
        raise ConfigError("a sealed request needs --as USER (a registered principal)")
    return Principal.load(args.principal)


def _keyservice(args: argparse.Namespace) -> int:
    from sealfn.keyservice.__main__ import run

    return run(args)


def _register(args: argparse.Namespace) -> int:
    from sealfn.keyservice.client import KeyServiceClient
    from sealfn.keyservice.principal import Principal, PrincipalKind

    path = args.file or Principal.default_path(args.name)
    if path.exists():
        principal = Principal.load(path)
    else:
        principal = Principal.generate(args.name, PrincipalKind(args.kind))
        principal.save(path)
    with KeyServiceClient(args.keyservice) as client:
        client.register(principal)
    print(f"registered {principal.kind.value} {principal.name} (key in {path})")
    return 0


def _seal(args: argparse.Namespace) -> int:
    from sealfn.sealed_model import generate_model_key, seal_model_file

    key_file = args.key_file or args.out.with_suffix(".key")
    key = generate_model_key()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    seal_model_file(args.model, args.out, key, args.model_id)
    print(f"sealed {args.model} as {args.model_id} → {args.out} (key: {key_file}, keep it safe)")
    return 0


def _upload(args: argparse.Namespace) -> int:
    from sealfn.envelope import Suite
    from sealfn.keyservice.client import KeyServiceClient
    from sealfn.keyservice.principal import Principal

    owner = Principal.load(args.principal)
    key = bytes.fromhex(args.key_file.read_text().strip())
    with KeyServiceClient(args.keyservice) as client:
        service_key = client.attest(policy(args))  # never hand a key to an unverified service
        deployment = client.upload_model_key(
            owner, args.model_id, key, service_key, suite=Suite(SUITES[args.suite])
        )
    print(f"uploaded the key of {args.model_id}; deployment key {deployment.public_key.hex()}")
    if args.store and args.sealed_file:
        from sealfn.modelstore import open_store

        digest = open_store(args.store).put(args.model_id, args.sealed_file.read_bytes())
        print(f"stored the sealed model in {args.store} ({digest})")
    return 0


def _grant(args: argparse.Namespace) -> int:
    from sealfn.keyservice.client import KeyServiceClient
    from sealfn.keyservice.principal import Principal

    if args.measurement:
        measurements = [bytes.fromhex(m) for m in args.measurement]
    else:
        from sealfn.instance.sealed import enclave_measurement

        measurements = [enclave_measurement()]
    with KeyServiceClient(args.keyservice) as client:
        client.grant(Principal.load(args.principal), args.model_id, args.user, measurements)
    shown = ", ".join(m.hex()[:16] + "…" for m in measurements)
    print(f"granted {args.user} access to {args.model_id} on enclaves {shown}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from sealfn.keyservice.client import KeyServiceClient
    from sealfn.keyservice.principal import Principal

    with KeyServiceClient(args.keyservice) as client:
        client.revoke(Principal.load(args.principal), args.model_id, args.user)
    print(f"revoked {args.user}'s access to {args.model_id}")
    return 0


def _measurement(_: argparse.Namespace) -> int:
    from sealfn.instance.sealed import enclave_measurement

    print(enclave_measurement().hex())
    return 0
