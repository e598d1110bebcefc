"""Repeated runs of ``benchmarks/training.py``, aggregated (the figures docs/training.md quotes).

Usage: ``.venv/bin/python benchmarks/training_runs.py [--runs 3] [--rounds 8] [--baseline DIR]``.

Each run is the full benchmark in its own process (``training.py --rounds R``). With
``--baseline DIR`` (a source tree holding an earlier ``sealfn``, e.g. from ``git archive``), runs
alternate between this tree and that one (this tree first), so both see the same load; the
baseline's runs import ``sealfn`` from ``DIR/src``, workers included. Writes
``benchmarks/results/training_runs.json`` (or ``--json PATH``): per case and arm, each run's
median per-round ratio to plain, the median of those, each run's range of single-round ratios,
median step times, and the 1/5/15-minute load averages at the start and end of each run;
``training.json`` and ``training.png`` are left as this tree's last run wrote them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def run_once(rounds: int, out: Path, baseline: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if baseline is not None:
        env["PYTHONPATH"] = str(baseline / "src")
    command = [sys.executable, str(ROOT / "benchmarks" / "training.py"), "--rounds", str(rounds)]
    subprocess.run([*command, "--out", str(out)], check=True, env=env)
    result: dict[str, Any] = json.loads((out / "training.json").read_text())
    return result


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per case and arm: ratios to plain per run, their median, single-round ranges, times."""
    cases: dict[str, Any] = {}
    for case in runs[0]["cases"]:
        cases[case] = {}
        for arm in runs[0]["cases"][case]:
            rows = [run["cases"][case][arm] for run in runs]
            ratios = [round(row["vs_plain_per_round"]["median"], 3) for row in rows]
            cases[case][arm] = {
                "ratio_per_run": ratios,
                "ratio_median_of_runs": statistics.median(ratios),
                "round_ratio_range_per_run": [
                    [round(row["vs_plain_per_round"][end], 2) for end in ("min", "max")]
                    for row in rows
                ],
                "median_step_ms_per_run": [round(row["median_step_ms"], 2) for row in rows],
            }
    return {
        "runs": len(runs),
        "cases": cases,
        "linear_sweep": {
            width: [round(run["linear_sweep"][width]["obfuscated_vs_plain"], 3) for run in runs]
            for width in runs[0]["linear_sweep"]
        },
        "loadavg": [
            [run["machine"]["loadavg_start"], run["machine"]["loadavg_end"]] for run in runs
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of this tree")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--baseline", type=Path, default=None, help="an earlier source tree")
    parser.add_argument("--json", type=Path, default=RESULTS / "training_runs.json")
    args = parser.parse_args()
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        last = Path(scratch)
        for index in range(args.runs):
            out = Path(scratch) / f"run{index}"
            ours.append(run_once(args.rounds, out, None))
            last = out
            if args.baseline is not None:
                theirs.append(run_once(args.rounds, Path(scratch) / f"base{index}", args.baseline))
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in ("training.json", "training.png"):
            shutil.copy(last / name, RESULTS / name)
    command = f"{Path(sys.executable).name} benchmarks/training.py --rounds {args.rounds}"
    summary: dict[str, Any] = {
        "command": f"{command} ({args.runs} runs; training.json is the last)",
        "note": "CPU only, 2 cores shared by the coordinator, the worker and other jobs; "
        "loadavg [1, 5, 15 min] at the start and end of each run",
        **aggregate(ours),
    }
    if theirs:
        summary["baseline"] = {"source": str(args.baseline), **aggregate(theirs)}
    args.json.write_text(json.dumps(summary, indent=1) + "\n")
    for case, arms in summary["cases"].items():
        line = f"{case}: obfuscated / plain {arms['obfuscated']['ratio_per_run']}"
        if theirs:
            line += (
                f", baseline {summary['baseline']['cases'][case]['obfuscated']['ratio_per_run']}"
            )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
