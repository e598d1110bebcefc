"""Coverage-guided fuzz targets: each takes raw bytes and may only refuse in the documented way.

A target returns normally or raises one of its ``ALLOWED`` errors; anything else (a crash, a
foreign exception, a hang caught by the fuzzer's timeout) is a finding. Run them with
``make fuzz`` (atheris, libFuzzer underneath); the property tests in ``tests/`` cover the same
parsers with hypothesis in the default suite.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sealfn import oip
from sealfn.batch.messages import Event, EventKind, Order
from sealfn.batch.partitions import Partition
from sealfn.batch.results import PartitionResult
from sealfn.collective.payload import Bundle, decode, encode
from sealfn.collective.rendezvous import Endpoint, PeerTable, Register
from sealfn.envelope import ReplayGuard, generate_keypair, open_request, peek_header, seal_request
from sealfn.envelope.session import SessionCache, start_session
from sealfn.errors import EnvelopeError, InvalidInput, ProtocolError, SealfnError
from sealfn.he.graph import tiny
from sealfn.he.params import choose
from sealfn.he.plan import compile_graph, cost
from sealfn.he.protocol import HeMessage, peek_key_id
from sealfn.he.protocol import Kind as HeKind
from sealfn.he.tenseal_backend import TensealBackend
from sealfn.ipc.frames import LENGTH, Frame
from sealfn.keyservice import wire
from sealfn.sealed_model import generate_model_key, open_model, read_header, seal_model
from sealfn.training.wire import WorkReply

NOW = 1_800_000_000.0
_KEYPAIR = generate_keypair()
_MODEL_KEY = generate_model_key()
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    make_seeds: Callable[[], tuple[bytes, ...]]  # real messages; built on demand (HE: keys)
    dictionary: str = ""  # a libFuzzer dictionary in fuzz/dicts/, for text formats
    max_len: int = 65536  # bytes; libFuzzer's -max_len

    @property
    def seeds(self) -> tuple[bytes, ...]:
        return self.make_seeds()


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


# --- wire formats of collectives, batch jobs, HE and training ----------------------------------

_ARRAYS = (
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array(3.5),  # 0-d
    np.zeros((0, 4), dtype=np.int64),  # zero-length
    np.array([True, False]),
)


def _collective_payload(data: bytes) -> object:
    return decode(data)


def _collective_bundle(data: bytes) -> object:
    """A gather's bundle, and every payload in it (what the receiving rank does next)."""
    return [decode(b"".join(pieces)) for _, pieces in Bundle.from_bytes(data).parts]


def _bundle_seeds() -> tuple[bytes, ...]:
    parts = tuple((rank, (encode(a),)) for rank, a in enumerate(_ARRAYS))
    return (Bundle(parts).to_bytes(), Bundle(((7, (encode(b"raw bytes"),)),)).to_bytes())


def _batch_result(data: bytes) -> object:
    return PartitionResult.from_bytes(data)


def _any_of(
    refusals: tuple[type[SealfnError], ...], *parsers: Callable[[bytes], object]
) -> Callable[[bytes], object]:
    """Every parser sees the bytes; refused (with one of ``refusals``) if all of them refuse it.
    Any other exception from any parser propagates: a finding."""

    def run(data: bytes) -> object:
        parsed, refusal = [], None
        for parse in parsers:
            try:
                parsed.append(parse(data))
            except refusals as exc:
                refusal = exc
        if not parsed and refusal is not None:
            raise refusal
        return parsed

    return run


# A line the rendezvous server reads (a registration) and one a rank reads (the peer table).
_rendezvous = _any_of((ProtocolError,), Register.from_bytes, PeerTable.from_bytes)


_ENDPOINTS = (Endpoint(("127.0.0.1", 40411), "host-a", "sealfn-r0"), Endpoint(("::1", 9)))


# A line an instance reads (an order) and one the job's root reads (an event).
_batch_control = _any_of((ProtocolError,), Order.from_bytes, Event.from_bytes)


def _batch_control_seeds() -> tuple[bytes, ...]:
    parts = (Partition(0, 0, 100), Partition(5, 500, 512))
    return (
        Order(2, "job-r2", ("127.0.0.1", 40411), 1, 3, parts, final=False).to_bytes(),
        Event(EventKind.PARTITION, "i-1", 5, True, NOW, NOW + 0.25).to_bytes(),
        Event(EventKind.ROUND_END, "i-2", ok=False, detail="group broke").to_bytes(),
    )


# The gateway's key-id peek, the instance's parse of a request, the client's parse of a reply.
_he_message = _any_of(
    (InvalidInput,),
    peek_key_id,
    lambda data: HeMessage.from_bytes(data, HeKind.REQUEST),
    lambda data: HeMessage.from_bytes(data, HeKind.REPLY),
)


def _worker_reply(data: bytes) -> object:
    """A frame body from an (untrusted) training worker, as the coordinator decodes it."""
    return WorkReply.from_frame(Frame.from_bytes(data))


def _worker_reply_seeds() -> tuple[bytes, ...]:
    replies = (WorkReply((_ARRAYS[0], np.ones((3, 2))), 0.5), WorkReply((), 2))
    return tuple(r.to_frame(i).to_bytes()[LENGTH.size :] for i, r in enumerate(replies))


@functools.cache
def _he() -> dict[str, Any]:
    """A tiny HE network (seeded 1-channel stem conv + linear head: depth 2, width 64), a user's
    CKKS keys for it (N=8192) and the server's evaluator; a second or so to build, once."""
    plan = compile_graph(tiny(0))
    backend = TensealBackend()
    keys = backend.keygen(choose(cost(plan).depth, plan.width))
    evaluator = backend.evaluator(keys.evaluation_keys())
    return {"plan": plan, "backend": backend, "keys": keys, "evaluator": evaluator}


def _he_evaluate(data: bytes) -> object:
    """The instance: a request's ciphertext through the network (SEAL parses it first)."""
    he = _he()
    return he["evaluator"].evaluate(he["plan"], data)


def _he_decrypt(data: bytes) -> object:
    """The user's SDK: a reply's ciphertext, from a server it does not trust, decrypted."""
    he = _he()
    return he["backend"].decrypt(he["keys"], data, he["plan"].width, 10)


_he_ciphertext = _any_of((SealfnError,), _he_evaluate, _he_decrypt)


def _he_ciphertext_seeds() -> tuple[bytes, ...]:
    he = _he()
    request = he["backend"].encrypt(he["keys"], np.linspace(0, 1, 64), he["plan"].width)
    return (request, _he_evaluate(request))  # a fresh ciphertext, and the reply to it


def _he_targets() -> tuple[Target, ...]:
    """Only with the HE extra (TenSEAL) installed; a ciphertext at N=8192 is ~330 KB."""
    if importlib.util.find_spec("tenseal") is None:
        return ()
    return (
        Target("he_ciphertext", _he_ciphertext, (SealfnError,), _he_ciphertext_seeds, "", 1 << 19),
    )


TARGETS = {
    t.name: t
    for t in (
        Target("oip", _oip, (InvalidInput,), _oip_seeds),
        Target("envelope", _envelope, (EnvelopeError,), _envelope_seeds),
        Target("session", _session, (EnvelopeError,), _session_seeds),
        Target(
            "sealed_model",
            _sealed_model,
            (EnvelopeError,),
            lambda: (seal_model(b"\x08\x01" * 300, _MODEL_KEY, "m", chunk_size=256),),
        ),
        Target(
            "keyservice_body",
            _keyservice_body,
            (SealfnError,),
            lambda: (
                json.dumps({"model_id": "m", "public_key": "AAAA", "nonce": "00ff"}).encode(),
            ),
            "json.dict",
        ),
        Target(
            "collective_payload",
            _collective_payload,
            (ProtocolError,),
            lambda: (*(encode(a) for a in _ARRAYS), encode(b"raw bytes")),
        ),
        Target("collective_bundle", _collective_bundle, (ProtocolError,), _bundle_seeds),
        Target(
            "batch_result",
            _batch_result,
            (ProtocolError,),
            lambda: (PartitionResult(3, (("y", _ARRAYS[0]), ("mask", _ARRAYS[3]))).to_bytes(),),
        ),
        Target(
            "rendezvous",
            _rendezvous,
            (ProtocolError,),
            lambda: (
                Register("job-r2", 1, 2, _ENDPOINTS[0]).to_bytes(),
                PeerTable(_ENDPOINTS).to_bytes(),
            ),
            "json.dict",
        ),
        Target(
            "batch_control", _batch_control, (ProtocolError,), _batch_control_seeds, "json.dict"
        ),
        Target(
            "he_message",
            _he_message,
            (InvalidInput,),
            lambda: tuple(HeMessage(k, "ab" * 32, b"ciphertext").to_bytes() for k in HeKind),
        ),
        Target("worker_reply", _worker_reply, (SealfnError,), _worker_reply_seeds, "json.dict"),
        *_he_targets(),
    )
}
