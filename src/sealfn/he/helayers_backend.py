"""Optional HE backend: IBM HElayers (``pyhelayers``) on its SEAL CKKS context.

LICENCE: HElayers' community edition is for **non-commercial use only** and may not be
redistributed. It is never a dependency of sealfn and never the default: this module imports
``pyhelayers`` only when a user picks it (``sealfn he keygen --backend helayers``) or when an
instance meets evaluation keys made with it. Install it yourself, in a venv of your own.

sealfn compiles the network itself (``plan.py``) and runs the plan with HElayers' ciphertext
primitives (``CTile``), so it is the same interface, layout and wire format as the TenSEAL backend.
HElayers' own compile step — choosing a modulus chain for a requirement and generating the keys
(``HeContext.init``) — runs in a child process: HElayers' C++ aborts (not exceptions) on some
inputs, which would take the caller's process with it. A child that dies is a ``ModelError``
naming the signal.
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sealfn.errors import ConfigError, EnvelopeError, InvalidInput, ModelError
from sealfn.he.backend import key_id
from sealfn.he.layout import PreparedPlans, interpret, replicate, tile, unreplicate
from sealfn.he.params import CkksParams
from sealfn.he.plan import Linear, Plan

EVAL_MAGIC = b"SFHL-EK1"  # evaluation keys: HElayers context without its secret key
SECRET_MAGIC = b"SFHL-SK1"  # the user's key file: params, secret key, evaluation keys
KEYGEN_TIMEOUT_S = 900.0
_LENGTH = struct.Struct(">Q")
INSTALL = (
    "the HElayers backend needs pyhelayers (IBM community edition: non-commercial use only; "
    "not installed with sealfn): pip install pyhelayers, in a venv of your own"
)


def _helayers() -> Any:
    try:
        import pyhelayers  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ConfigError(INSTALL) from exc
    return pyhelayers


def available() -> bool:
    """Whether ``pyhelayers`` imports here (tests skip on False)."""
    try:
        _helayers()
    except ConfigError:
        return False
    return True


@dataclass(frozen=True)
class HelayersKeys:
    """The user's keys: HElayers' secret key and its public context (the evaluation keys)."""

    params: CkksParams
    secret: bytes = field(repr=False)
    evaluation: bytes = field(repr=False)  # EVAL_MAGIC + HElayers context, no secret key
    _loaded: list[Any] = field(default_factory=list, repr=False, compare=False)
    backend = "helayers"

    @property
    def key_id(self) -> str:
        return key_id(self.evaluation)

    def evaluation_keys(self) -> bytes:
        return self.evaluation

    def to_bytes(self) -> bytes:
        params = json.dumps(asdict(self.params)).encode()
        return SECRET_MAGIC + b"".join(
            _LENGTH.pack(len(part)) + part for part in (params, self.secret, self.evaluation)
        )

    def context(self) -> Any:
        """The HElayers context with the secret key loaded (made once)."""
        if not self._loaded:
            context = _load_context(self.evaluation)
            context.load_secret_key(self.secret)
            self._loaded.append(context)
        return self._loaded[0]


class HelayersBackend:
    name = "helayers"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable  # runs the key-generation child

    def keygen(self, params: CkksParams) -> HelayersKeys:
        """Keys for ``params`` (slots, depth, scale bits), made by HElayers in a child process."""
        _helayers()  # a clear ConfigError here rather than an ImportError in the child
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder)
            run_child(
                [self.python, "-m", "sealfn.he.helayers_backend", "keygen", str(out)],
                json.dumps(asdict(params)),
                "generating HElayers keys",
            )
            secret, public = (out / "secret").read_bytes(), (out / "public").read_bytes()
        return HelayersKeys(params, secret, EVAL_MAGIC + public)

    def load_secret(self, data: bytes) -> HelayersKeys:
        if not data.startswith(SECRET_MAGIC):
            raise ConfigError("not a sealfn HElayers secret key file")
        try:
            params, secret, evaluation = _split(data[len(SECRET_MAGIC) :], 3)
            spec = json.loads(params)
            chosen = CkksParams(spec["poly_modulus"], tuple(spec["coeff_bits"]), spec["scale_bits"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError("not a sealfn HElayers secret key file") from exc
        return HelayersKeys(chosen, secret, evaluation)

    def encrypt(self, keys: HelayersKeys, values: np.ndarray, width: int) -> bytes:
        encoder = _helayers().Encoder(keys.context())
        cipher = encoder.encode_encrypt(replicate(values, width, keys.params.slots))
        return bytes(cipher.save_to_buffer())

    def decrypt(self, keys: HelayersKeys, ciphertext: bytes, width: int, count: int) -> np.ndarray:
        """The first ``count`` values; ``EnvelopeError`` if the copies disagree (wrong key)."""
        hl = _helayers()
        context = keys.context()
        try:
            cipher = hl.load_ctile(context, ciphertext)
        except RuntimeError as exc:
            raise EnvelopeError() from exc
        return unreplicate(
            np.asarray(hl.Encoder(context).decrypt_decode_double(cipher)), width, count
        )

    def evaluator(self, evaluation_keys: bytes) -> HelayersEvaluator:
        return HelayersEvaluator(evaluation_keys)


class HelayersEvaluator:
    """Runs plans on ciphertexts with one HElayers public context."""

    def __init__(self, evaluation_keys: bytes) -> None:
        self._hl = _helayers()
        self._context = _load_context(evaluation_keys)
        if self._context.has_secret_key():
            raise InvalidInput(
                "refused: the evaluation keys include a secret key (keep it private)"
            )
        self.key_id = key_id(evaluation_keys)
        self._encoder = self._hl.Encoder(self._context)
        self._slots = int(self._context.slot_count())
        self._plans = PreparedPlans(keep=1)  # an instance serves one plan
        self.rotations = 0

    @property
    def levels(self) -> int:
        return int(self._context.get_top_chain_index())

    def evaluate(self, plan: Plan, ciphertext: bytes) -> bytes:
        steps = self._plans.steps(plan, self._slots, self.levels)
        first = self._input(ciphertext)
        result = interpret(plan, steps, first, self._linear, self._square, self._add)
        result.set_chain_index(0)  # the smallest reply
        return bytes(result.save_to_buffer())

    def _input(self, data: bytes) -> Any:
        try:
            cipher = self._hl.load_ctile(self._context, data)
        except RuntimeError as exc:
            raise InvalidInput(
                "the ciphertext does not match the evaluation keys' parameters"
            ) from exc
        if cipher.get_chain_index() != self.levels:
            raise InvalidInput(
                "the ciphertext is not a fresh encryption under these keys' parameters"
            )
        return cipher

    def _linear(self, cipher: Any, op: Linear, diags: dict[int, np.ndarray], steps: Any) -> Any:
        """``M x + b`` by baby-step giant-step over M's non-zero diagonals; one level."""
        chain = cipher.get_chain_index()
        baby = {0: cipher} | {j: self._rotated(cipher, j) for j in steps.baby}
        width = len(op.bias)
        total = None
        for giant in (0, *steps.giant):
            inner = None
            for k in (k for k in steps.offsets if k - k % steps.group == giant):
                term = self._hl.CTile(baby[k % steps.group])
                term.multiply_plain_raw(self._encode(np.roll(diags[k], giant), width, chain))
                inner = term if inner is None else _summed(inner, term)
            if inner is None:
                continue
            if giant:
                inner.rotate(giant)
                self.rotations += 1
            total = inner if total is None else _summed(total, inner)
        if total is None:
            raise ModelError("a linear layer of the plan is all zeros")
        total.rescale()
        return self._add_plain(total, op.bias)

    def _square(self, cipher: Any, offset: np.ndarray) -> Any:
        out = self._hl.CTile(cipher)
        out.square()  # relinearised and rescaled
        return self._add_plain(out, offset)

    def _add(self, a: Any, b: Any) -> Any:
        out = self._hl.CTile(a)
        out.add(b)  # HElayers brings the operands to one level and scale
        return out

    def _add_plain(self, cipher: Any, values: np.ndarray) -> Any:
        if np.any(values):
            cipher.add_plain(self._encode(values, len(values), cipher.get_chain_index()))
        return cipher

    def _encode(self, vector: np.ndarray, width: int, chain: int) -> Any:
        return self._encoder.encode(tile(vector, width, self._slots), chain)

    def _rotated(self, cipher: Any, steps: int) -> Any:
        out = self._hl.CTile(cipher)
        out.rotate(steps)
        self.rotations += 1
        return out


def _summed(a: Any, b: Any) -> Any:
    a.add_raw(b)
    return a


def _load_context(evaluation_keys: bytes) -> Any:
    if not evaluation_keys.startswith(EVAL_MAGIC):
        raise InvalidInput("the evaluation keys cannot be loaded (not an HElayers context)")
    try:
        return _helayers().load_he_context(evaluation_keys[len(EVAL_MAGIC) :])
    except RuntimeError as exc:
        raise InvalidInput(
            "the evaluation keys cannot be loaded (not an HElayers context)"
        ) from exc


def _split(data: bytes, parts: int) -> list[bytes]:
    found, at = [], 0
    for _ in range(parts):
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + size > len(data):
            raise ValueError("truncated")
        found.append(data[at : at + size])
        at += size
    return found


# --- the child process ---------------------------------------------------------------------------


def run_child(
    command: list[str], stdin: str, what: str, timeout_s: float = KEYGEN_TIMEOUT_S
) -> None:
    """Run ``command``; a crash (signal), a failure or a timeout is a ``ModelError``."""
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"{what} timed out after {timeout_s:.0f} s") from exc
    if done.returncode == 0:
        return
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ModelError(f"HElayers crashed ({name}) while {what}: {tail[0][:300]}")
    raise ModelError(f"{what} failed (exit {done.returncode}): {tail[0][:300]}")


def _keygen_child(folder: str) -> None:
    """``python -m sealfn.he.helayers_backend keygen FOLDER`` with the params as JSON on stdin."""
    hl = _helayers()
    spec = json.loads(sys.stdin.read())
    params = CkksParams(spec["poly_modulus"], tuple(spec["coeff_bits"]), spec["scale_bits"])
    integer_bits = params.coeff_bits[0] - params.scale_bits
    requirement = hl.HeConfigRequirement(
        params.slots, params.levels, params.scale_bits, integer_bits
    )
    context = hl.SealCkksContext()
    try:
        context.init(requirement)
    except RuntimeError as exc:  # an infeasible requirement is an exception, not an abort
        print(f"HElayers refused the requirement: {exc}", file=sys.stderr)
        sys.exit(2)
    out = Path(folder)
    (out / "secret").write_bytes(bytes(context.save_secret_key()))
    (out / "public").write_bytes(bytes(context.save_to_buffer()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["keygen"] and len(sys.argv) == 3:
        _keygen_child(sys.argv[2])
    else:
        sys.exit("usage: python -m sealfn.he.helayers_backend keygen FOLDER")
