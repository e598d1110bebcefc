"""The curated public surface: every name in ``__all__`` exists, and nothing private leaks."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["sealfn", "sealfn.client", "sealfn.envelope"])
def test_all_names_resolve(module: str) -> None:
    loaded = importlib.import_module(module)
    for name in loaded.__all__:
        assert getattr(loaded, name) is not None, name
        assert not name.startswith("_") or name == "__version__"


def test_importing_sealfn_does_not_load_the_http_client() -> None:
    import subprocess
    import sys

    code = "import sys, sealfn; print('httpx' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
