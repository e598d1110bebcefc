"""The admin bearer token: made once, owner-only, found by clients, checked in constant time."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealfn import admintoken
from sealfn.errors import ConfigError, Unauthenticated


def test_made_once_owner_only_and_reused(tmp_path: Path) -> None:
    token = admintoken.load_or_create(tmp_path / "state")
    path = tmp_path / "state" / admintoken.TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 43  # 256 random bits, url-safe base64
    assert admintoken.load_or_create(tmp_path / "state") == token


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / admintoken.TOKEN_FILE
    path.write_text("abc\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        admintoken.read(path)


def test_clients_find_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(admintoken.ENV_TOKEN, raising=False)
    monkeypatch.delenv(admintoken.ENV_STATE_DIR, raising=False)
    assert admintoken.find() is None
    default = admintoken.load_or_create(Path(".sealfn"))
    assert admintoken.find() == default
    other = admintoken.load_or_create(tmp_path / "other")
    monkeypatch.setenv(admintoken.ENV_STATE_DIR, str(tmp_path / "other"))
    assert admintoken.find() == other
    monkeypatch.setenv(admintoken.ENV_TOKEN, "from-env")
    assert admintoken.find() == "from-env"
    assert admintoken.find("explicit") == "explicit"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "needs 'Authorization: Bearer <token>'"),
        ("Basic dXNlcjpwYXNz", "needs 'Authorization: Bearer <token>'"),
        ("Bearer nope", "wrong admin token"),
        ("Bearer ", "wrong admin token"),
    ],
)
def test_check_refuses(authorization: str | None, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        admintoken.check(authorization, "s3cret")


def test_check_accepts_the_token_in_any_scheme_case() -> None:
    admintoken.check("Bearer s3cret", "s3cret")
    admintoken.check("bearer s3cret", "s3cret")
