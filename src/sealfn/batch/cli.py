"""The `sealfn batch` subcommands."""

from __future__ import annotations

from typing import Any


def add_commands(commands: Any) -> None:
    """Register `sealfn batch` on the `sealfn` parser (filled in as the issue lands)."""
