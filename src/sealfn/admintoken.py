"""The admin API's bearer token: made once per state directory, owner-only, compared in
constant time. The gateway requires it on /admin/*; the CLI and Client find it themselves.

Where a client looks, first hit wins: an explicit token, ``SEALFN_ADMIN_TOKEN``, the file
``$SEALFN_STATE_DIR/admin.token``, then ``.sealfn/admin.token`` (the default state directory).
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from sealfn.errors import ConfigError, Unauthenticated

TOKEN_FILE = "admin.token"
ENV_TOKEN = "SEALFN_ADMIN_TOKEN"
ENV_STATE_DIR = "SEALFN_STATE_DIR"
_SCHEME = "bearer "


def load_or_create(state_dir: Path) -> str:
    """The token kept in ``state_dir``; a fresh 256-bit one (mode 0600) on first use."""
    path = state_dir / TOKEN_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def read(path: Path) -> str:
    """The token in ``path``; ConfigError if others may read it or it is empty."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is open to other users (mode {mode:o}); chmod 600 it")
    token = path.read_text().strip()
    if not token:
        raise ConfigError(f"{path} holds no token")
    return token


def find(explicit: str | None = None) -> str | None:
    """The token a client should send, or None when there is none to be found."""
    if explicit:
        return explicit
    if os.environ.get(ENV_TOKEN):
        return os.environ[ENV_TOKEN]
    folders = [os.environ.get(ENV_STATE_DIR), ".sealfn"]
    for folder in filter(None, folders):
        path = Path(folder) / TOKEN_FILE
        if path.is_file():
            return read(path)
    return None


def header(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def check(authorization: str | None, token: str) -> None:
    """Raise Unauthenticated unless ``authorization`` is ``Bearer <token>``."""
    if authorization is None or not authorization.lower().startswith(_SCHEME):
        raise Unauthenticated(
            "this endpoint needs 'Authorization: Bearer <token>' (the token is in the server's "
            f"state directory, {TOKEN_FILE}, or {ENV_TOKEN})"
        )
    offered = authorization[len(_SCHEME) :].strip().encode()
    if not hmac.compare_digest(offered, token.encode()):
        raise Unauthenticated("wrong admin token")
