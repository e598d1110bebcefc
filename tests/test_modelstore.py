"""The model store: one contract for all backends, plus local atomicity and fsspec's setup."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealfn.errors import ConfigError, ModelError, NotFound
from sealfn.modelstore import (
    DIGEST_SIZE,
    FsspecModelStore,
    LocalModelStore,
    ModelStore,
    blob_digest,
    check_model_id,
    open_store,
    write_atomic,
)
from sealfn.sealed_model import generate_model_key, open_model, seal_model


def _have_fsspec() -> bool:
    try:
        importlib.import_module("fsspec")
    except ImportError:
        return False
    return True


HAVE_FSSPEC = _have_fsspec()
NO_FSSPEC = "fsspec is an optional extra and is not installed here"


def _memory_store() -> Iterator[FsspecModelStore]:
    if not HAVE_FSSPEC:
        pytest.skip(NO_FSSPEC)
    url = f"memory://sealfn-tests/{uuid.uuid4().hex}"
    store = FsspecModelStore(url)
    yield store
    if store._fs.exists(store._root):  # the memory file system is process-wide: clean it
        store._fs.rm(store._root, recursive=True)


@pytest.fixture(params=["local", "fsspec-memory", "fsspec-file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelStore]:
    if request.param == "local":
        yield LocalModelStore(tmp_path / "store")
    elif request.param == "fsspec-memory":
        yield from _memory_store()
    else:  # fsspec's own local file system: the same code path as s3:// and friends
        if not HAVE_FSSPEC:
            pytest.skip(NO_FSSPEC)
        yield FsspecModelStore((tmp_path / "store").as_uri())


# ---- the contract every ModelStore keeps -------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00", os.urandom(100_000)], ids=["empty", "1B", "100kB"])
def test_put_get_round_trip_with_digest(store: ModelStore, data: bytes) -> None:
    digest = store.put("model-a", data)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest() == blob_digest(data)
    assert store.get("model-a") == data
    assert store.exists("model-a")


def test_put_replaces(store: ModelStore) -> None:
    store.put("m", b"old")
    assert store.put("m", b"new") == blob_digest(b"new")
    assert store.get("m") == b"new"
    assert store.list() == ["m"]


def test_list_is_sorted_and_delete_removes(store: ModelStore) -> None:
    assert store.list() == []
    for model_id in ["zeta", "alpha", "m_1.v2", "B-7"]:
        store.put(model_id, model_id.encode())
    assert store.list() == ["B-7", "alpha", "m_1.v2", "zeta"]
    store.delete("alpha")
    assert not store.exists("alpha")
    assert store.list() == ["B-7", "m_1.v2", "zeta"]


def test_missing_models_are_not_found(store: ModelStore) -> None:
    assert not store.exists("ghost")
    with pytest.raises(NotFound, match="'ghost'"):
        store.get("ghost")
    with pytest.raises(NotFound, match="'ghost'"):
        store.delete("ghost")


def test_bytes_like_data_is_stored(store: ModelStore) -> None:
    """The protocol promises bytes; both backends also take any byte buffer without a copy."""
    assert store.put("m", memoryview(b"abc")) == blob_digest(b"abc")  # type: ignore[arg-type]
    assert store.put("n", bytearray(b"xyz")) == blob_digest(b"xyz")  # type: ignore[arg-type]
    assert (store.get("m"), store.get("n")) == (b"abc", b"xyz")


def test_a_sealed_model_survives_the_store(store: ModelStore) -> None:
    key, weights = generate_model_key(), os.urandom(50_000)
    store.put("resnet", seal_model(weights, key, "resnet", chunk_size=4096))
    assert open_model(store.get("resnet"), key, "resnet") == weights


UNSAFE_IDS = [
    "",
    ".",
    "..",
    "../escape",
    "a/../../escape",
    "/etc/passwd",
    "a/b",
    "a\\b",
    ".hidden",
    "-flag",
    "a b",
    "a\x00b",
    "a\nb",
    "mödel",
    "x" * 129,
    "c:evil",
]


@pytest.mark.parametrize("model_id", UNSAFE_IDS)
def test_unsafe_model_ids_are_rejected(store: ModelStore, model_id: str) -> None:
    for call in (
        lambda: store.put(model_id, b"data"),
        lambda: store.get(model_id),
        lambda: store.exists(model_id),
        lambda: store.delete(model_id),
    ):
        with pytest.raises(ConfigError, match="is not allowed"):
            call()
    assert store.list() == []


def test_bad_argument_types_raise_type_error(store: ModelStore) -> None:
    with pytest.raises(TypeError):
        store.put(b"m", b"data")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put("m", "data")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.get(None)  # type: ignore[arg-type]


def test_check_model_id_accepts_safe_names() -> None:
    for model_id in ["a", "resnet-18", "bert_base.v2", "A" * 128, "0"]:
        assert check_model_id(model_id) == model_id


# ---- local files -------------------------------------------------------------------------------


def test_local_store_layout_and_corruption(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    store.put("m", b"sealed bytes")
    path = tmp_path / "m.sealed"
    raw = path.read_bytes()
    assert raw == hashlib.sha256(b"sealed bytes").digest() + b"sealed bytes"
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ModelError, match="'m' in the store is corrupt"):
        store.get("m")
    path.write_bytes(raw[: DIGEST_SIZE - 1])  # a file shorter than its digest
    with pytest.raises(ModelError, match="corrupt"):
        store.get("m")
    path.write_bytes(raw + b"extra")
    with pytest.raises(ModelError, match="corrupt"):
        store.get("m")


def test_local_store_ignores_temporary_and_foreign_files(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    store.put("real", b"x")
    (tmp_path / ".real.sealed.abc.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "dir.sealed").mkdir()
    assert store.list() == ["real"]


def test_local_store_writes_nothing_outside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalModelStore(root)
    with pytest.raises(ConfigError):
        store.put("../outside", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    write_atomic(target, [b"old"])

    def failing() -> Iterator[bytes]:
        yield b"new, half"
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError, match="source died"):
        write_atomic(target, failing())
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["blob"]


def test_local_store_rejects_a_non_path_root() -> None:
    with pytest.raises(TypeError):
        LocalModelStore(42)  # type: ignore[arg-type]


# ---- open_store --------------------------------------------------------------------------------


def test_open_store_maps_paths_and_file_urls_to_local(tmp_path: Path) -> None:
    for spec in (str(tmp_path), tmp_path, f"file://{tmp_path}", f"file://localhost{tmp_path}"):
        store = open_store(spec)
        assert isinstance(store, LocalModelStore)
        assert store.root == tmp_path
    spaced = tmp_path / "with space"
    store = open_store(f"file://{str(spaced).replace(' ', '%20')}")
    assert isinstance(store, LocalModelStore) and store.root == spaced


def test_open_store_rejects_remote_file_urls() -> None:
    with pytest.raises(ConfigError, match="local path"):
        open_store("file://otherhost/models")


def test_open_store_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        open_store(3)  # type: ignore[arg-type]


def test_other_schemes_need_fsspec_and_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # makes `import fsspec` fail, as if absent
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    with pytest.raises(ConfigError, match="pip install fsspec"):
        open_store("s3://bucket/models")


@pytest.mark.skipif(not HAVE_FSSPEC, reason=NO_FSSPEC)
def test_open_store_gives_fsspec_for_other_schemes() -> None:
    url = f"memory://sealfn-tests/{uuid.uuid4().hex}"
    store = open_store(url)
    assert isinstance(store, FsspecModelStore)
    store.put("m", b"x")
    assert open_store(url).get("m") == b"x"
    store.delete("m")


@pytest.mark.skipif(not HAVE_FSSPEC, reason=NO_FSSPEC)
def test_fsspec_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no-such-scheme"):
        FsspecModelStore("no-such-scheme://x/y")


@pytest.mark.skipif(not HAVE_FSSPEC, reason=NO_FSSPEC)
def test_fsspec_store_detects_corruption() -> None:
    for store in _memory_store():
        store.put("m", b"sealed bytes")
        path = f"{store._root}/m.sealed"
        raw: bytes = store._fs.cat_file(path)
        store._fs.pipe_file(path, raw[:-1] + bytes([raw[-1] ^ 1]))
        with pytest.raises(ModelError, match="corrupt"):
            store.get("m")
