"""The default HE backend: TenSEAL 0.3.18 (Apache-2.0) and the Microsoft SEAL API it bundles.

TenSEAL makes and serialises the keys; the plan runs on SEAL's evaluator directly (TenSEAL's own
``CKKSVector.mm`` is ~30x slower than the baby-step giant-step diagonal method used here: it
rotates once per input element). No bootstrapping: the plan's depth must fit the modulus chain.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.errors import ConfigError, EnvelopeError, InvalidInput, ModelError
from sealfn.he.backend import key_id
from sealfn.he.layout import PreparedPlans, interpret, replicate, tile, unreplicate
from sealfn.he.params import CkksParams
from sealfn.he.plan import Linear, Plan, Steps

PREPARED_PLANS = 4  # plans whose diagonals an evaluator keeps (an instance serves one)
SECRET_MAGIC = b"SFHE-SK1"  # the user's key file: secret context, then the evaluation keys
_LENGTH = struct.Struct(">Q")


def _tenseal() -> Any:
    try:
        import tenseal  # type: ignore[import-untyped]
        import tenseal.sealapi  # type: ignore[import-untyped]  # registers SEAL's types (Modulus, ...) with the binding
    except ImportError as exc:
        raise ConfigError("HE inference needs TenSEAL: pip install 'sealfn[he]'") from exc
    return tenseal


def _params_of(context: Any) -> CkksParams:
    _tenseal()
    seal = context.seal_context().data
    first = seal.first_context_data()
    bits = [m.bit_count() for m in first.parms().coeff_modulus()]
    special = seal.key_context_data().total_coeff_modulus_bit_count() - sum(bits)
    poly = first.parms().poly_modulus_degree()
    return CkksParams(poly, (*bits, special), round(math.log2(context.global_scale)))


@dataclass(frozen=True)
class TensealKeys:
    """The user's keys: a TenSEAL context holding the secret key, and the evaluation keys
    serialised once (their bytes are their id; TenSEAL's serialisation is not deterministic)."""

    context: Any
    evaluation: bytes = field(repr=False)
    backend = "tenseal"

    @property
    def params(self) -> CkksParams:
        return _params_of(self.context)

    @property
    def key_id(self) -> str:
        return key_id(self.evaluation)

    def evaluation_keys(self) -> bytes:
        """Public key, relinearisation and Galois keys: what the server may hold."""
        return self.evaluation

    def to_bytes(self) -> bytes:
        """Secret context + evaluation keys, for the user's own (owner-only) key file."""
        secret = bytes(self.context.serialize(save_secret_key=True, save_galois_keys=False))
        return SECRET_MAGIC + _LENGTH.pack(len(secret)) + secret + self.evaluation

    @classmethod
    def from_context(cls, context: Any) -> TensealKeys:
        public = context.copy()
        public.make_context_public()
        return cls(context, bytes(public.serialize(save_galois_keys=True, save_relin_keys=True)))


class TensealBackend:
    name = "tenseal"

    def keygen(self, params: CkksParams) -> TensealKeys:
        ts = _tenseal()
        context = ts.context(
            ts.SCHEME_TYPE.CKKS, params.poly_modulus, coeff_mod_bit_sizes=list(params.coeff_bits)
        )
        context.global_scale = 2.0**params.scale_bits
        context.generate_galois_keys()  # power-of-two steps; SEAL composes the others
        context.generate_relin_keys()
        return TensealKeys.from_context(context)

    def load_secret(self, data: bytes) -> TensealKeys:
        head = len(SECRET_MAGIC) + _LENGTH.size
        if not data.startswith(SECRET_MAGIC) or len(data) < head:
            raise ConfigError("not a sealfn TenSEAL secret key file")
        (size,) = _LENGTH.unpack_from(data, len(SECRET_MAGIC))
        try:
            context = _tenseal().context_from(data[head : head + size])
        except Exception as exc:  # TenSEAL raises ValueError / RuntimeError on bad bytes
            raise ConfigError("not a sealfn TenSEAL secret key file") from exc
        if not context.is_private():
            raise ConfigError("the key file holds no secret key")
        return TensealKeys(context, data[head + size :])

    def encrypt(self, keys: TensealKeys, values: np.ndarray, width: int) -> bytes:
        sa = _tenseal().sealapi
        seal = keys.context.seal_context().data
        encoder = sa.CKKSEncoder(seal)
        plain = sa.Plaintext()
        encoder.encode(
            replicate(values, width, encoder.slot_count()).tolist(),
            keys.context.global_scale,
            plain,
        )
        cipher = sa.Ciphertext()
        sa.Encryptor(seal, keys.context.public_key().data).encrypt(plain, cipher)
        return _save(cipher)

    def decrypt(self, keys: TensealKeys, ciphertext: bytes, width: int, count: int) -> np.ndarray:
        """The first ``count`` values; ``EnvelopeError`` if the copies disagree (wrong key)."""
        sa = _tenseal().sealapi
        seal = keys.context.seal_context().data
        try:
            cipher = _load(sa.Ciphertext, seal, ciphertext)
        except InvalidInput as exc:
            raise EnvelopeError() from exc
        plain = sa.Plaintext()
        sa.Decryptor(seal, keys.context.secret_key().data).decrypt(cipher, plain)
        return unreplicate(np.asarray(sa.CKKSEncoder(seal).decode_double(plain)), width, count)

    def evaluator(self, evaluation_keys: bytes) -> TensealEvaluator:
        return TensealEvaluator(evaluation_keys)


class TensealEvaluator:
    """Runs plans on ciphertexts with one set of evaluation keys (SEAL's evaluator)."""

    def __init__(self, evaluation_keys: bytes) -> None:
        ts = _tenseal()
        try:
            context = ts.context_from(evaluation_keys)
        except Exception as exc:
            raise InvalidInput(
                "the evaluation keys cannot be loaded (not a TenSEAL context)"
            ) from exc
        if context.is_private():
            raise InvalidInput(
                "refused: the evaluation keys include a secret key (keep it private)"
            )
        if not (context.has_galois_keys() and context.has_relin_keys()):
            raise InvalidInput("the evaluation keys lack Galois or relinearisation keys")
        self.key_id = key_id(evaluation_keys)
        self.params = _params_of(context)
        self._sa = ts.sealapi
        self._seal = context.seal_context().data
        self._galois = context.galois_keys().data
        self._relin = context.relin_keys().data
        self._encoder = self._sa.CKKSEncoder(self._seal)
        self._eval = self._sa.Evaluator(self._seal)
        self._scale = float(context.global_scale)
        self._plans = PreparedPlans(PREPARED_PLANS)
        self.rotations = 0  # rotate_vector calls so far

    @property
    def levels(self) -> int:
        return int(self._seal.first_context_data().chain_index())

    def evaluate(self, plan: Plan, ciphertext: bytes) -> bytes:
        steps = self._plans.steps(plan, self._slots(), self.levels)
        first = self._input(ciphertext)
        result = interpret(plan, steps, first, self._linear, self._square, self._add)
        self._eval.mod_switch_to_inplace(result, self._seal.last_parms_id())  # smallest reply
        return _save(result)

    # --- steps ----------------------------------------------------------------------------------

    def _input(self, data: bytes) -> Any:
        cipher = _load(self._sa.Ciphertext, self._seal, data)
        if cipher.size() != 2 or cipher.parms_id() != self._seal.first_parms_id():
            raise InvalidInput(
                "the ciphertext is not a fresh encryption under these keys' parameters"
            )
        if not math.isclose(cipher.scale, self._scale, rel_tol=1e-9):
            raise InvalidInput("the ciphertext's scale does not match the evaluation keys")
        return cipher

    def _linear(self, cipher: Any, op: Linear, diags: dict[int, np.ndarray], steps: Steps) -> Any:
        """``M x + b`` by baby-step giant-step over M's non-zero diagonals; one level."""
        parms = cipher.parms_id()
        plain_scale = self._prime(parms) * self._scale / cipher.scale  # output scale = Δ exactly
        baby = {0: cipher} | {j: self._rotate(cipher, j) for j in steps.baby}
        width = len(op.bias)
        total = None
        for giant in (0, *steps.giant):
            inner = None
            for k in (k for k in steps.offsets if k - k % steps.group == giant):
                plain = self._encode(
                    _tiled(np.roll(diags[k], giant), width, self._slots()), parms, plain_scale
                )
                term = self._sa.Ciphertext()
                self._eval.multiply_plain(baby[k % steps.group], plain, term)
                inner = term if inner is None else self._sum(inner, term)
            if inner is None:
                continue
            inner = self._rotate(inner, giant) if giant else inner
            total = inner if total is None else self._sum(total, inner)
        if total is None:
            raise ModelError("a linear layer of the plan is all zeros")
        self._eval.rescale_to_next_inplace(total)
        return self._add_plain(total, op.bias)

    def _square(self, cipher: Any, offset: np.ndarray) -> Any:
        out = self._sa.Ciphertext()
        self._eval.square(cipher, out)
        self._eval.relinearize_inplace(out, self._relin)
        self._eval.rescale_to_next_inplace(out)
        return self._add_plain(out, offset)

    def _add(self, a: Any, b: Any) -> Any:
        """Bring the operand at the higher level down to the other's level and scale, then add."""
        chain = self._chain
        high, low = (a, b) if chain(a) >= chain(b) else (b, a)
        if not math.isclose(high.scale, low.scale, rel_tol=1e-9):
            if chain(high) == chain(low):
                raise ModelError("cannot align the scales of an addition at the same level")
            high = self._rescale_to(high, low)
        elif chain(high) > chain(low):
            high = self._copy_switched(high, low.parms_id())
        out = self._sa.Ciphertext()
        self._eval.add(high, low, out)
        return out

    def _rescale_to(self, high: Any, low: Any) -> Any:
        """Multiply by 1 encoded at the scale that lands exactly on ``low``'s level and scale."""
        above = self._seal.get_context_data(low.parms_id()).prev_context_data().parms_id()
        switched = self._copy_switched(high, above)
        one = self._encode(
            [1.0] * self._slots(), above, self._prime(above) * low.scale / switched.scale
        )
        out = self._sa.Ciphertext()
        self._eval.multiply_plain(switched, one, out)
        self._eval.rescale_to_next_inplace(out)
        out.scale = low.scale  # equal up to float rounding of the product above
        return out

    # --- primitives -----------------------------------------------------------------------------

    def _chain(self, cipher: Any) -> int:
        return int(self._seal.get_context_data(cipher.parms_id()).chain_index())

    def _prime(self, parms: Any) -> float:
        """The prime a rescale at this level divides by."""
        return float(self._seal.get_context_data(parms).parms().coeff_modulus()[-1].value())

    def _slots(self) -> int:
        return int(self._encoder.slot_count())

    def _encode(self, values: list[float], parms: Any, scale: float) -> Any:
        plain = self._sa.Plaintext()
        self._encoder.encode(values, parms, scale, plain)
        return plain

    def _add_plain(self, cipher: Any, values: np.ndarray) -> Any:
        if np.any(values):
            plain = self._encode(
                _tiled(values, len(values), self._slots()), cipher.parms_id(), cipher.scale
            )
            self._eval.add_plain_inplace(cipher, plain)
        return cipher

    def _rotate(self, cipher: Any, steps: int) -> Any:
        out = self._sa.Ciphertext()
        self._eval.rotate_vector(cipher, steps, self._galois, out)
        self.rotations += 1
        return out

    def _sum(self, a: Any, b: Any) -> Any:
        self._eval.add_inplace(a, b)
        return a

    def _copy_switched(self, cipher: Any, parms: Any) -> Any:
        out = self._sa.Ciphertext()
        self._eval.mod_switch_to(cipher, parms, out)
        return out


def _tiled(vector: np.ndarray, width: int, slots: int) -> list[float]:
    return tile(vector, width, slots).tolist()  # type: ignore[no-any-return]


def _scratch() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def _save(obj: Any) -> bytes:
    """SEAL objects serialise to files only (through this binding): a private scratch file."""
    with tempfile.TemporaryDirectory(dir=_scratch()) as folder:
        path = Path(folder) / "object"
        obj.save(str(path))
        return path.read_bytes()


def _load(cls: Any, seal: Any, data: bytes) -> Any:
    obj = cls()
    with tempfile.TemporaryDirectory(dir=_scratch()) as folder:
        path = Path(folder) / "object"
        path.write_bytes(data)
        try:
            obj.load(seal, str(path))
        except Exception as exc:  # SEAL raises ValueError / RuntimeError on a mismatch
            raise InvalidInput(
                "the ciphertext does not match the evaluation keys' parameters"
            ) from exc
    return obj
