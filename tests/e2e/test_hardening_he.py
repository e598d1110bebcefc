"""Hostile HE traffic against a running gateway: evaluation keys and ciphertexts from anyone.

Anyone may upload evaluation keys (``PUT /v2/he/keys``) and name them in a request; the instance
then hands the bytes to TenSEAL/SEAL. Junk, truncated, bit-flipped or secret-bearing keys, and
mutated ciphertexts, must each end in a 2xx or a 4xx naming the problem; never a 5xx, and never a
crash of the instance (the one that saw them still serves a correct encrypted inference).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sealfn_testing import assert_clean_refusal

pytest.importorskip("tenseal")

from sealfn.he.client import HeClient
from sealfn.he.graph import tiny
from sealfn.he.params import choose
from sealfn.he.plan import Plan, compile_graph, cost
from sealfn.he.protocol import CONTENT_TYPE, FUNCTIONS_PATH, KEYS_PATH, HeMessage, Kind
from sealfn.he.tenseal_backend import TensealBackend, TensealKeys

if TYPE_CHECKING:
    from sealfn_testing import Server

NAME = "hardening-he"
FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HE_HEADERS = {"content-type": CONTENT_TYPE}
CHUNK = 1 << 16  # bytes per chunk sent to the streamed endpoint


@dataclass(frozen=True)
class HeFunction:
    http: httpx.Client
    plan: Plan
    keys: TensealKeys
    request: bytes  # a valid request body: one encrypted image under ``keys``

    def infer(self, body: bytes, streamed: bool = False) -> httpx.Response:
        """POST ``body`` whole to the gateway's buffered endpoint, or in 64 KiB chunks (no
        content-length) to the streamed one, which spools it and peeks at the key id early."""
        if not streamed:
            return self.http.post(f"/v2/models/{NAME}/infer", content=body, headers=HE_HEADERS)
        chunks = (body[i : i + CHUNK] for i in range(0, len(body), CHUNK))
        return self.http.post(f"{FUNCTIONS_PATH}/{NAME}/infer", content=chunks, headers=HE_HEADERS)

    def instance_pids(self, server: Server) -> list[int]:
        described = server.client.status()["functions"]
        return [i["pid"] for f in described if f["name"] == NAME for i in f["instance_list"]]


@pytest.fixture(scope="module")
def he(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeFunction]:
    """A tiny HE network (seeded, untrained: 1-channel stem conv + linear head, depth 2, so
    N=8192) and a user's keys for it, uploaded."""
    graph = tiny(0)
    model = tmp_path_factory.mktemp("he") / "tiny.he"
    model.write_bytes(graph.to_bytes())
    server.client.deploy(NAME, model, he=True, max_instances=1, keep_alive_s=3600)
    plan = compile_graph(graph)
    keys = TensealBackend().keygen(choose(cost(plan).depth, plan.width))
    with HeClient(server.url) as client:
        client.upload_keys(keys)
    x = np.linspace(0, 1, 64).reshape(1, 8, 8)
    ciphertext = TensealBackend().encrypt(keys, x, plan.width)
    request = HeMessage(Kind.REQUEST, keys.key_id, ciphertext).to_bytes()
    with httpx.Client(base_url=server.url, timeout=120) as http:
        function = HeFunction(http, plan, keys, request)
        assert function.infer(request).status_code == 200  # warm: one instance, keys loaded
        pids = function.instance_pids(server)
        yield function
        _assert_still_serving(function, server, pids)
    server.client.undeploy(NAME)


def _assert_still_serving(he: HeFunction, server: Server, pids: list[int]) -> None:
    """The instance that saw every hostile body is alive and answers correctly."""
    assert he.instance_pids(server) == pids, "the HE instance was replaced (it crashed)"
    x = np.random.default_rng(3).random((1, 8, 8))
    with HeClient(server.url) as client:
        got = client.infer(NAME, he.keys, x, client.requirements(NAME))
    assert np.abs(got - he.plan.run_plain(x)).max() < 1e-2


def _mutate(data: bytes, cut: int | None, flips: list[tuple[int, int]]) -> bytes:
    """``data`` cut short (``cut`` None: whole) with bytes XOR-flipped."""
    mutated = bytearray(data if cut is None else data[: max(1, cut % (len(data) + 1))])
    for at, value in flips:
        mutated[at % len(mutated)] ^= value or 1
    return bytes(mutated)


def _secret_context(keys: TensealKeys) -> bytes:
    return bytes(keys.context.serialize(save_secret_key=True, save_galois_keys=True))


flips = st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4)
cuts = st.none() | st.integers(min_value=0)
key_bodies = st.one_of(
    st.binary(min_size=1, max_size=256),  # junk
    st.tuples(cuts, flips).map(lambda t: ("real", *t)),  # the real keys, cut and/or flipped
    st.just("secret"),  # a context that holds the secret key
)


@FUZZ
@given(body=key_bodies, streamed=st.booleans())
def test_hostile_evaluation_keys(he: HeFunction, body: Any, streamed: bool) -> None:
    if body == "secret":
        data = _secret_context(he.keys)
    elif isinstance(body, tuple):
        data = _mutate(he.keys.evaluation_keys(), body[1], body[2])
    else:
        data = body
    uploaded = he.http.put(KEYS_PATH, content=data)
    assert_clean_refusal(uploaded)
    event(f"upload {uploaded.status_code}")
    if uploaded.status_code >= 400:
        return
    key_id = uploaded.json()["key_id"]
    if key_id == he.keys.key_id:
        return  # the mutation changed nothing: these are the real keys
    request = HeMessage.from_bytes(he.request, Kind.REQUEST)
    reply = he.infer(HeMessage(Kind.REQUEST, key_id, request.ciphertext).to_bytes(), streamed)
    assert_clean_refusal(reply)
    event(f"keys uploaded, then inference {reply.status_code}")
    if body == "secret":
        assert reply.status_code == 400 and "secret key" in reply.json()["error"]
    he.http.delete(f"{KEYS_PATH}/{key_id}")


@FUZZ
@given(cut=cuts, flips=flips, extra=st.binary(max_size=64), streamed=st.booleans())
def test_hostile_ciphertexts(
    he: HeFunction, cut: int | None, flips: list[tuple[int, int]], extra: bytes, streamed: bool
) -> None:
    header = len(he.request) - len(HeMessage.from_bytes(he.request, Kind.REQUEST).ciphertext)
    ciphertext = _mutate(he.request[header:], cut, flips) + extra
    reply = he.infer(he.request[:header] + ciphertext, streamed)
    assert_clean_refusal(reply)
    event(f"ciphertext: {reply.status_code}")
    if reply.status_code == 200:
        assert HeMessage.from_bytes(reply.content, Kind.REPLY).key_id == he.keys.key_id


@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
def test_bodies_that_are_not_requests_for_uploaded_keys(he: HeFunction, streamed: bool) -> None:
    unknown = he.infer(b"SFHE" + bytes([1, 1]) + b"\x00" * 40, streamed)  # keys never uploaded
    assert unknown.status_code == 404 and "not uploaded" in unknown.json()["error"]
    reply = he.infer(he.request[:5] + bytes([Kind.REPLY.value]) + he.request[6:], streamed)
    assert reply.status_code == 400 and "expected an HE request" in reply.json()["error"]
    for short in (b"", b"SFHE", he.request[:38]):  # no whole header, or nothing after it
        refused = he.infer(short, streamed)
        assert refused.status_code == 400 and "not an HE message" in refused.json()["error"]
    path = f"{FUNCTIONS_PATH}/{NAME}/infer" if streamed else f"/v2/models/{NAME}/infer"
    plain = he.http.post(path, json={"inputs": []})
    assert plain.status_code == 400 and CONTENT_TYPE in plain.json()["error"]
