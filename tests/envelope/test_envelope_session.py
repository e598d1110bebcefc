"""Sealed sessions: one HPKE ticket, then AES-GCM requests any enclave with the key can open."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealfn.envelope import (
    KeyPair,
    ReplayGuard,
    RequestHeader,
    Suite,
    generate_keypair,
    peek_header,
)
from sealfn.envelope.session import ClientSession, SessionCache, start_session
from sealfn.errors import AccessDenied, EnvelopeError

NOW = 1_800_000_000.0
MODEL = "digits"


@pytest.fixture(scope="module", params=list(Suite), ids=lambda s: s.name)
def keypair(request: pytest.FixtureRequest) -> KeyPair:
    return generate_keypair(request.param)


class Tickets:
    """An ``accept_ticket`` that records what it was shown."""

    def __init__(self, refuse: bool = False) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.refuse = refuse

    def __call__(self, header: RequestHeader, plaintext: memoryview) -> None:
        self.seen.append((header.user_id, bytes(plaintext)))
        if self.refuse:
            raise AccessDenied("access denied")


def _session(keypair: KeyPair, user: str = "alice", now: float = NOW) -> ClientSession:
    return start_session(
        b"signed by " + user.encode(), keypair.public_key, model_id=MODEL, user_id=user,
        suite=keypair.suite, now=now,
    )  # fmt: skip


def _open(
    cache: SessionCache,
    sealed: bytes,
    keypair: KeyPair,
    tickets: Tickets,
    *,
    replay: ReplayGuard | None = None,
    now: float = NOW + 1,
) -> bytes:
    opened = cache.open(
        sealed, keypair, expected_model_id=MODEL, replay=replay or ReplayGuard(),
        accept_ticket=tickets, now=now,
    )  # fmt: skip
    return opened.plaintext


def test_requests_round_trip_and_the_ticket_is_checked_once(keypair: KeyPair) -> None:
    session, cache, tickets, replay = _session(keypair), SessionCache(), Tickets(), ReplayGuard()
    for i in range(5):
        sealed, reply_key = session.seal(b"request %d" % i, now=NOW + 1)
        assert peek_header(sealed).model_id == MODEL  # the gateway routes it like any other
        opened = cache.open(
            sealed, keypair, expected_model_id=MODEL, replay=replay, accept_ticket=tickets,
            now=NOW + 1,
        )  # fmt: skip
        assert opened.plaintext == b"request %d" % i
        assert reply_key.open_reply(opened.seal_reply(b"answer %d" % i)) == b"answer %d" % i
    assert tickets.seen == [("alice", b"signed by alice")]
    assert len(cache) == 1


def test_any_enclave_with_the_key_opens_the_session(keypair: KeyPair) -> None:
    session = _session(keypair)
    first, second = SessionCache(), SessionCache()  # two instances of one deployment
    for cache in (first, second):
        sealed, _ = session.seal(b"x", now=NOW + 1)
        assert _open(cache, sealed, keypair, Tickets()) == b"x"


def test_each_reply_key_opens_only_its_own_reply(keypair: KeyPair) -> None:
    session, cache, replay = _session(keypair), SessionCache(), ReplayGuard()
    (a, key_a), (b, key_b) = session.seal(b"a", now=NOW), session.seal(b"b", now=NOW)
    opened_a = cache.open(a, keypair, expected_model_id=MODEL, replay=replay,
                          accept_ticket=Tickets(), now=NOW)  # fmt: skip
    cache.open(b, keypair, expected_model_id=MODEL, replay=replay, accept_ticket=Tickets(), now=NOW)
    reply = opened_a.seal_reply(b"for a only")
    assert key_a.open_reply(reply) == b"for a only"
    with pytest.raises(EnvelopeError):
        key_b.open_reply(reply)


def test_replayed_request_is_refused(keypair: KeyPair) -> None:
    session, cache, replay = _session(keypair), SessionCache(), ReplayGuard()
    sealed, _ = session.seal(b"once", now=NOW)
    _open(cache, sealed, keypair, Tickets(), replay=replay, now=NOW)
    with pytest.raises(EnvelopeError):
        _open(cache, sealed, keypair, Tickets(), replay=replay, now=NOW)


@pytest.mark.parametrize(
    ("made", "sent", "used"),
    [
        (NOW, NOW + 601, NOW + 601),  # the ticket outlived max_age_s
        (NOW + 60, NOW, NOW),  # a ticket from the future
        (NOW, NOW, NOW + 60),  # the request itself is stale (30 s skew)
    ],
)
def test_stale_tickets_and_requests_are_refused(
    keypair: KeyPair, made: float, sent: float, used: float
) -> None:
    sealed, _ = _session(keypair, now=made).seal(b"x", now=sent)
    with pytest.raises(EnvelopeError):
        _open(SessionCache(), sealed, keypair, Tickets(), now=used)


def test_a_cached_session_expires(keypair: KeyPair) -> None:
    session, cache = _session(keypair), SessionCache(max_age_s=60)
    sealed, _ = session.seal(b"x", now=NOW)
    _open(cache, sealed, keypair, Tickets(), now=NOW)
    later, _ = session.seal(b"y", now=NOW + 61)
    with pytest.raises(EnvelopeError):
        _open(cache, later, keypair, Tickets(), now=NOW + 61)
    assert not session.fresh(now=NOW + 600)


def test_a_ticket_cannot_speak_for_another_user(keypair: KeyPair) -> None:
    alice = _session(keypair, "alice")
    mallory = ClientSession(
        alice.ticket, b"\x00" * 32, suite=keypair.suite, model_id=MODEL, user_id="mallory",
        created=NOW,
    )  # fmt: skip
    sealed, _ = mallory.seal(b"x", now=NOW)
    with pytest.raises(EnvelopeError):
        _open(SessionCache(), sealed, keypair, Tickets(), now=NOW)


def test_a_refused_ticket_is_not_cached(keypair: KeyPair) -> None:
    cache = SessionCache()
    sealed, _ = _session(keypair).seal(b"x", now=NOW)
    with pytest.raises(AccessDenied):
        _open(cache, sealed, keypair, Tickets(refuse=True), now=NOW)
    assert len(cache) == 0


def test_another_deployment_key_cannot_open(keypair: KeyPair) -> None:
    sealed, _ = _session(keypair).seal(b"x", now=NOW)
    with pytest.raises(EnvelopeError):
        _open(SessionCache(), sealed, generate_keypair(keypair.suite), Tickets(), now=NOW)


def test_least_recently_used_sessions_are_dropped(keypair: KeyPair) -> None:
    cache, replay = SessionCache(max_sessions=2), ReplayGuard()
    for user in ("a", "b", "c"):
        sealed, _ = _session(keypair, user).seal(b"x", now=NOW)
        _open(cache, sealed, keypair, Tickets(), replay=replay, now=NOW)
    assert len(cache) == 2


mutations = st.tuples(st.integers(min_value=0), st.integers(1, 255))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flip=mutations, cut=st.none() | st.integers(min_value=1), tail=st.binary(max_size=4))
def test_any_change_is_the_opaque_error(
    keypair: KeyPair, flip: tuple[int, int], cut: int | None, tail: bytes
) -> None:
    sealed, _ = _session(keypair).seal(b"payload", now=NOW)
    changed = bytearray(sealed)
    changed[flip[0] % len(changed)] ^= flip[1]
    if cut is not None:
        del changed[len(changed) - 1 - cut % (len(changed) - 1) :]
    with pytest.raises(EnvelopeError):
        _open(SessionCache(), bytes(changed) + tail, keypair, Tickets(), now=NOW)
