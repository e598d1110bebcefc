"""Run every fuzz target for a fixed time with atheris; JSON + PNG into benchmarks/results.

Usage: ``.venv/bin/python fuzz/run.py [--seconds 60] [--targets oip,envelope]`` (``make fuzz``).
A target fails on any crash (an exception outside its allowed refusals), a hang over
``--timeout`` seconds, or a run over the memory limit; the artifact that did it is kept under
``fuzz/artifacts/``. Exit status 1 if any target failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from targets import Target

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "benchmarks" / "results"
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_COV = re.compile(r"cov: (\d+) ft: (\d+)")


def main() -> int:
    from targets import TARGETS

    args = _args(sorted(TARGETS))
    results = [_run(name, TARGETS[name], args) for name in args.targets.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "fuzz.json"
    earlier = json.loads(path.read_text())["targets"] if path.exists() else []
    ran = {r["target"] for r in results}  # a partial run keeps the other targets' latest figures
    merged = sorted([r for r in earlier if r["target"] not in ran] + results, key=_name)
    doc = {"python": sys.version.split()[0], "targets": merged}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    _plot(merged, RESULTS / "fuzz.png")
    for r in results:
        print(
            f"{r['target']:16} {r['status']:6} {r['runs']:>9} runs  {r['runs_per_s']:>8.0f}/s  "
            f"cov {r['coverage']}  {r.get('artifact') or ''}"
        )
    return 0 if all(r["status"] == "ok" for r in results) else 1


def _name(result: dict[str, object]) -> str:
    return str(result["target"])


def _args(names: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--timeout", type=int, default=5, help="seconds per input: a hang")
    parser.add_argument("--targets", default=",".join(names))
    return parser.parse_args()


def _run(name: str, target: Target, args: argparse.Namespace) -> dict[str, object]:
    corpus = HERE / "corpus" / name
    artifacts = HERE / "artifacts" / name
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(target.seeds):
        (corpus / f"seed-{i}").write_bytes(seed)
    dictionary = [f"-dict={HERE / 'dicts' / target.dictionary}"] if target.dictionary else []
    command = [
        sys.executable,
        str(HERE / "harness.py"),
        name,
        f"-max_total_time={args.seconds}",
        f"-timeout={args.timeout}",
        "-rss_limit_mb=2048",
        f"-max_len={target.max_len}",
        f"-artifact_prefix={artifacts}/",
        *dictionary,
        str(corpus),
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE, check=False)
    elapsed = time.monotonic() - started
    log = done.stderr
    runs = int(m.group(1)) if (m := _DONE.search(log)) else 0
    covs = _COV.findall(log)
    found = sorted(p.name for p in artifacts.iterdir())
    return {
        "target": name,
        "status": "ok" if done.returncode == 0 and not found else "FAILED",
        "runs": runs,
        "runs_per_s": runs / elapsed if elapsed else 0.0,
        "seconds": round(elapsed, 1),
        "coverage": int(covs[-1][0]) if covs else 0,
        "features": int(covs[-1][1]) if covs else 0,
        "corpus_files": sum(1 for _ in corpus.iterdir()),
        "artifact": str(artifacts / found[0]) if found else None,
        "tail": log.strip().splitlines()[-3:] if done.returncode else [],
    }


def _plot(results: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = [str(r["target"]) for r in results]
    runs = [float(r["runs"]) for r in results]  # type: ignore[arg-type]
    colors = ["tab:green" if r["status"] == "ok" else "tab:red" for r in results]
    ax.barh(names, runs, color=colors)
    ax.set_xscale("log")  # the HE ciphertext target runs ~1e4 inputs, the others ~1e6
    for y, count in enumerate(runs):
        ax.annotate(f"{count:,.0f}", (count, y), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)  # fmt: skip
    ax.set_xlabel("inputs executed, log scale (green: 0 crashes, 0 hangs)")
    ax.set_title("atheris coverage-guided fuzzing, per target")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
