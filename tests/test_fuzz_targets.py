"""The coverage-guided fuzz targets (fuzz/targets.py, run by `make fuzz`) stay runnable: each
accepts its seeds and refuses a corrupted seed only in its documented way."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from targets import TARGETS

AUTHENTICATED = {"envelope", "session", "sealed_model"}  # any change to these is refused


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_accepted_and_corruption_is_refused_cleanly(name: str) -> None:
    target = TARGETS[name]
    assert target.seeds
    for seed in target.seeds:
        target.run(seed)
        corrupted = bytearray(seed)
        corrupted[len(corrupted) // 2] ^= 0x5A
        refusal = pytest.raises(target.allowed) if name in AUTHENTICATED else None
        with refusal or contextlib.suppress(*target.allowed):
            target.run(bytes(corrupted))


DEEP = b'{"v": 1, "endpoints": ' + b"[" * 100_000 + b"\n"
FOUND = [  # each raised a foreign exception before its fix (found fuzzing, or reading the parsers)
    ("collective_payload", b"\x01\x01\x03,f8" + b"\x00" * 7 + b"\x0c@"),  # SyntaxError from numpy
    ("batch_result", b"\x01\x03\x00\x00\x00\x01\x00\x01\x00y\x0f" + b"\x00" * 7
     + b"\x01\x01\x03<07\x00" + b"\x00" * 8),  # numpy dtype "<07": SyntaxError
    ("batch_result", bytes.fromhex(  # a lying length: struct's OverflowError at the next output
        "010300000000020100792f000000000000000101033c663402020000000000000003000000000000"
        "00000000000000803f0000004000004040000080400000a04004006d61736b110000000000fff801"
        "01037c62310102000000000000000100"
    )),
    ("rendezvous", b'{"v": 1, "endpoints": [[["h", 1e9999], "", ""]]}\n'),  # int(inf)
    ("rendezvous", b'{"v": 1, "group": "g", "rank": 1e999, "size": 2, '
     b'"endpoint": [["h", 1], "", ""]}\n'),
    ("rendezvous", DEEP),  # RecursionError
    ("batch_control", b'{"v": 1, "round": 2, "group": "j", "rendezvous": ["h", 1], '
     b'"rank": 11e999, "size": 3, "partitions": [], "final": false}\n'),
    ("batch_control", b'{"v": 1, "kind": "loaded", "instance": "i", "partition": 0, '
     b'"computed": true, "started": 1' + b"0" * 400 + b', "finished": 0, "ok": true, '
     b'"loads": 0, "detail": ""}\n'),  # float(10**400)
]  # fmt: skip


def _frame(meta: bytes, payload: bytes = b"") -> bytes:
    from sealfn.ipc.frames import HEADER, VERSION, Kind

    return HEADER.pack(VERSION, Kind.RESULT, 0, 1, len(meta)) + meta + payload


FOUND += [
    ("worker_reply", _frame(b'{"results": [["0", "<f4", [1], 0, 1e999, 4]]}', b"\x00" * 4)),
    ("worker_reply", _frame(b"[" * 100_000)),  # RecursionError in the frame's meta
    ("worker_reply", _frame(b'{"results": [["0", "4f<", [1], 0, 0, 4]]}', b"\x00" * 4)),  # numpy
    ("worker_reply", _frame(b'{"results": [["0", ",f4", [1], 0, 0, 4]]}', b"\x00" * 4)),
]


@pytest.mark.parametrize(
    ("name", "data"), FOUND, ids=[f"{n}-{i}" for i, (n, _) in enumerate(FOUND)]
)
def test_inputs_the_fuzzers_found_are_refused_cleanly(name: str, data: bytes) -> None:
    target = TARGETS[name]
    with pytest.raises(target.allowed) as refused:
        target.run(data)
    assert any(word in str(refused.value) for word in ("malformed", "truncated", "dtype"))
