"""The replay guard as a pure decision over (header, now): a table of cases, then its bounds."""

from __future__ import annotations

import threading

import pytest

from sealfn.envelope import ReplayGuard, RequestHeader, Suite
from sealfn.errors import EnvelopeError

T0 = 1_700_000_000.0  # seconds; a whole number of milliseconds, so ms rounding plays no part


def _header(user: str = "ana", nonce: bytes = bytes(16), sent: float = T0) -> RequestHeader:
    return RequestHeader(1, Suite.X25519_SHA256_AES256GCM, "m", user, int(sent * 1000), nonce)


def _refused(guard: ReplayGuard, header: RequestHeader, now: float) -> bool:
    try:
        guard.check(header, now)
    except EnvelopeError as exc:
        assert str(exc) == EnvelopeError().message
        return True
    return False


def test_the_same_user_and_nonce_is_accepted_once() -> None:
    guard = ReplayGuard()
    assert not _refused(guard, _header(), T0)
    assert _refused(guard, _header(), T0)
    assert _refused(guard, _header(), T0 + 29)  # still inside the window


def test_the_same_nonce_from_another_user_is_another_request() -> None:
    guard = ReplayGuard()
    assert not _refused(guard, _header("ana"), T0)
    assert not _refused(guard, _header("bo"), T0)
    assert not _refused(guard, _header("ana", nonce=b"\x01" * 16), T0)


@pytest.mark.parametrize(
    ("sent_offset", "refused"),
    [(0.0, False), (-30.0, False), (30.0, False), (-30.001, True), (30.001, True), (-3600, True)],
)
def test_headers_outside_the_window_are_refused(sent_offset: float, refused: bool) -> None:
    assert _refused(ReplayGuard(window_s=30), _header(sent=T0 + sent_offset), T0) is refused


def test_entries_are_forgotten_once_their_timestamp_is_stale() -> None:
    guard = ReplayGuard(window_s=30)
    for i in range(100):
        guard.check(_header(nonce=i.to_bytes(16, "big")), T0)
    assert guard.entries == 100
    guard.check(_header(nonce=b"\xff" * 16, sent=T0 + 31), T0 + 31)
    assert guard.entries == 1  # the 100 old ones expired at T0 + 30
    assert _refused(guard, _header(nonce=bytes(16)), T0 + 31)  # and are refused as stale


def test_a_future_dated_entry_is_kept_until_its_own_window_ends() -> None:
    guard = ReplayGuard(window_s=30)
    ahead = _header(sent=T0 + 30)  # 30 s in the future: fresh now, fresh until T0 + 60
    guard.check(ahead, T0)
    assert _refused(guard, ahead, T0 + 59)


def test_a_full_guard_fails_closed_then_recovers_as_entries_expire() -> None:
    guard = ReplayGuard(window_s=30, max_entries=3)
    for i in range(3):
        guard.check(_header(nonce=bytes([i]) * 16), T0)
    assert _refused(guard, _header(nonce=b"\x09" * 16), T0 + 10)  # full: refuse, never forget
    assert _refused(guard, _header(nonce=bytes(16)), T0 + 10)  # the old ones are still held
    assert not _refused(guard, _header(nonce=b"\x09" * 16, sent=T0 + 31), T0 + 31)
    assert guard.entries == 1


def test_concurrent_checks_accept_each_key_once() -> None:
    guard = ReplayGuard()
    accepted: list[int] = []

    def worker() -> None:
        for i in range(500):
            if not _refused(guard, _header(nonce=i.to_bytes(16, "big")), T0):
                accepted.append(i)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(accepted) == list(range(500))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"window_s": 0}, ValueError),
        ({"max_entries": 0}, ValueError),
        ({"window_s": "30"}, TypeError),
        ({"max_entries": 1.5}, TypeError),
    ],
)
def test_bad_settings_fail_early(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        ReplayGuard(**kwargs)  # type: ignore[arg-type]


def test_bad_argument_types_fail_early() -> None:
    with pytest.raises(TypeError):
        ReplayGuard().check(b"header", T0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ReplayGuard().check(_header(), "now")  # type: ignore[arg-type]
