"""``python -m sealfn.workloads DIR``: build the example models into DIR and list them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sealfn.errors import SealfnError
from sealfn.workloads.models import build_examples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sealfn.workloads", description="Build the example ONNX models into DIR."
    )
    parser.add_argument("directory", metavar="DIR", type=Path)
    parser.add_argument("--force", action="store_true", help="rebuild even if files are current")
    args = parser.parse_args(argv)
    try:
        examples = build_examples(args.directory, force=args.force)
    except SealfnError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write models into {args.directory}: {exc}", file=sys.stderr)
        return 1
    for example in examples.values():
        size_mb = example.path.stat().st_size / 1e6  # megabytes (10^6 bytes)
        print(f"{example.name}\t{example.path}\t{size_mb:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
