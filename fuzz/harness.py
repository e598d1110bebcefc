"""One atheris (libFuzzer) run of one target: ``python harness.py TARGET [libFuzzer flags]``."""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["sealfn"]):  # coverage feedback from our code only
    from targets import TARGETS

TARGET = TARGETS[sys.argv.pop(1)]


def one_input(data: bytes) -> None:
    # The documented refusal is fine; anything else propagates and is reported as a crash.
    with contextlib.suppress(*TARGET.allowed):
        TARGET.run(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
