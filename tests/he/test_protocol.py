from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sealfn.config import FunctionSpec
from sealfn.errors import ConfigError, InvalidInput, ModelError, NotFound, PayloadTooLarge
from sealfn.he.graph import NetGraph
from sealfn.he.keystore import KeyStore
from sealfn.he.protocol import HeMessage, Kind, Requirements, check_key_id, peek_key_id

KEY = "ab" * 32


def test_message_round_trip_and_peek() -> None:
    message = HeMessage(Kind.REQUEST, KEY, b"\x00ciphertext")
    data = message.to_bytes()
    assert HeMessage.from_bytes(data, Kind.REQUEST) == message
    assert peek_key_id(data) == KEY


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: b"XXXX" + d[4:], "not an HE message"),
        (lambda d: d[:4] + b"\x09" + d[5:], "version 9"),
        (lambda d: d[:5] + b"\x02" + d[6:], "expected an HE request"),
        (lambda d: d[:30], "not an HE message"),
    ],
)
def test_malformed_messages(mutate: object, error: str) -> None:
    data = HeMessage(Kind.REQUEST, KEY, b"payload").to_bytes()
    with pytest.raises(InvalidInput, match=error):
        HeMessage.from_bytes(mutate(data), Kind.REQUEST)  # type: ignore[operator]


@pytest.mark.parametrize("bad", ["", "AB" * 32, "ab" * 31, "../" + "a" * 61, "g" * 64])
def test_key_ids_are_lowercase_sha256_hex(bad: str) -> None:
    with pytest.raises(InvalidInput):
        check_key_id(bad)


def test_requirements_round_trip() -> None:
    needs = Requirements(width=256, inputs=64, outputs=10, depth=6, rotations=66)
    assert Requirements.from_dict(needs.to_dict()) == needs
    with pytest.raises(InvalidInput, match="malformed"):
        Requirements.from_dict({"width": 1})


def test_key_store_streams_hashes_and_bounds(tmp_path: Path) -> None:
    import hashlib

    store = KeyStore(tmp_path)
    chunks = [b"a" * 1000, b"b" * 500]
    key_id = asyncio.run(store.save(_stream(chunks), limit=2000))
    assert key_id == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert store.path(key_id).read_bytes() == b"".join(chunks)
    with pytest.raises(PayloadTooLarge):
        asyncio.run(store.save(_stream(chunks), limit=1200))
    with pytest.raises(InvalidInput, match="must be the evaluation keys"):
        asyncio.run(store.save(_stream([]), limit=10))
    assert sorted(p.name for p in store.root.iterdir()) == [key_id]  # no partial files left
    store.delete(key_id)
    with pytest.raises(NotFound, match="not uploaded"):
        store.path(key_id)


def test_spec_he_excludes_sealed_and_group() -> None:
    assert FunctionSpec("f", he=True).he
    with pytest.raises(ConfigError, match="excludes"):
        FunctionSpec("f", he=True, group="g")
    with pytest.raises(ConfigError, match="must be true or false"):
        FunctionSpec("f", he="yes")  # type: ignore[arg-type]


def test_graph_file_rejects_garbage() -> None:
    with pytest.raises(ModelError, match="not an HE network"):
        NetGraph.from_bytes(b"PK\x03\x04 not really")


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
