"""Encrypted inference against the plaintext plan, and the key / ciphertext failure modes."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from sealfn.errors import ConfigError, EnvelopeError, InvalidInput
from sealfn.he.data import Split
from sealfn.he.params import CkksParams, choose
from sealfn.he.plan import Plan, cost
from sealfn.he.tenseal_backend import SECRET_MAGIC, TensealBackend, TensealKeys

BACKEND = TensealBackend()
LOGIT_TOLERANCE = 1e-2  # absolute, on logits of magnitude ≤ ~10 (measured ≤ 1.4e-3, N=8192)


def test_encrypted_inference_equals_the_plaintext_plan(
    he_plan: Plan, keys: TensealKeys, data: Split
) -> None:
    evaluator = BACKEND.evaluator(keys.evaluation_keys())
    batch = data.x_test[:12]
    encrypted = np.stack([_infer(evaluator, he_plan, keys, x) for x in batch])
    plain = np.stack([he_plan.run_plain(x) for x in batch])
    assert np.abs(encrypted - plain).max() < LOGIT_TOLERANCE
    agreement = (encrypted.argmax(1) == plain.argmax(1)).mean()
    assert agreement >= 0.99
    assert evaluator.rotations == cost(he_plan).rotations * len(batch)


def test_evaluation_keys_carry_no_secret_and_a_content_id(keys: TensealKeys) -> None:
    import tenseal

    public = tenseal.context_from(keys.evaluation_keys())
    assert not public.is_private()
    assert public.has_galois_keys() and public.has_relin_keys()
    reloaded = BACKEND.load_secret(keys.to_bytes())
    assert reloaded.key_id == keys.key_id == BACKEND.evaluator(keys.evaluation_keys()).key_id
    assert reloaded.params == keys.params


def test_server_refuses_secret_garbage_and_incomplete_keys(keys: TensealKeys) -> None:
    with pytest.raises(InvalidInput, match="secret key"):
        BACKEND.evaluator(bytes(keys.context.serialize(save_secret_key=True)))
    with pytest.raises(InvalidInput, match="cannot be loaded"):
        BACKEND.evaluator(b"not keys at all")
    bare = keys.context.copy()
    bare.make_context_public()
    with pytest.raises(InvalidInput, match="Galois"):
        BACKEND.evaluator(
            bytes(bare.serialize(save_galois_keys=False, save_relin_keys=False))
        )  # no Galois / relinearisation keys


def test_keys_too_shallow_for_the_network(he_plan: Plan, data: Split) -> None:
    shallow = BACKEND.keygen(CkksParams(8192, (60, 40, 40, 60), 40))  # depth 2 < 6
    ciphertext = BACKEND.encrypt(shallow, data.x_test[0], he_plan.width)
    with pytest.raises(InvalidInput, match="depth 2; this network needs 6"):
        BACKEND.evaluator(shallow.evaluation_keys()).evaluate(he_plan, ciphertext)


def test_ciphertext_for_other_parameters_is_refused(he_plan: Plan, keys: TensealKeys) -> None:
    other = BACKEND.keygen(CkksParams(8192, (60, 40, 40, 60), 40))
    ciphertext = BACKEND.encrypt(other, np.zeros(64), he_plan.width)
    with pytest.raises(InvalidInput, match="does not match"):
        BACKEND.evaluator(keys.evaluation_keys()).evaluate(he_plan, ciphertext)
    with pytest.raises(InvalidInput, match="does not match"):
        BACKEND.evaluator(keys.evaluation_keys()).evaluate(he_plan, b"\x00" * 100)


def test_same_parameters_other_key_is_caught_at_decryption(
    he_plan: Plan, keys: TensealKeys, data: Split
) -> None:
    """CKKS has no integrity: the server cannot tell; the replicated copies expose it."""
    mallory = BACKEND.keygen(choose(cost(he_plan).depth, he_plan.width))
    assert mallory.params == keys.params and mallory.key_id != keys.key_id
    ciphertext = BACKEND.encrypt(mallory, data.x_test[0], he_plan.width)
    reply = BACKEND.evaluator(keys.evaluation_keys()).evaluate(he_plan, ciphertext)  # no error
    with pytest.raises(EnvelopeError):
        BACKEND.decrypt(keys, reply, he_plan.width, he_plan.outputs)
    with pytest.raises(EnvelopeError):
        BACKEND.decrypt(mallory, reply, he_plan.width, he_plan.outputs)


def test_load_secret_refuses_public_context(keys: TensealKeys) -> None:
    public = keys.evaluation_keys()
    with pytest.raises(ConfigError, match="no secret key"):
        BACKEND.load_secret(SECRET_MAGIC + struct.pack(">Q", len(public)) + public)
    with pytest.raises(ConfigError, match="not a sealfn TenSEAL"):
        BACKEND.load_secret(b"junk")


def test_input_too_wide_is_refused(keys: TensealKeys) -> None:
    with pytest.raises(InvalidInput, match="do not fit"):
        BACKEND.encrypt(keys, np.zeros(300), 256)


def _infer(evaluator: object, plan: Plan, keys: TensealKeys, x: np.ndarray) -> np.ndarray:
    reply = evaluator.evaluate(plan, BACKEND.encrypt(keys, x, plan.width))  # type: ignore[attr-defined]
    return BACKEND.decrypt(keys, reply, plan.width, plan.outputs)
