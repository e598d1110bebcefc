"""The `sealfn he` subcommands."""

from __future__ import annotations

from typing import Any


def add_commands(commands: Any) -> None:
    """Register `sealfn he` on the `sealfn` parser (filled in as the issue lands)."""
