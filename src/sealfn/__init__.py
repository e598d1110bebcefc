"""sealfn: serverless, sealed model inference on infrastructure you do not trust."""

from __future__ import annotations

from sealfn.config import FunctionSpec, ServerConfig
from sealfn.errors import SealfnError

__version__ = "0.1.0"

__all__ = ["Client", "FunctionSpec", "SealfnError", "ServerConfig", "__version__"]


def __getattr__(name: str) -> object:
    # The client pulls in httpx; instances import `sealfn` too and should not pay for it.
    if name == "Client":
        from sealfn.client import Client

        return Client
    raise AttributeError(f"module 'sealfn' has no attribute {name!r}")
