"""Plain-text tables for `sealfn status` and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STATUS_COLUMNS = (
    "function",
    "starting",
    "warm",
    "idle",
    "draining",
    "queue",
    "requests",
    "p50 ms",
    "p99 ms",
    "cold starts",
    "cold ms",
    "GB-s",
    "USD",
    "USD/1k",
)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def status_table(functions: Sequence[dict[str, Any]]) -> str:
    if not functions:
        return "no functions deployed"
    rows = []
    for f in functions:
        states = f["instances"]
        rows.append(
            [
                f["name"],
                states["starting"],
                states["warm"],
                states["idle"],
                states["draining"],
                f["queue"],
                f["requests"],
                f["p50_ms"],
                f["p99_ms"],
                f["cold_starts"],
                f["cold_start_ms"],
                f["gb_seconds"],
                f["usd"],
                f["usd_per_1000"],
            ]
        )
    return table(STATUS_COLUMNS, rows)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 0.01:
            return f"{value:.2e}"
        return f"{value:.2f}"
    return str(value)
