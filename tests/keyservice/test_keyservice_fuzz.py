"""Property-based fuzzing of the KeyService HTTP API.

Hostile paths, headers and bodies, unsigned or validly signed by a registered owner: every
answer is a 2xx or a 4xx with a JSON ``error`` message, never a 5xx; rejected calls write
nothing to the store; the service keeps serving.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keyservice_harness import MODEL, Harness, serve

from sealfn.keyservice.app import create_app
from sealfn.keyservice.auth import PRINCIPAL_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from sealfn_testing import assert_clean_refusal

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ROUTES = [
    ("POST", "/v1/principals"),
    ("POST", "/v1/models/{m}/key"),
    ("GET", "/v1/models/{m}/public-key"),
    ("PUT", "/v1/models/{m}/grants/{u}"),
    ("DELETE", "/v1/models/{m}/grants/{u}"),
    ("POST", "/v1/attest/challenge"),
    ("POST", "/v1/attest/release"),
    ("POST", "/v1/attest/renew"),
    ("GET", "/attestation"),
]
FIELDS = ["name", "kind", "public_key", "sealed_key", "suite", "measurements", "evidence"]
FIELDS += ["nonce", "model_ids", "session_id", "timestamp_ms", "mac"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
bodies = (
    st.binary(max_size=256)
    | st.dictionaries(st.sampled_from(FIELDS), json_values).map(lambda d: json.dumps(d).encode())
    | st.just(b"[" * 3000)  # past the JSON decoder's recursion limit
)
# Any text as a path segment, percent-encoded as a client must send it.
segments = (
    st.text(min_size=1, max_size=40)
    .map(lambda s: quote(s, safe=""))
    .filter(lambda s: s not in {".", ".."})
)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    ks = Harness(tmp_path_factory.mktemp("ks-fuzz"))
    ks.deploy()
    yield ks
    ks.service.close()


@pytest.fixture(scope="module")
def http(harness: Harness) -> Iterator[httpx.Client]:
    app = create_app(harness.service, max_body_bytes=64 << 10, clock=harness.clock)
    with serve(app) as url, httpx.Client(base_url=url) as client:
        yield client


def _rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    model=st.just(MODEL) | segments,
    user=st.just("alice") | segments,
    body=bodies,
    headers=st.dictionaries(
        st.sampled_from([PRINCIPAL_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=90).map(
            str.strip  # what an HTTP client can send: no surrounding whitespace
        ),
    ),
    query=st.none() | st.text(max_size=70),
)
def test_unsigned_hostile_calls_are_refused_and_write_nothing(
    *,
    harness: Harness,
    http: httpx.Client,
    route: tuple[str, str],
    model: str,
    user: str,
    body: bytes,
    headers: dict[str, str],
    query: str | None,
) -> None:
    before = _rows(harness.db)
    method, template = route
    path = template.format(m=model, u=user)
    params = {"nonce": query} if query is not None else None
    assert_clean_refusal(http.request(method, path, content=body, headers=headers, params=params))
    if method != "POST" or template != "/v1/attest/challenge":
        assert _rows(harness.db) == before  # a refused or read-only call changes no table


@FUZZ
@given(
    route=st.sampled_from([r for r in ROUTES if r[0] != "GET"]),
    user=st.just("bob") | segments,
    body=bodies,
)
def test_signed_hostile_bodies_get_a_clear_4xx(
    harness: Harness, http: httpx.Client, route: tuple[str, str], user: str, body: bytes
) -> None:
    method, template = route
    path = template.format(m=MODEL, u=user)
    call = harness.owner.sign(method, path, body, now=harness.clock())
    reply = http.request(method, path, content=body, headers=call.headers())
    assert_clean_refusal(reply)


def test_unknown_routes_answer_in_json(http: httpx.Client) -> None:
    reply = http.put("/v1/models/m/grants/a%2Fb", content=b"{}")
    assert reply.status_code == 404
    assert reply.json()["error"] == "no such endpoint: PUT /v1/models/m/grants/a/b"


def test_still_serving_after_the_fuzzing(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
