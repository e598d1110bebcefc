"""The public envelope: round trips for both suites, every refusal opaque, nonces never repeat."""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hpke

from sealfn.envelope import (
    KeyPair,
    OpenedRequest,
    ReplayGuard,
    ReplyKey,
    Suite,
    _hpke,
    generate_keypair,
    open_request,
    peek_header,
    seal_request,
)
from sealfn.envelope.format import REQUEST_MAGIC
from sealfn.errors import EnvelopeError

MIB = 1 << 20
T0 = 1_700_000_000.0  # seconds; a whole number of milliseconds
X25519 = Suite.X25519_SHA256_AES256GCM
HYBRID = Suite.MLKEM768X25519_SHA256_AES256GCM
KEYS = {suite: generate_keypair(suite) for suite in Suite}
OTHER_KEYS = {suite: generate_keypair(suite) for suite in Suite}
OPAQUE = EnvelopeError().message


def _seal(
    body: bytes = b"input tensor", *, suite: Suite = X25519, user: str = "ana", now: float = T0
) -> tuple[bytes, ReplyKey]:
    return seal_request(
        body, KEYS[suite].public_key, model_id="resnet", user_id=user, suite=suite, now=now
    )


def _open(
    sealed: bytes,
    *,
    keypair: KeyPair | None = None,
    expected: str | None = "resnet",
    guard: ReplayGuard | None = None,
    now: float = T0,
) -> OpenedRequest:
    keypair = KEYS[peek_header(sealed).suite] if keypair is None else keypair
    guard = ReplayGuard() if guard is None else guard
    return open_request(sealed, keypair, expected_model_id=expected, replay=guard, now=now)


def _header_bytes(
    *,
    version: int = 1,
    suite: int = 1,
    model: bytes = b"resnet",
    user: bytes = b"ana",
    timestamp_ms: int = int(T0 * 1000),
) -> bytes:
    ids = struct.pack(">H", len(model)) + model + struct.pack(">H", len(user)) + user
    return (
        REQUEST_MAGIC + bytes([version, suite]) + ids + struct.pack(">Q", timestamp_ms) + bytes(16)
    )


def _crafted(header: bytes, body: bytes = b"x", *, suite: Suite = X25519) -> bytes:
    """A request correctly sealed under a hand-made header: only the header's check can fail."""
    sealed = _hpke.seal(suite, KEYS[suite].public_key, header, body)
    return header + b"".join(sealed.parts)


def _rewrite(sealed: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and sealed.count(old) == 1
    return sealed.replace(old, new)


@pytest.mark.parametrize("size", [0, 1, 600_000, 8 * MIB])
@pytest.mark.parametrize("suite", list(Suite))
def test_round_trip(suite: Suite, size: int) -> None:
    body = os.urandom(size)
    sealed, reply_key = _seal(body, suite=suite)
    header = peek_header(sealed)  # what the gateway sees: enough to route, nothing secret
    assert (header.model_id, header.user_id, header.suite) == ("resnet", "ana", suite)
    assert header.timestamp_ms == int(T0 * 1000)
    opened = _open(sealed)
    assert opened.plaintext == body
    assert opened.header == header
    answer = body[::-1]
    assert reply_key.open_reply(opened.seal_reply(answer)) == answer


def test_without_an_expected_model_the_bound_model_id_comes_back() -> None:
    sealed, _ = _seal()
    assert _open(sealed, expected=None).header.model_id == "resnet"


def test_opened_request_does_not_print_its_plaintext() -> None:
    opened = _open(_seal(b"very secret input")[0])
    assert "very secret" not in repr(opened)


# Every way a request may fail to open, each built so that only that check can fail.
def _wrong_key(suite: Suite) -> Callable[[], object]:
    sealed, _ = _seal(suite=suite)
    return lambda: _open(sealed, keypair=OTHER_KEYS[suite])


def _wrong_model(suite: Suite) -> Callable[[], object]:
    sealed, _ = _seal(suite=suite)
    return lambda: _open(sealed, expected="vgg")


def _model_rewritten(suite: Suite) -> Callable[[], object]:
    # The gateway re-labels a request for another model: the HPKE info no longer matches.
    sealed = _rewrite(_seal(suite=suite)[0], b"resnet", b"resnes")
    return lambda: _open(sealed, expected=None)


def _user_rewritten(suite: Suite) -> Callable[[], object]:
    sealed = _rewrite(_seal(suite=suite, user="ana-1")[0], b"ana-1", b"ana-2")
    return lambda: _open(sealed)


def _timestamp_rewritten(suite: Suite) -> Callable[[], object]:
    stamp = struct.pack(">Q", int(T0 * 1000))
    sealed = _rewrite(_seal(suite=suite)[0], stamp, struct.pack(">Q", int(T0 * 1000) + 1))
    return lambda: _open(sealed)


def _enc_swapped(suite: Suite) -> Callable[[], object]:
    first, second = _seal(suite=suite)[0], _seal(suite=suite)[0]
    start = len(_header_bytes())
    size = 32 if suite is X25519 else 1120
    sealed = first[:start] + second[start : start + size] + first[start + size :]
    return lambda: _open(sealed)


def _enc_zeroed(suite: Suite) -> Callable[[], object]:
    """An all-zero enc: a low-order X25519 point, on which the key exchange itself fails."""
    sealed = _seal(suite=suite)[0]
    start, size = len(_header_bytes()), 32 if suite is X25519 else 1120
    zeroed = sealed[:start] + bytes(size) + sealed[start + size :]
    return lambda: _open(zeroed)


def _truncated(keep: int) -> Callable[[Suite], Callable[[], object]]:
    def case(suite: Suite) -> Callable[[], object]:
        sealed, _ = _seal(suite=suite)
        return lambda: _open(sealed[:keep], keypair=KEYS[suite])

    return case


def _replayed(suite: Suite) -> Callable[[], object]:
    sealed, _ = _seal(suite=suite)
    guard = ReplayGuard()
    _open(sealed, guard=guard)
    return lambda: _open(sealed, guard=guard)


def _expired(suite: Suite) -> Callable[[], object]:
    sealed, _ = _seal(suite=suite, now=T0 - 31)
    return lambda: _open(sealed)


def _from_the_future(suite: Suite) -> Callable[[], object]:
    sealed, _ = _seal(suite=suite, now=T0 + 31)
    return lambda: _open(sealed)


def _header_case(**fields: object) -> Callable[[Suite], Callable[[], object]]:
    def case(suite: Suite) -> Callable[[], object]:
        header = _header_bytes(**{"suite": int(suite), **fields})  # type: ignore[arg-type]
        sealed = _crafted(header, suite=suite)
        return lambda: _open(sealed, keypair=KEYS[suite], expected=None)

    return case


def _suite_mismatch(suite: Suite) -> Callable[[], object]:
    sealed, _ = _seal(suite=suite)
    other = HYBRID if suite is X25519 else X25519
    return lambda: _open(sealed, keypair=KEYS[other])


def _hybrid_secret_missing(suite: Suite) -> Callable[[], object]:
    """A hybrid request whose plaintext is shorter than the 32-byte reply secret (either suite
    parameter: only the hybrid carries the secret in its plaintext)."""
    header = _header_bytes(suite=int(HYBRID))
    public = _hpke._hybrid_public_key(KEYS[HYBRID].public_key)
    body = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    sealed = header + body.encrypt(b"short", public, info=header)
    return lambda: _open(sealed)


REFUSALS: dict[str, Callable[[Suite], Callable[[], object]]] = {
    "wrong key": _wrong_key,
    "wrong model": _wrong_model,
    "model id rewritten": _model_rewritten,
    "user id rewritten": _user_rewritten,
    "timestamp rewritten": _timestamp_rewritten,
    "enc from another request": _enc_swapped,
    "enc all zeros": _enc_zeroed,
    "truncated to nothing": _truncated(0),
    "truncated in the header": _truncated(12),
    "truncated after the header": _truncated(len(_header_bytes())),
    "truncated by one byte": _truncated(-1),
    "replayed": _replayed,
    "expired": _expired,
    "from the future": _from_the_future,
    "old version": _header_case(version=0),
    "unknown version": _header_case(version=2),
    "unknown suite": _header_case(suite=3),
    "suite differs from the key": _suite_mismatch,
    "oversize model id": _header_case(model=b"m" * 257),
    "oversize user id": _header_case(user=b"u" * 300),
    "empty user id": _header_case(user=b""),
    "user id not UTF-8": _header_case(user=b"\xc3\x28"),
    "hybrid plaintext without reply secret": _hybrid_secret_missing,
}


@pytest.mark.parametrize("suite", list(Suite))
@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
def test_every_refusal_is_the_same_opaque_error(
    case: Callable[[Suite], Callable[[], object]], suite: Suite
) -> None:
    attempt = case(suite)
    with pytest.raises(EnvelopeError) as caught:
        attempt()
    assert type(caught.value) is EnvelopeError
    assert str(caught.value) == caught.value.message == OPAQUE
    # No library exception rides along to a traceback: nothing there to hint at the reason.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


@pytest.mark.parametrize("suite", list(Suite))
def test_a_reply_cannot_be_opened_with_another_requests_reply_key(suite: Suite) -> None:
    first, first_key = _seal(suite=suite)
    _, second_key = _seal(suite=suite)
    reply = _open(first).seal_reply(b"for the first request only")
    with pytest.raises(EnvelopeError, match=f"^{OPAQUE}$"):
        second_key.open_reply(reply)
    assert first_key.open_reply(reply) == b"for the first request only"


@pytest.mark.parametrize("suite", list(Suite))
def test_a_flipped_bit_anywhere_is_refused(suite: Suite) -> None:
    sealed, _ = _seal(b"0123456789" * 4, suite=suite)
    # Suite 1: every bit. Suite 2 (about 1.3 kB): one bit per byte, rotating the bit index.
    bits = (
        range(len(sealed) * 8) if suite is X25519 else (8 * i + i % 8 for i in range(len(sealed)))
    )
    guard = ReplayGuard()
    for bit in bits:
        tampered = bytearray(sealed)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(EnvelopeError):
            _open(bytes(tampered), keypair=KEYS[suite], guard=guard)
    assert _open(sealed, guard=guard).plaintext == b"0123456789" * 4


@pytest.mark.parametrize(
    ("opened_at", "max_skew_s", "accepted"),
    [
        (T0, 30.0, True),
        (T0 + 30, 30.0, True),
        (T0 - 30, 30.0, True),
        (T0 + 30.001, 30.0, False),
        (T0 - 30.001, 30.0, False),
        (T0 + 6, 5.0, False),
        (T0 + 5, 5.0, True),
    ],
)
def test_freshness(opened_at: float, max_skew_s: float, accepted: bool) -> None:
    sealed, _ = _seal()
    try:
        open_request(
            sealed,
            KEYS[X25519],
            expected_model_id="resnet",
            replay=ReplayGuard(window_s=30),
            now=opened_at,
            max_skew_s=max_skew_s,
        )
    except EnvelopeError:
        assert not accepted
    else:
        assert accepted


def test_a_skew_wider_than_the_replay_window_is_a_config_error() -> None:
    sealed, _ = _seal()
    with pytest.raises(ValueError, match="max_skew_s"):
        open_request(
            sealed,
            KEYS[X25519],
            expected_model_id=None,
            replay=ReplayGuard(window_s=10),
            now=T0,
            max_skew_s=30,
        )


@pytest.mark.parametrize("count", [10_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_no_nonce_ever_repeats(count: int) -> None:
    """Distinct enc, header nonce and response nonce across many seals (catches a fixed or
    reused nonce source; 10^4 in the default suite, 10^5 under -m slow)."""
    encs, nonces = set(), set()
    header_size = len(_header_bytes())
    for _ in range(count):
        sealed, _ = _seal(b"")
        nonces.add(peek_header(sealed).nonce)
        encs.add(sealed[header_size : header_size + 32])
    opened = _open(_seal(b"")[0])
    response_nonces = {opened.seal_reply(b"", buckets=(8,))[5:37] for _ in range(count)}
    assert len(encs) == len(nonces) == len(response_nonces) == count


def test_refusal_reasons_go_to_the_debug_log_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sealfn.envelope")
    secret = b"patient 7 has condition X"
    sealed, _ = _seal(secret)
    guard = ReplayGuard()
    _open(sealed, guard=guard)
    attempts: tuple[Callable[[], object], ...] = (
        lambda: _open(sealed, guard=guard),
        lambda: _open(sealed, keypair=OTHER_KEYS[X25519]),
        lambda: _open(sealed[:-1]),
    )
    for attempt in attempts:
        with pytest.raises(EnvelopeError):
            attempt()
    reasons = [r.getMessage() for r in caplog.records if r.name == "sealfn.envelope"]
    assert len(reasons) == 3
    assert any("replayed" in r for r in reasons)
    for forbidden in (secret, KEYS[X25519].private_key, OTHER_KEYS[X25519].private_key):
        assert forbidden.hex() not in caplog.text and repr(forbidden) not in caplog.text
    assert "patient" not in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"plaintext": "text"},
        {"plaintext": bytearray(b"x")},
        {"recipient_public_key": "key"},
        {"model_id": b"resnet"},
        {"user_id": 7},
        {"suite": 1},
        {"now": "now"},
    ],
)
def test_bad_argument_types_to_seal_fail_early(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "plaintext": b"x",
        "recipient_public_key": KEYS[X25519].public_key,
        "model_id": "resnet",
        "user_id": "ana",
        **kwargs,
    }
    with pytest.raises(TypeError):
        seal_request(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sealed": "text"},
        {"keypair": b"key"},
        {"replay": None},
        {"expected_model_id": b"resnet"},
        {"now": "now"},
        {"max_skew_s": None},
    ],
)
def test_bad_argument_types_to_open_fail_early(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "sealed": _seal()[0],
        "keypair": KEYS[X25519],
        "expected_model_id": "resnet",
        "replay": ReplayGuard(),
        **kwargs,
    }
    with pytest.raises(TypeError):
        open_request(**args)  # type: ignore[arg-type]


def test_other_bad_arguments_fail_early() -> None:
    with pytest.raises(TypeError):
        peek_header("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _open(_seal()[0]).seal_reply("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="recipient_public_key must be 1216 bytes"):
        seal_request(b"x", KEYS[X25519].public_key, model_id="m", user_id="u", suite=HYBRID)
    with pytest.raises(ValueError, match="model_id"):
        seal_request(b"x", KEYS[X25519].public_key, model_id="", user_id="u")
    with pytest.raises(ValueError):  # a low-order point: the caller's key is unusable
        seal_request(b"x", bytes(32), model_id="m", user_id="u")


def test_peek_refuses_a_reply() -> None:
    sealed, _ = _seal()
    reply = _open(sealed).seal_reply(b"answer")
    with pytest.raises(EnvelopeError, match=f"^{OPAQUE}$"):
        peek_header(reply)
