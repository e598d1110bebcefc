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
    """One panel per group size: each (policy, cap, seed) as a point, GB-s saved vs (a) against
    p99 / (a)'s p99; the targets' corner (>= 3x cheaper, p99 no worse) shaded. The
    room-for-everything bound (c-roomy) gets a panel of its own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({(r["policy"] == "c-roomy", r["group_mb"]) for r in rows})
    caps = sorted({r["max_instances"] for r in rows})
    colors = plt.get_cmap("viridis")
    markers = {"b": "x", "c": "o", "c-roomy": "s"}
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 4.5), sharey=True)
    top = max(6.0, max(r["gb_s_ratio"] for r in rows) * 1.05)
    for ax, (roomy, group_mb) in zip(axes, sizes, strict=True):
        ax.fill_between([3, top], 0.5, 1.0, color="0.93", lw=0)
        mine = [r for r in rows if (r["policy"] == "c-roomy", r["group_mb"]) == (roomy, group_mb)]
        for policy, marker in markers.items():
            for cap in caps:
                points = [r for r in mine if (r["policy"], r["max_instances"]) == (policy, cap)]
                if not points:
                    continue
                ax.scatter(
                    [r["gb_s_ratio"] for r in points],
                    [r["p99_ms"] / r["a_p99_ms"] for r in points],
                    marker=marker,
                    color=colors(caps.index(cap) / max(1, len(caps) - 1)),
                    s=24,
                    label=f"({policy}) x {cap}",
                )
        ax.axhline(1.0, color="0.4", lw=0.8)
        ax.axvline(3.0, color="0.4", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlim(0, top)
        ax.set_xlabel("GB-s of (a) / GB-s (target >= 3)")
        kind = "every model in every instance" if roomy else "group instances"
        ax.set_title(f"{group_mb} MB {kind}", fontsize=9)
        ax.legend(fontsize=6, ncol=2, loc="upper left")
    axes[0].set_ylabel("p99 / p99 of (a) (target <= 1)")
    fig.suptitle("packing frontier: instance size x cap, every seed (simulation)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
