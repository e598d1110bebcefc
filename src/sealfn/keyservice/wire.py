"""The KeyService's JSON wire encoding: strict objects, base64 for bytes, checked identifiers."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, TypeVar

from sealfn.errors import InvalidInput

T = TypeVar("T")

# Principal names, model ids and user ids: safe in a URL path segment without escaping, so the
# path a client signs is the path the server sees.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def check_id(what: str, value: object) -> str:
    """``value`` if it is a valid identifier (1-128 of letters, digits, ``_.@-``)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(
            f"{what} {value!r} is invalid: use 1-128 letters, digits, '_', '.', '@', '-', "
            "starting with a letter or digit"
        )
    return value


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(value: object, what: str) -> bytes:
    """The bytes of a standard base64 string; InvalidInput naming ``what`` otherwise."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidInput(f"{what} is not valid base64") from None


def unhex(value: object, what: str) -> bytes:
    """The bytes of a hex string; InvalidInput naming ``what`` otherwise."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidInput(f"{what} is not valid hex") from None


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def loads(body: bytes, what: str = "body") -> dict[str, Any]:
    """A JSON object, or InvalidInput."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return doc


def get(doc: dict[str, Any], key: str, kind: type[T]) -> T:
    """``doc[key]`` if present and of type ``kind`` (a bool is not an int); InvalidInput naming
    the key otherwise."""
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidInput(f"field {key!r} must be a {kind.__name__}")
    return value
