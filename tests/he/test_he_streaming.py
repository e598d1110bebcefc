"""Streamed HE requests: spooled to memory then disk, bounded, refused cleanly when bad or cut
short, replies sent in chunks; the server keeps serving throughout."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from sealfn.errors import PayloadTooLarge, StorageError
from sealfn.he.client import HeClient
from sealfn.he.data import Split
from sealfn.he.networks import Net
from sealfn.he.plan import Plan
from sealfn.he.protocol import CONTENT_TYPE, INFER_PATH, HeMessage, Kind
from sealfn.he.spool import SPOOL_DIR, Spool
from sealfn.he.tenseal_backend import TensealBackend, TensealKeys
from sealfn_testing import Server, launch, stop_cleanly

LIMIT = 1 << 20  # max_body_bytes of the server below: a 0.47 MB ciphertext fits, 2 MiB does not
SPILL = 64 << 10  # he_spool_memory_bytes: every real ciphertext goes through a temp file


def test_spool_keeps_small_bodies_in_memory(tmp_path: Path) -> None:
    with Spool(limit=100, memory_bytes=10, folder=tmp_path) as spool:
        spool.write(b"abc")
        spool.write(b"defg")
        assert spool.in_memory and spool.head(2) == b"ab"
        view = spool.array()
        assert bytes(view) == b"abcdefg" and not view.flags.writeable


def test_spool_spills_to_an_unlinked_file_past_the_threshold(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes()
    with Spool(limit=10_000, memory_bytes=1000, folder=tmp_path) as spool:
        for start in range(0, len(data), 700):
            spool.write(data[start : start + 700])
        assert not spool.in_memory
        assert spool.head(10) == data[:10]
        assert bytes(spool.array()) == data
        assert list(tmp_path.iterdir()) == []  # anonymous: nothing to clean up after a crash


def test_spool_refuses_past_its_limit(tmp_path: Path) -> None:
    with Spool(limit=8, memory_bytes=4, folder=tmp_path) as spool:
        spool.write(b"12345678")
        with pytest.raises(PayloadTooLarge, match="exceeds the 8-byte limit"):
            spool.write(b"9")


def test_spool_on_a_full_disk_is_a_storage_error(tmp_path: Path) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full")
    with Spool(limit=1 << 20, memory_bytes=0, folder=tmp_path) as spool:
        spool._file = full.open("wb", buffering=0)  # every write: ENOSPC
        with pytest.raises(StorageError, match="cannot spool the HE request"):
            spool.write(b"x" * 10)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SEALFN_HE_SPOOL_MEMORY_BYTES": str(SPILL), "SEALFN_MAX_BODY_BYTES": str(LIMIT)}
    server = launch(tmp_path_factory.mktemp("he-stream") / "state", env)
    yield server
    stop_cleanly(server)


@pytest.fixture(scope="module")
def function(small_server: Server, he_net: Net, tmp_path_factory: pytest.TempPathFactory) -> str:
    model = tmp_path_factory.mktemp("he-net") / "digits.he"
    model.write_bytes(he_net.graph().to_bytes())
    small_server.client.deploy("streamed", model, he=True, max_instances=1)
    return "streamed"


@pytest.fixture(scope="module")
def uploaded(small_server: Server, keys: TensealKeys) -> TensealKeys:
    with HeClient(small_server.url) as client:
        client.upload_keys(keys)
    return keys


def _post(server: Server, function: str, content: object, **headers: str) -> httpx.Response:
    url = server.url + INFER_PATH.format(name=function)
    return httpx.post(
        url, content=content, headers={"content-type": CONTENT_TYPE, **headers}, timeout=120
    )


def _infer_ok(server: Server, function: str, keys: TensealKeys, plan: Plan, data: Split) -> None:
    with HeClient(server.url) as client:
        needs = client.requirements(function)
        got = np.stack([client.infer(function, keys, x, needs) for x in data.x_test[:2]])
    expected = np.stack([plan.run_plain(x) for x in data.x_test[:2]])
    assert np.abs(got - expected).max() < 1e-2


def test_streamed_inference_through_a_spool_file(
    small_server: Server, function: str, uploaded: TensealKeys, he_plan: Plan, data: Split
) -> None:
    _infer_ok(small_server, function, uploaded, he_plan, data)
    assert list((small_server.state_dir / SPOOL_DIR).iterdir()) == []
    assert "Traceback" not in small_server.log()


def _request(keys: TensealKeys, plan: Plan, data: Split) -> bytes:
    ciphertext = TensealBackend().encrypt(keys, data.x_test[0], plan.width)
    return HeMessage(Kind.REQUEST, keys.key_id, ciphertext).to_bytes()


def test_the_reply_is_streamed_with_its_length(
    small_server: Server, function: str, uploaded: TensealKeys, he_plan: Plan, data: Split
) -> None:
    body = _request(uploaded, he_plan, data)
    url = small_server.url + INFER_PATH.format(name=function)
    headers = {"content-type": CONTENT_TYPE}
    with httpx.stream("POST", url, content=iter([body]), headers=headers, timeout=120) as reply:
        chunks = list(reply.iter_raw())
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"] == CONTENT_TYPE
        assert int(reply.headers["content-length"]) == sum(map(len, chunks))
    reply_message = HeMessage.from_bytes(b"".join(chunks), Kind.REPLY)
    assert reply_message.key_id == uploaded.key_id


def test_a_body_over_the_limit_is_413_declared_or_not(
    small_server: Server, function: str, uploaded: TensealKeys
) -> None:
    big = HeMessage(Kind.REQUEST, uploaded.key_id, b"\x00" * (2 * LIMIT)).to_bytes()
    declared = _post(small_server, function, big)
    assert declared.status_code == 413
    assert declared.json()["error"] == (
        f"the HE request of {len(big)} bytes exceeds the {LIMIT}-byte limit (max_body_bytes)"
    )
    chunked = _post(small_server, function, (big[i : i + 65536] for i in range(0, len(big), 65536)))
    assert chunked.status_code == 413
    assert (
        chunked.json()["error"] == f"the HE request exceeds the {LIMIT}-byte limit (max_body_bytes)"
    )
    with HeClient(small_server.url) as client, pytest.raises(PayloadTooLarge, match="1048576"):
        client._post_streamed(function, big)


def test_bad_bodies_are_clean_400s_and_unknown_keys_404(
    small_server: Server, function: str, uploaded: TensealKeys, he_plan: Plan, data: Split
) -> None:
    junk = _post(small_server, function, b"junk" * 100)
    assert junk.status_code == 400 and "not an HE message" in junk.json()["error"]
    head_only = HeMessage(Kind.REQUEST, uploaded.key_id, b"x").to_bytes()[:-1]
    assert _post(small_server, function, head_only).status_code == 400
    wrong_type = _post(small_server, function, b"x" * 64, **{"content-type": "application/json"})
    assert wrong_type.status_code == 400 and CONTENT_TYPE in wrong_type.json()["error"]
    unknown = HeMessage(Kind.REQUEST, "0" * 64, b"\x01" * 300_000).to_bytes()
    missing = _post(small_server, function, unknown)
    assert missing.status_code == 404 and "not uploaded" in missing.json()["error"]
    whole = _request(uploaded, he_plan, data)
    refused = _post(small_server, function, whole[: len(whole) // 2])
    assert refused.status_code == 400 and "does not match" in refused.json()["error"]
    assert _post(small_server, "no-such-function", junk.content).status_code == 404


def test_a_client_that_hangs_up_mid_body_does_not_hurt_the_server(
    small_server: Server,
    function: str,
    uploaded: TensealKeys,
    he_plan: Plan,
    data: Split,
) -> None:
    address = urlsplit(small_server.url)
    head = HeMessage(Kind.REQUEST, uploaded.key_id, b"\x01" * 100_000).to_bytes()[:70_000]
    request = (
        f"POST {INFER_PATH.format(name=function)} HTTP/1.1\r\nhost: x\r\n"
        f"content-type: {CONTENT_TYPE}\r\ncontent-length: 100038\r\n\r\n"
    ).encode()
    for _ in range(3):
        with socket.create_connection((address.hostname, address.port)) as raw:
            raw.sendall(request + head)  # then close: 30,000 bytes short
    _infer_ok(small_server, function, uploaded, he_plan, data)
    assert list((small_server.state_dir / SPOOL_DIR).iterdir()) == []
    assert "Traceback" not in small_server.log()
