"""Coverage-guided fuzz targets: each takes raw bytes and may only refuse in the documented way.

A target returns normally or raises one of its ``ALLOWED`` errors; anything else (a crash, a
foreign exception, a hang caught by the fuzzer's timeout) is a finding. Run them with
``make fuzz`` (atheris, libFuzzer underneath); the property tests in ``tests/`` cover the same
parsers with hypothesis in the default suite.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass

from sealfn import oip
from sealfn.envelope import ReplayGuard, generate_keypair, open_request, peek_header, seal_request
from sealfn.envelope.session import SessionCache, start_session
from sealfn.errors import EnvelopeError, InvalidInput, SealfnError
from sealfn.keyservice import wire
from sealfn.sealed_model import generate_model_key, open_model, read_header, seal_model

NOW = 1_800_000_000.0
_KEYPAIR = generate_keypair()
_MODEL_KEY = generate_model_key()
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: tuple[bytes, ...]


def _oip(data: bytes) -> object:
    """The first 4 bytes choose Inference-Header-Content-Length (0xFFFFFFFF: absent)."""
    if len(data) < 4:
        return oip.decode_request(data, None)
    (length,) = _U32.unpack_from(data)
    return oip.decode_request(data[4:], None if length == 0xFFFFFFFF else length)


def _envelope(data: bytes) -> object:
    peek_header(data)
    return open_request(
        data, _KEYPAIR, expected_model_id=None, replay=ReplayGuard(), now=NOW, max_skew_s=30.0
    )


_SESSIONS = SessionCache()


def _session(data: bytes) -> object:
    return _SESSIONS.open(
        data, _KEYPAIR, expected_model_id=None, replay=ReplayGuard(), now=NOW,
        accept_ticket=lambda header, plaintext: None,
    )  # fmt: skip


def _session_seeds() -> tuple[bytes, ...]:
    session = start_session(b"t", _KEYPAIR.public_key, model_id="m", user_id="u", now=NOW)
    return (session.seal(b"{}", now=NOW)[0],)


def _sealed_model(data: bytes) -> object:
    read_header(data)
    return open_model(data, _MODEL_KEY, "m")


def _keyservice_body(data: bytes) -> object:
    doc = wire.loads(data)
    wire.check_id("model id", doc.get("model_id"))
    wire.unb64(doc.get("public_key"), "public_key")
    return wire.unhex(doc.get("nonce"), "nonce")


def _oip_seeds() -> tuple[bytes, ...]:
    import numpy as np

    seeds = []
    for binary in (False, True):
        tensor = oip.Tensor.from_numpy("x", np.arange(6, dtype=np.float32).reshape(2, 3))
        body, headers = oip.encode_request([tensor], binary=binary)
        length = int(headers.get(oip.HEADER_LENGTH, 0xFFFFFFFF))
        seeds.append(_U32.pack(length) + body)
    return tuple(seeds)


def _envelope_seeds() -> tuple[bytes, ...]:
    sealed, _ = seal_request(b"{}", _KEYPAIR.public_key, model_id="m", user_id="u", now=NOW)
    return (sealed,)


TARGETS = {
    t.name: t
    for t in (
        Target("oip", _oip, (InvalidInput,), _oip_seeds()),
        Target("envelope", _envelope, (EnvelopeError,), _envelope_seeds()),
        Target("session", _session, (EnvelopeError,), _session_seeds()),
        Target(
            "sealed_model",
            _sealed_model,
            (EnvelopeError,),
            (seal_model(b"\x08\x01" * 300, _MODEL_KEY, "m", chunk_size=256),),
        ),
        Target(
            "keyservice_body",
            _keyservice_body,
            (SealfnError,),
            (json.dumps({"model_id": "m", "public_key": "AAAA", "nonce": "00ff"}).encode(),),
        ),
    )
}
