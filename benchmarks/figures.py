"""The issue's figures from the raw results: targets met or not, a text table and the plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sealfn.report import table
from sealfn_arm import configs

Row = dict[str, Any]
DEFAULT = next(c.label for c in configs() if c.default)
ISOLATED = ("b1-i1", "b8-i1")  # batching off / on with one instance
AT_DEFAULT = (next(c.label for c in configs() if c.max_batch == 1 and c.max_instances > 1), DEFAULT)
NOT_WORSE = 1.05  # "batching must not worsen p50": the same 5 % allowance as figure 2


def find(points: Sequence[Row], arm: str, model: str, config: str, clients: int) -> Row | None:
    for row in points:
        key = (row["arm"], row["model"], row["config"], row["clients"])
        if key == (arm, model, config, clients):
            return row
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _get(row: Row | None, key: str) -> float | None:
    return None if row is None else row.get(key)


def _target(
    ident: str, what: str, value: float | None, target: str, test: Callable[[float], bool] | None
) -> Row:
    met = None if value is None or test is None else bool(test(value))
    return {"id": ident, "what": what, "value": value, "target": target, "met": met}


def targets(results: dict[str, Any]) -> list[Row]:
    points = results["points"]
    interleaved = results.get("sealfn", {}).get("interleaved", {})
    return [
        *_latency_targets(interleaved, points),
        *_batching_targets(interleaved, points),
        *_cold_targets(results),
    ]


def _blocks(interleaved: dict[str, Row], model: str, clients: int) -> Row | None:
    found: Row | None = interleaved.get(model, {}).get(f"c{clients}")
    return found


def interleaved_ratio(il: Row | None, arm: str, base: str, key: str) -> Row:
    """key(arm) / key(base) from interleaved blocks, pooled, and its spread over rounds."""
    if il is None or arm not in il["arms"] or base not in il["arms"]:
        return {"ratio": None, "round_min": None, "round_max": None}
    a, b = il["arms"][arm], il["arms"][base]
    per_round_key = {"p50_ms": "round_p50_ms", "throughput_rps": "round_throughput_rps"}[key]
    per_round = [x / y for x, y in zip(a[per_round_key], b[per_round_key], strict=True) if x and y]
    return {
        "ratio": _ratio(a[key], b[key]),
        "round_min": min(per_round, default=None),
        "round_max": max(per_round, default=None),
    }


def _latency_targets(interleaved: dict[str, Row], points: Sequence[Row]) -> list[Row]:
    il = _blocks(interleaved, "mlp", 1)
    p50 = None if il is None else il["arms"].get(f"sealfn-{DEFAULT}", {}).get("p50_ms")
    t = _target(
        "1a",
        f"mlp: sealfn p50 at 1 client, ms ({DEFAULT}, interleaved)",
        p50,
        "<= 1.0",
        lambda v: v <= 1.0,
    )
    t["detail"] = {
        "separate_point_p50_ms": _get(find(points, "sealfn", "mlp", DEFAULT, 1), "p50_ms")
    }
    out = [t]
    sealfn_8 = _get(find(points, "sealfn", "mlp", DEFAULT, 8), "throughput_rps")
    ray_rows = [
        r for r in points if r["arm"] == "ray" and r["model"] == "mlp" and r["clients"] == 8
    ]
    best = max(ray_rows, key=lambda r: r["throughput_rps"]) if ray_rows else None
    t = _target(
        "1b",
        f"mlp: sealfn/Ray throughput at 8 clients ({DEFAULT} vs Ray's best arm)",
        _ratio(sealfn_8, _get(best, "throughput_rps")),
        ">= 10",
        lambda v: v >= 10,
    )
    t["detail"] = {"ray_best_arm": None if best is None else best["config"]}
    for mine, theirs in (("b1-i1", "plain"), ("b8-i1", "batch8")):
        t["detail"][f"{mine}/ray-{theirs}"] = _ratio(
            _get(find(points, "sealfn", "mlp", mine, 8), "throughput_rps"),
            _get(find(points, "ray", "mlp", theirs, 8), "throughput_rps"),
        )
    out.append(t)
    for ident, model, test in (("2", "resnet18", True), ("2-mlp", "mlp", False)):
        ratio = interleaved_ratio(
            _blocks(interleaved, model, 1), f"sealfn-{DEFAULT}", "ort", "p50_ms"
        )
        t = _target(
            ident,
            f"{model}: sealfn p50 / in-process ORT p50 at 1 client ({DEFAULT}, interleaved)",
            ratio.pop("ratio"),
            "<= 1.05" if test else "(info)",
            (lambda v: v <= 1.05) if test else None,
        )
        ratio["separate_points_ratio"] = _ratio(
            _get(find(points, "sealfn", model, DEFAULT, 1), "p50_ms"),
            _get(find(points, "ort", model, "in-process", 1), "p50_ms"),
        )
        t["detail"] = ratio
        out.append(t)
    return out


def _batching_targets(interleaved: dict[str, Row], points: Sequence[Row]) -> list[Row]:
    out = []
    for model in ("mlp", "resnet18"):
        for tag, (off, on) in (("i1", ISOLATED), ("default-instances", AT_DEFAULT)):
            on_arm, off_arm = f"sealfn-{on}", f"sealfn-{off}"
            gain = interleaved_ratio(
                _blocks(interleaved, model, 8), on_arm, off_arm, "throughput_rps"
            )
            t = _target(
                f"3-{model}-{tag}-tput",
                f"{model}: throughput at 8 clients, batching on/off ({on} / {off}, interleaved)",
                gain.pop("ratio"),
                "(no number set; > 1 expected)",
                None,
            )
            gain["separate_points_ratio"] = _ratio(
                _get(find(points, "sealfn", model, on, 8), "throughput_rps"),
                _get(find(points, "sealfn", model, off, 8), "throughput_rps"),
            )
            gain["mean_batch_on"] = _get(find(points, "sealfn", model, on, 8), "mean_batch")
            t["detail"] = gain
            out.append(t)
            ratio = interleaved_ratio(_blocks(interleaved, model, 1), on_arm, off_arm, "p50_ms")
            t = _target(
                f"3-{model}-{tag}-p50",
                f"{model}: p50 at 1 client, batching on/off ({on} / {off}, interleaved)",
                ratio.pop("ratio"),
                f"<= {NOT_WORSE} (not worse)",
                lambda v: v <= NOT_WORSE,
            )
            ratio["separate_points_ratio"] = _ratio(
                _get(find(points, "sealfn", model, on, 1), "p50_ms"),
                _get(find(points, "sealfn", model, off, 1), "p50_ms"),
            )
            t["detail"] = ratio
            out.append(t)
    return out


def _cold_targets(results: dict[str, Any]) -> list[Row]:
    out = []
    for model in ("mlp", "resnet18"):
        cold = results.get("sealfn", {}).get("cold", {}).get(model, {})
        probe = results.get("ort_load", {}).get(model, {})
        first, load = cold.get("first_reply_s"), probe.get("load_s")
        t = _target(
            f"4-{model}",
            f"{model}: sealfn cold first reply - ORT load time (s), from zero instances",
            None if first is None or load is None else first - load,
            "<= 0.5",
            lambda v: v <= 0.5,
        )
        ray_cold = results.get("ray", {}).get("cold", {}).get(model, {})
        t["detail"] = {
            "sealfn_first_reply_s": first,
            "sealfn_after_idle_first_reply_s": _after_idle(cold),
            "ort_load_s": load,
            "ort_import_load_s": probe.get("import_load_s"),
            "fresh_process_spawn_to_first_run_s": probe.get("spawn_to_first_run_s"),
            "ray_first_reply_from_zero_s": ray_cold.get("first_reply_s"),
            "ray_after_idle_first_reply_s": ray_cold.get("after_idle_first_reply_s"),
        }
        out.append(t)
    return out


def _after_idle(cold: dict[str, Any]) -> float | None:
    values = [
        r["after_idle_first_reply_s"]
        for r in cold.get("reps", [])
        if "after_idle_first_reply_s" in r
    ]
    return values[0] if values else None


# --- text -------------------------------------------------------------------------------------

POINT_COLUMNS = (
    ("model", "model"),
    ("arm", "arm"),
    ("config", "config"),
    ("c", "clients"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("req/s", "throughput_rps"),
    ("srv cpu ms/req", "server_cpu_ms_per_req"),
    ("cli cpu ms/req", "client_cpu_ms_per_req"),
    ("srv PSS MB", "server_pss_mb"),
    ("batch", "mean_batch"),
    ("starts", "instance_starts_in_window"),
    ("err", "errors"),
    ("others", "foreign_cpus"),  # CPUs busy with neither server nor client: noise
)


def text(results: dict[str, Any]) -> str:
    rows = [[p.get(key) for _, key in POINT_COLUMNS] for p in results["points"]]
    parts = [table([h for h, _ in POINT_COLUMNS], rows), ""]
    verdict = {True: "met", False: "NOT met", None: "n/a"}
    rows = [
        [t["id"], t["what"], t["value"], _spread(t), t["target"], verdict[t["met"]]]
        for t in results["targets"]
    ]
    parts.append(table(("figure", "what", "value", "rounds", "target", "verdict"), rows))
    return "\n".join(parts)


def _spread(target: Row) -> str:
    """The per-round range of an interleaved ratio, e.g. "0.98..1.07"."""
    detail = target.get("detail", {})
    low, high = detail.get("round_min"), detail.get("round_max")
    return "-" if low is None or high is None else f"{low:.2f}..{high:.2f}"


# --- plot -------------------------------------------------------------------------------------

_ARM_NAMES = {"ort": "ORT", "sealfn": "sealfn", "ray": "Ray"}


def _categories(points: Sequence[Row]) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for row in points:
        key = (row["arm"], row["config"])
        if key not in seen:
            seen.append(key)
    return seen


def _label(category: tuple[str, str]) -> str:
    arm, config = category
    return f"{_ARM_NAMES[arm]}\n{config.replace('-default', '*')}"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = results["points"]
    categories = _categories(points)
    fig, axes = plt.subplots(2, 4, figsize=(24, 10))
    for column, model in enumerate(("mlp", "resnet18")):
        _bars(
            axes[0][column], points, categories, model, key="p50_ms", title=f"{model}: latency, ms"
        )
        _bars(
            axes[1][column],
            points,
            categories,
            model,
            key="throughput_rps",
            title=f"{model}: req/s",
        )
    _batching(axes[0][2], results["targets"])
    _cold(axes[0][3], results)
    _per_model(axes[1][2], points, categories, "server_cpu_ms_per_req", "server CPU ms/request")
    _per_model(axes[1][3], points, categories, "server_pss_mb", "server memory (PSS sum), MB")
    fig.suptitle(
        "sealfn vs onnxruntime in-process vs Ray Serve (loopback; client and server share "
        f"{results['env']['cpu_count']} CPUs). * = sealfn defaults",
        fontsize=13,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(
    ax: Any, points: Sequence[Row], cats: list[tuple[str, str]], model: str, *, key: str, title: str
) -> None:
    width = 0.38
    for offset, clients in ((-width / 2, 1), (width / 2, 8)):
        rows = [find(points, arm, model, config, clients) for arm, config in cats]
        xs = [i + offset for i, r in enumerate(rows) if r is not None]
        ys = [r[key] for r in rows if r is not None]
        ax.bar(xs, ys, width, label=f"{clients} client{'s' if clients > 1 else ''}")
        if key == "p50_ms":
            p99 = [r["p99_ms"] for r in rows if r is not None]
            ax.scatter(xs, p99, marker="_", s=200, color="black", zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cats)), [_label(c) for c in cats], fontsize=8)
    suffix = " (bar p50, tick p99)" if key == "p50_ms" else ""
    ax.set_title(title + suffix)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _batching(ax: Any, rows: Sequence[Row]) -> None:
    found = [t for t in rows if t["id"].startswith("3-") and t["value"] is not None]
    labels = [t["id"][2:].replace("-default-instances", "-iD") for t in found]
    colors = ["tab:green" if t["id"].endswith("tput") else "tab:orange" for t in found]
    ax.bar(range(len(found)), [t["value"] for t in found], color=colors)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(found)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_title("sealfn batching on/off: green = req/s gain @8, orange = p50 ratio @1")
    ax.grid(axis="y", alpha=0.3)


def _cold(ax: Any, results: dict[str, Any]) -> None:
    def get(arm: str, key: str) -> Callable[[str], float | None]:
        return lambda model: results.get(arm, {}).get("cold", {}).get(model, {}).get(key)

    def probe(key: str) -> Callable[[str], float | None]:
        return lambda model: results.get("ort_load", {}).get(model, {}).get(key)

    def sealfn_idle(model: str) -> float | None:
        return _after_idle(results.get("sealfn", {}).get("cold", {}).get(model, {}))

    series: dict[str, Callable[[str], float | None]] = {
        "ORT load": probe("load_s"),
        "ORT import+load": probe("import_load_s"),
        "fresh process: spawn..first run": probe("spawn_to_first_run_s"),
        "sealfn from zero": get("sealfn", "first_reply_s"),
        "sealfn after idle": sealfn_idle,
        "Ray from zero": get("ray", "first_reply_s"),
        "Ray after idle": get("ray", "after_idle_first_reply_s"),
    }
    width = 0.8 / len(series)
    for i, (name, value) in enumerate(series.items()):
        values = [value(m) for m in ("mlp", "resnet18")]
        xs = [j + (i - len(series) / 2 + 0.5) * width for j, v in enumerate(values) if v]
        ax.bar(xs, [v for v in values if v], width, label=name)
    ax.set_yscale("log")
    ax.set_xticks([0, 1], ["mlp", "resnet18"])
    ax.set_title("cold start: zero → first reply vs model load, s")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _per_model(
    ax: Any, points: Sequence[Row], cats: list[tuple[str, str]], key: str, title: str
) -> None:
    width = 0.38
    for offset, model in ((-width / 2, "mlp"), (width / 2, "resnet18")):
        rows = [find(points, arm, model, config, 8) for arm, config in cats]
        pairs = [(i + offset, r[key]) for i, r in enumerate(rows) if r is not None and r.get(key)]
        ax.bar([x for x, _ in pairs], [y for _, y in pairs], width, label=model)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cats)), [_label(c) for c in cats], fontsize=8)
    ax.set_title(f"{title}, at 8 clients")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
