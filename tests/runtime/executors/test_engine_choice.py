"""`sealfn serve --engine`: the config names the executor; the default path never needs Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealfn.config import ServerConfig
from sealfn.errors import ConfigError
from sealfn.runtime.server import executor_for


def test_local_is_the_default_engine(tmp_path: Path) -> None:
    config = ServerConfig(state_dir=tmp_path)
    assert config.engine == "local"
    assert executor_for(config) is None  # the gateway's own default: local processes


def test_an_unknown_engine_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="engine='kubernetes'"):
        ServerConfig(state_dir=tmp_path, engine="kubernetes")


def test_the_engine_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALFN_ENGINE", "ray")
    assert ServerConfig.from_env(state_dir=tmp_path).engine == "ray"
