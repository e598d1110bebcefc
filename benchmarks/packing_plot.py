"""The packing benchmark's figure: GB-s, cold starts, p99 and failures per policy, and over time
the arrival trace and each policy's alive instances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BARS = (
    ("gb_s", "GB-seconds"),
    ("cold_starts", "cold starts (instance starts)"),
    ("p99_ms", "p99 latency (ms)"),
    ("failures", "failed requests"),
)
COLORS = ("tab:red", "tab:orange", "tab:blue", "lightcoral", "lightsteelblue", "tab:purple")


def plot(
    path: Path,
    policies: Mapping[str, Mapping[str, Any]],
    per_second: Sequence[int],
    bursts: Sequence[tuple[float, float]],
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 8.5))
    grid = fig.add_gridspec(2, len(BARS), height_ratios=(1, 1.1))
    labels = list(policies)
    colors = [COLORS[i % len(COLORS)] for i in range(len(labels))]
    for column, (key, name) in enumerate(BARS):
        ax = fig.add_subplot(grid[0, column])
        values = [_value(policies[label], key) for label in labels]
        ax.bar(range(len(labels)), values, color=colors)
        ax.set_xticks(range(len(labels)), [label.split()[0] for label in labels])
        ax.set_title(name, fontsize=10)
        for x, v in enumerate(values):
            ax.annotate(f"{v:.4g}", (x, v), ha="center", va="bottom", fontsize=8)
    ax = fig.add_subplot(grid[1, :])
    _timeline(ax, policies, per_second, bursts, colors)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _timeline(
    ax: Any,
    policies: Mapping[str, Mapping[str, Any]],
    per_second: Sequence[int],
    bursts: Sequence[tuple[float, float]],
    colors: Sequence[str],
) -> None:
    for start, end in bursts:
        ax.axvspan(start, end, color="0.9", lw=0)
    ax.plot(range(len(per_second)), per_second, color="0.35", lw=0.8, label="arrivals / s")
    ax.set_xlabel("simulated time (s); grey bands: burst state")
    ax.set_ylabel("requests per second")
    twin = ax.twinx()
    for (label, result), color in zip(policies.items(), colors, strict=True):
        times, alive = zip(*result["timeline"], strict=True) if result["timeline"] else ((), ())
        style = "--" if label[1] in "'*" else "-"  # sensitivity rows: a', c', c*
        twin.step(
            times, alive, style, where="post", color=color, lw=1.2, label=f"{label}: instances"
        )
    twin.set_ylabel("alive instances")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=8)


def _value(result: Mapping[str, Any], key: str) -> float:
    if key == "p99_ms":
        return float(result["p99_s"]) * 1e3
    return float(result[key])


def plot_frontier(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Each (policy, group size, cap, seed) as a point: GB-s saved vs (a) against p99 / (a)'s p99;
    the targets' corner (>= 3x cheaper, p99 no worse) shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.axvspan(3, 10, ymin=0, ymax=1, color="0.93", lw=0)
    keys = sorted({(r["policy"], r["group_mb"], r["max_instances"]) for r in rows})
    cmap = plt.get_cmap("tab20")
    for index, (policy, group_mb, cap) in enumerate(keys):
        mine = [
            r
            for r in rows
            if (r["policy"], r["group_mb"], r["max_instances"]) == (policy, group_mb, cap)
        ]
        ax.scatter(
            [r["gb_s_ratio"] for r in mine],
            [r["p99_ms"] / r["a_p99_ms"] for r in mine],
            marker="o" if policy == "c" else "x",
            color=cmap(index % 20),
            s=22,
            label=f"({policy}) {group_mb} MB x {cap}",
        )
    ax.axhline(1.0, color="0.4", lw=0.8)
    ax.axvline(3.0, color="0.4", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlim(0, max(6.0, max(r["gb_s_ratio"] for r in rows) * 1.05))
    ax.set_xlabel("GB-s of (a) / GB-s of the policy (target >= 3)")
    ax.set_ylabel("p99 / p99 of (a) (target <= 1)")
    ax.set_title("packing frontier: group size x instance cap, every seed", fontsize=10)
    ax.legend(fontsize=6, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
