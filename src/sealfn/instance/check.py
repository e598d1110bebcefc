"""`python -m sealfn.instance.check MODEL [--host-optimized]`: can an instance load this model?
Exit 0 or 1 + why. With ``--host-optimized`` it also builds the model's host-optimized copy
(`sealfn.instance.hostopt`) at deploy time, so no instance pays for it on a request's path."""

from __future__ import annotations

import sys
from pathlib import Path

from sealfn.errors import ModelError
from sealfn.instance.models import ModelHost


def main(argv: list[str]) -> int:
    optimize = "--host-optimized" in argv[1:]
    try:
        ModelHost(intra_op_threads=1, host_optimized=optimize).load("check", Path(argv[0]))
    except ModelError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
