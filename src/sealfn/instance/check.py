"""`python -m sealfn.instance.check MODEL`: can an instance load this model? Exit 0 or 1 + why."""

from __future__ import annotations

import sys
from pathlib import Path

from sealfn.errors import ModelError
from sealfn.instance.models import ModelHost


def main(argv: list[str]) -> int:
    try:
        ModelHost(intra_op_threads=1).load("check", Path(argv[0]))
    except ModelError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
