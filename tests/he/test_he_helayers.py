"""The optional HElayers backend: never imported unless chosen, its key generation in a child
process whose crash is a clean error; with ``pyhelayers`` installed (a venv of your own: its
licence is non-commercial), the same checks as the TenSEAL backend, and served end to end."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sealfn.errors import ConfigError, EnvelopeError, InvalidInput, ModelError
from sealfn.he.backend import evaluator_for, for_keys, load_secret, named
from sealfn.he.data import Split
from sealfn.he.helayers_backend import EVAL_MAGIC, HelayersKeys, available, run_child
from sealfn.he.networks import Net
from sealfn.he.params import choose
from sealfn.he.plan import Plan, cost
from sealfn.he.tenseal_backend import TensealKeys
from sealfn_testing import Server

ROOT = Path(__file__).resolve().parents[2]
ABORT = "import os, sys; print('about to abort', file=sys.stderr, flush=True); os.abort()"
FAIL = "import sys; print('nope', file=sys.stderr); sys.exit(3)"
needs_helayers = pytest.mark.skipif(
    not available(), reason="pyhelayers is not installed (optional; non-commercial licence)"
)


def test_a_crashed_child_is_a_model_error_naming_the_signal() -> None:
    abort = [sys.executable, "-c", ABORT]
    with pytest.raises(ModelError, match=r"crashed \(SIGABRT\) while testing: about to abort"):
        run_child(abort, "", "testing")
    with pytest.raises(ModelError, match=r"testing failed \(exit 3\): nope"):
        run_child([sys.executable, "-c", FAIL], "", "testing")
    with pytest.raises(ModelError, match="timed out"):
        run_child(
            [sys.executable, "-c", "import time; time.sleep(5)"], "", "testing", timeout_s=0.5
        )


def test_pyhelayers_is_never_a_dependency_nor_imported_by_default() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [
        *project["dependencies"],
        *(d for extra in project.get("optional-dependencies", {}).values() for d in extra),
    ]
    assert not [d for d in declared if "helayers" in d.lower()]
    probe = (
        "import sys, sealfn.he.serving, sealfn.he.client, sealfn.he.cli, sealfn.he.backend;"
        "from sealfn.he.backend import named; named('tenseal');"
        "assert 'pyhelayers' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_backends_are_picked_by_name_and_by_magic(keys: TensealKeys) -> None:
    assert named().name == "tenseal"
    assert for_keys(keys.evaluation_keys()).name == "tenseal"
    assert for_keys(keys.to_bytes()).name == "tenseal"
    with pytest.raises(ConfigError, match="not one of tenseal, helayers"):
        named("openfhe")


@pytest.mark.skipif(available(), reason="pyhelayers is installed here")
def test_without_pyhelayers_the_error_says_what_to_install() -> None:
    with pytest.raises(ConfigError, match="pip install pyhelayers"):
        named("helayers").keygen(choose(2, 128))
    with pytest.raises(ConfigError, match="non-commercial"):
        evaluator_for(EVAL_MAGIC + b"anything")


# --- with pyhelayers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hl_keys(he_plan: Plan) -> HelayersKeys:
    keys = named("helayers").keygen(choose(cost(he_plan).depth, he_plan.width))
    assert isinstance(keys, HelayersKeys)
    return keys


@needs_helayers
def test_encrypted_inference_matches_the_plaintext_plan(
    hl_keys: HelayersKeys, he_plan: Plan, data: Split
) -> None:
    backend = named("helayers")
    keys = load_secret(hl_keys.to_bytes())  # the user's key file round-trips
    assert keys.key_id == hl_keys.key_id and keys.backend == "helayers"
    evaluator = evaluator_for(keys.evaluation_keys())
    assert evaluator.levels == cost(he_plan).depth
    batch = data.x_test[:3]
    got = np.stack(
        [
            backend.decrypt(
                keys,
                evaluator.evaluate(he_plan, backend.encrypt(keys, x, he_plan.width)),
                he_plan.width,
                he_plan.outputs,
            )
            for x in batch
        ]
    )
    expected = np.stack([he_plan.run_plain(x) for x in batch])
    assert np.abs(got - expected).max() < 1e-2
    assert (got.argmax(1) == expected.argmax(1)).all()


@needs_helayers
def test_wrong_keys_and_ciphertexts_are_refused_or_caught(
    hl_keys: HelayersKeys, he_plan: Plan, data: Split
) -> None:
    backend = named("helayers")
    other = backend.keygen(choose(cost(he_plan).depth, he_plan.width))
    shallow = backend.keygen(choose(2, he_plan.width))
    ciphertext = backend.encrypt(hl_keys, data.x_test[0], he_plan.width)
    with pytest.raises(InvalidInput, match="not an HElayers context"):
        evaluator_for(EVAL_MAGIC + b"garbage")
    with pytest.raises(InvalidInput, match=r"allow depth 2; this network needs \d+"):
        evaluator_for(shallow.evaluation_keys()).evaluate(he_plan, ciphertext)
    evaluator = evaluator_for(hl_keys.evaluation_keys())
    with pytest.raises(InvalidInput, match="does not match"):
        evaluator.evaluate(he_plan, b"\x00" * 100)
    foreign = backend.encrypt(shallow, data.x_test[0], he_plan.width)  # other parameters
    with pytest.raises(InvalidInput, match="does not match"):
        evaluator.evaluate(he_plan, foreign)
    # HElayers stamps ciphertexts with its context's id: A's ciphertext with B's keys is refused
    # on the server (TenSEAL computes noise and only the user's decryption catches it)
    with pytest.raises(InvalidInput, match="does not match"):
        evaluator_for(other.evaluation_keys()).evaluate(he_plan, ciphertext)
    theirs = backend.encrypt(other, data.x_test[0], he_plan.width)
    reply = evaluator_for(other.evaluation_keys()).evaluate(he_plan, theirs)
    with pytest.raises(EnvelopeError):
        backend.decrypt(hl_keys, reply, he_plan.width, he_plan.outputs)


@pytest.fixture
def he_function(he_net: Net, tmp_path: Path, deploy: Callable[..., str]) -> str:
    model = tmp_path / "digits.he"
    model.write_bytes(he_net.graph().to_bytes())
    return deploy(model, he=True, max_instances=1)


@needs_helayers
def test_served_with_helayers_keys(
    server: Server, he_function: str, he_plan: Plan, hl_keys: HelayersKeys, data: Split
) -> None:
    from sealfn.he.client import HeClient

    with HeClient(server.url) as client:
        needs = client.requirements(he_function)
        client.upload_keys(hl_keys)
        got = client.infer(he_function, hl_keys, data.x_test[0], needs)
    assert np.abs(got - he_plan.run_plain(data.x_test[0])).max() < 1e-2
