"""Frozen per-component configuration, built once from CLI flags or ``SEALFN_*`` environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sealfn.errors import ConfigError

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid function name (also used as a directory name)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"function name {name!r} is invalid: use 1-63 letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class FunctionSpec:
    """What `sealfn deploy` registers: one model served as a scalable function."""

    name: str
    min_instances: int = 0
    max_instances: int = 4
    keep_alive_s: float = 60.0  # idle seconds before scaling to min_instances
    max_batch: int = 8  # requests per batch; 1 turns batching off
    slo_ms: float = 100.0  # latency objective that caps batch growth
    memory_mb: int = 512  # billed memory per instance, as on AWS Lambda
    concurrency: int = 1  # batches one instance runs at once (its slots)
    group: str | None = None  # functions in one group may share instances (Fn-Packer)
    sealed: bool = False  # the model is sealed: only attested enclave instances can open it
    keyservice: str | None = None  # URL of the KeyService that releases a sealed model's keys
    model_store: str | None = None  # sealed model fetched by the enclave from this store (URL)
    he: bool = False  # an HE network (sealfn he train): served on CKKS ciphertexts, no TEE

    def __post_init__(self) -> None:
        check_name(self.name)
        _check_int("min_instances", self.min_instances, 0, 1024)
        _check_int("max_instances", self.max_instances, 1, 1024)
        _check_int("max_batch", self.max_batch, 1, 4096)
        _check_int("memory_mb", self.memory_mb, 16, 1 << 20)
        _check_int("concurrency", self.concurrency, 1, 256)
        _check_float("keep_alive_s", self.keep_alive_s, 0.0, 7 * 86400.0)
        _check_float("slo_ms", self.slo_ms, 0.1, 3.6e6)
        if self.min_instances > self.max_instances:
            raise ConfigError(
                f"min_instances={self.min_instances} exceeds max_instances={self.max_instances}"
            )
        if self.group is not None:
            check_name(self.group)
        if not isinstance(self.sealed, bool):
            raise ConfigError(f"sealed={self.sealed!r} must be true or false")
        if not isinstance(self.he, bool):
            raise ConfigError(f"he={self.he!r} must be true or false")
        if self.he and (self.sealed or self.group is not None):
            raise ConfigError("he=true excludes sealed= and group= (an HE function runs alone)")
        if self.model_store is not None and not self.sealed:
            raise ConfigError("model_store= is for sealed models (the enclave fetches them)")
        if self.sealed and not self.keyservice:
            raise ConfigError("a sealed function needs keyservice= (the KeyService URL)")
        if self.keyservice is not None and not str(self.keyservice).startswith(
            ("http://", "https://")
        ):
            raise ConfigError(f"keyservice={self.keyservice!r} must be an http(s) URL")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown deployment setting(s): {', '.join(unknown)}")
        if "name" not in data:
            raise ConfigError("deployment spec needs a 'name'")
        return cls(**dict(data))

    def with_changes(self, **changes: Any) -> FunctionSpec:
        return replace(self, **changes)


@dataclass(frozen=True)
class PriceConfig:
    """Prices for cost accounting (defaults: AWS Lambda x86, us-east-1, 2026)."""

    usd_per_gb_second: float = 0.0000166667
    usd_per_million_requests: float = 0.20


ENGINES = ("local", "ray")  # executors `sealfn serve --engine` can start instances with


@dataclass(frozen=True)
class ServerConfig:
    """Settings of `sealfn serve`; every field can come from ``SEALFN_<FIELD>``."""

    host: str = "127.0.0.1"
    port: int = 8080
    state_dir: Path = field(default_factory=lambda: Path(".sealfn"))
    max_body_bytes: int = 64 << 20  # larger inference bodies get 413
    max_model_bytes: int = 2 << 30  # larger model uploads get 413
    request_timeout_s: float = 60.0  # queued + running, before 504
    instance_threads: int = 0  # onnxruntime intra-op threads per instance; 0 = ORT default
    shm_slot_bytes: int = 8 << 20  # per slot, per direction; larger tensors travel inline
    inline_tensor_bytes: int = 64 << 10  # tensors up to this size travel inside the frame
    # HE functions (sealfn.he): request ciphertexts past this spill from memory to a temp file;
    # the evaluation-key store's quota (keys are 94-600 MiB) and idle expiry (LRU past quota)
    he_spool_memory_bytes: int = 2 << 20
    he_keys_quota_bytes: int = 8 << 30
    he_key_ttl_s: float = 86400.0  # a key set unused this long is deleted
    tick_s: float = 0.25  # control loop period (autoscaler, keep-alive)
    stable_window_s: float = 6.0
    panic_window_s: float = 1.0
    panic_threshold: float = 2.0
    start_timeout_s: float = 60.0  # an instance that is not ready by then is replaced
    # Load plain models through a copy optimized once for this host (sealfn.instance.hostopt):
    # onnxruntime's rewrite is skipped at load (ResNet-18 ~100 -> ~5 ms) and conv weights stay
    # mapped from the file, shared by the model's instances at full speed.
    host_optimized: bool = True
    # Also keep MatMul/Gemm weights mapped (no prepacking) so instances share them too; without
    # host_optimized it also turns off the NCHWc conv layout (~27% slower conv nets).
    share_weights: bool = False
    tee: str = "auto"  # TEE backend of sealed instances: auto, simulated, tdx, sev-snp, sgx-gramine
    tee_platform_dir: str | None = None  # the simulated TEE's platform (default ~/.sealfn/...)
    engine: str = "local"  # where instances run: local processes, or ray actors (the ray extra)
    # Bearer token of /admin/*; None: the one in state_dir/admin.token (made on first start).
    admin_token: str | None = field(default=None, repr=False)
    prices: PriceConfig = field(default_factory=PriceConfig)

    def __post_init__(self) -> None:
        _check_int("port", self.port, 0, 65535)
        if self.engine not in ENGINES:
            raise ConfigError(f"engine={self.engine!r} must be one of {', '.join(ENGINES)}")
        _check_int("max_body_bytes", self.max_body_bytes, 1024, 1 << 40)
        _check_int("instance_threads", self.instance_threads, 0, 1024)
        _check_int("max_model_bytes", self.max_model_bytes, 1024, 1 << 44)
        _check_int("shm_slot_bytes", self.shm_slot_bytes, 0, 1 << 34)
        _check_int("inline_tensor_bytes", self.inline_tensor_bytes, 0, 1 << 30)
        _check_int("he_spool_memory_bytes", self.he_spool_memory_bytes, 0, 1 << 40)
        _check_int("he_keys_quota_bytes", self.he_keys_quota_bytes, 1 << 20, 1 << 50)
        _check_float("he_key_ttl_s", self.he_key_ttl_s, 1.0, 1e9)
        _check_float("start_timeout_s", self.start_timeout_s, 0.1, 3600.0)
        _check_float("tick_s", self.tick_s, 0.01, 60.0)
        _check_float("stable_window_s", self.stable_window_s, 0.1, 3600.0)
        _check_float("panic_window_s", self.panic_window_s, 0.05, 3600.0)
        _check_float("request_timeout_s", self.request_timeout_s, 0.01, 86400.0)
        _check_float("panic_threshold", self.panic_threshold, 1.0, 1000.0)
        if self.panic_window_s > self.stable_window_s:
            raise ConfigError(
                f"panic_window_s={self.panic_window_s} must not exceed "
                f"stable_window_s={self.stable_window_s}"
            )

    @classmethod
    def from_env(cls, prefix: str = "SEALFN_", **overrides: Any) -> ServerConfig:
        """Defaults, then ``SEALFN_*`` variables, then explicit ``overrides`` (CLI flags)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(prefix + f.name.upper())
            if raw is None or f.name == "prices":
                continue
            values[f.name] = _parse(f.name, raw, f.type)
        prices = PriceConfig(
            **{
                pf.name: _parse(pf.name, os.environ[prefix + pf.name.upper()], "float")
                for pf in fields(PriceConfig)
                if prefix + pf.name.upper() in os.environ
            }
        )
        values["prices"] = prices
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "state_dir" in values:
            values["state_dir"] = Path(values["state_dir"])
        return cls(**values)


def _parse(key: str, raw: str, kind: object) -> Any:
    text = str(kind)
    if text == "bool":
        if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
            raise ConfigError(f"{key}={raw!r} is not a valid bool (true/false)")
        return raw.lower() in {"1", "true", "yes"}
    try:
        if "int" in text:
            return int(raw)
        if "float" in text:
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{key}={raw!r} is not a valid {text}") from exc
    return raw


def _check_int(key: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{key}={value!r} must be an integer in [{lo}, {hi}]")


def _check_float(key: str, value: object, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{key}={value!r} must be a number in [{lo}, {hi}]")
