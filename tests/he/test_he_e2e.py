"""An HE function served by a real `sealfn serve`: keys uploaded once, ciphertexts in and out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from sealfn.errors import ModelError, NotFound
from sealfn.he.client import HeClient
from sealfn.he.data import Split
from sealfn.he.networks import Net
from sealfn.he.plan import Plan, requirements
from sealfn.he.protocol import CONTENT_TYPE, HeMessage, Kind
from sealfn.he.tenseal_backend import TensealKeys
from sealfn_testing import Server

LOGIT_TOLERANCE = 1e-2


@pytest.fixture
def he_function(he_net: Net, tmp_path: Path, deploy: Callable[..., str]) -> str:
    model = tmp_path / "digits.he"
    model.write_bytes(he_net.graph().to_bytes())
    return deploy(model, he=True, max_instances=1)


def test_encrypted_inference_through_the_gateway(
    server: Server, he_function: str, he_plan: Plan, keys: TensealKeys, data: Split
) -> None:
    with HeClient(server.url) as client:
        needs = client.requirements(he_function)
        assert needs == requirements(he_plan)
        with pytest.raises(NotFound, match="not uploaded"):
            client.infer(he_function, keys, data.x_test[0], needs)
        key_id = client.upload_keys(keys)
        assert key_id == keys.key_id
        assert client.upload_keys(keys) == key_id  # already there: not sent again
        batch = data.x_test[:3]
        got = np.stack([client.infer(he_function, keys, x, needs) for x in batch])
    expected = np.stack([he_plan.run_plain(x) for x in batch])
    assert np.abs(got - expected).max() < LOGIT_TOLERANCE
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_he_function_refuses_plain_and_malformed_requests(
    server: Server, he_function: str, keys: TensealKeys
) -> None:
    url = f"{server.url}/v2/models/{he_function}/infer"
    plain = httpx.post(url, json={"inputs": []})
    assert plain.status_code == 400 and CONTENT_TYPE in plain.json()["error"]
    junk = httpx.post(url, content=b"junk" * 20, headers={"content-type": CONTENT_TYPE})
    assert junk.status_code == 400 and "not an HE message" in junk.json()["error"]
    with HeClient(server.url) as client:
        client.upload_keys(keys)
    garbage = HeMessage(Kind.REQUEST, keys.key_id, b"\x01" * 64).to_bytes()
    bad = httpx.post(url, content=garbage, headers={"content-type": CONTENT_TYPE}, timeout=120)
    assert bad.status_code == 400 and "does not match" in bad.json()["error"]


def test_key_store_endpoints(server: Server) -> None:
    with HeClient(server.url) as client, pytest.raises(NotFound, match="not deployed"):
        client.requirements("no-such-function")
    missing = httpx.get(f"{server.url}/v2/he/keys/{'0' * 64}")
    assert missing.status_code == 404 and "not uploaded" in missing.json()["error"]
    for bad in ("ABC", "0" * 63 + "g", "a" * 65):
        reply = httpx.get(f"{server.url}/v2/he/keys/{bad}")
        assert reply.status_code == 400 and "not a hex SHA-256" in reply.json()["error"]
    empty = httpx.put(f"{server.url}/v2/he/keys", content=b"")
    assert empty.status_code == 400


def test_deploy_refuses_a_file_that_is_not_an_he_network(
    tmp_path: Path, deploy: Callable[..., str]
) -> None:
    bogus = tmp_path / "bogus.he"
    bogus.write_bytes(b"\x08\x07 not a network")
    with pytest.raises(ModelError, match="not an HE network"):
        deploy(bogus, he=True)
