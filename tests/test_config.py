"""Config: documented defaults, SEALFN_* parsing, and errors that name the key and the value."""

from __future__ import annotations

import os
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from sealfn.config import FunctionSpec, PriceConfig, ServerConfig, check_name
from sealfn.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SEALFN_"):
            monkeypatch.delenv(key)


def test_server_defaults() -> None:
    config = ServerConfig.from_env()
    assert config == ServerConfig()
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.state_dir == Path(".sealfn")
    assert config.max_body_bytes == 64 << 20
    assert config.inline_tensor_bytes == 64 << 10
    assert config.request_timeout_s == 60.0
    assert config.prices == PriceConfig()
    with pytest.raises(FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


def test_from_env_parses_each_type(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SEALFN_HOST": "0.0.0.0",
        "SEALFN_PORT": "9000",
        "SEALFN_STATE_DIR": "/tmp/sealfn-state",
        "SEALFN_MAX_BODY_BYTES": " 4096 ",
        "SEALFN_TICK_S": "0.1",
        "SEALFN_STABLE_WINDOW_S": "1e1",
        "SEALFN_REQUEST_TIMEOUT_S": "5",
        "SEALFN_USD_PER_GB_SECOND": "0.5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = ServerConfig.from_env()
    assert config.host == "0.0.0.0"
    assert config.port == 9000
    assert config.state_dir == Path("/tmp/sealfn-state")
    assert config.max_body_bytes == 4096
    assert config.tick_s == 0.1
    assert config.stable_window_s == 10.0
    assert config.request_timeout_s == 5.0
    assert config.prices.usd_per_gb_second == 0.5
    assert config.prices.usd_per_million_requests == PriceConfig().usd_per_million_requests


def test_overrides_beat_env_and_none_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALFN_PORT", "9000")
    assert ServerConfig.from_env(port=None).port == 9000  # a CLI flag that was not given
    assert ServerConfig.from_env(port=7000).port == 7000
    assert ServerConfig.from_env(state_dir="x").state_dir == Path("x")


def test_custom_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTHER_PORT", "1234")
    monkeypatch.setenv("SEALFN_PORT", "9000")
    assert ServerConfig.from_env(prefix="OTHER_").port == 1234


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("PORT", "eighty"),
        ("PORT", "80.5"),
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("MAX_BODY_BYTES", "10"),
        ("MAX_BODY_BYTES", "0x100"),
        ("TICK_S", "fast"),
        ("TICK_S", "0"),
        ("TICK_S", "nan"),
        ("STABLE_WINDOW_S", "inf"),
        ("REQUEST_TIMEOUT_S", "-5"),
        ("INSTANCE_THREADS", "-1"),
        ("PANIC_THRESHOLD", "0.5"),
        ("USD_PER_GB_SECOND", "free"),
    ],
)
def test_bad_env_value_names_key_and_value(
    monkeypatch: pytest.MonkeyPatch, key: str, raw: str
) -> None:
    monkeypatch.setenv(f"SEALFN_{key}", raw)
    with pytest.raises(ConfigError) as caught:
        ServerConfig.from_env()
    assert key.lower() in caught.value.message
    assert raw.strip() in caught.value.message or repr(float(raw)) in caught.value.message


def test_panic_window_must_fit_in_the_stable_window() -> None:
    with pytest.raises(ConfigError, match="panic_window_s=5 must not exceed stable_window_s=2"):
        ServerConfig(stable_window_s=2, panic_window_s=5)


@pytest.mark.parametrize(
    "key", [f.name for f in fields(ServerConfig) if f.type in ("int", "float")]
)
def test_every_numeric_setting_refuses_negative_values(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        ServerConfig(**{key: -1})


# ---- FunctionSpec ----------------------------------------------------------------------------


def test_function_spec_defaults_and_round_trip() -> None:
    spec = FunctionSpec("mlp")
    assert (spec.min_instances, spec.max_instances, spec.max_batch) == (0, 4, 8)
    assert (spec.keep_alive_s, spec.slo_ms, spec.memory_mb, spec.concurrency) == (60, 100, 512, 1)
    assert FunctionSpec.from_dict(spec.to_dict()) == spec
    changed = spec.with_changes(max_batch=1, group="g1")
    assert (changed.max_batch, changed.group) == (1, "g1")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_instances": -1}, "min_instances=-1"),
        ({"max_instances": 0}, "max_instances=0"),
        ({"max_batch": 0}, "max_batch=0"),
        ({"max_batch": 2.5}, "max_batch=2.5"),
        ({"concurrency": True}, "concurrency=True"),
        ({"memory_mb": 1}, "memory_mb=1"),
        ({"keep_alive_s": -0.1}, "keep_alive_s=-0.1"),
        ({"slo_ms": 0}, "slo_ms=0"),
        ({"slo_ms": "100"}, "slo_ms='100'"),
        ({"min_instances": 3, "max_instances": 2}, "min_instances=3 exceeds max_instances=2"),
        ({"group": "no spaces"}, "'no spaces' is invalid"),
        ({"flavour": "x"}, "unknown deployment setting(s): flavour"),
    ],
)
def test_bad_function_spec(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        FunctionSpec.from_dict({"name": "f", **settings})
    assert message in caught.value.message


def test_function_spec_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="needs a 'name'"):
        FunctionSpec.from_dict({"max_batch": 2})
    with pytest.raises(ConfigError, match="max_batch=0"):
        FunctionSpec("f").with_changes(max_batch=0)


@pytest.mark.parametrize("name", ["a", "mlp", "resnet-18", "v1.2_b", "A" * 63, "0start"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-x",
        ".x",
        "_x",
        "a/b",
        "a b",
        "..",
        "A" * 64,
        "é",
        5,
        None,
        "a\n",
    ],
)
def test_invalid_names(name: object) -> None:
    with pytest.raises(ConfigError, match="function name"):
        check_name(name)  # type: ignore[arg-type]
