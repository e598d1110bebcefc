"""sealfn: serverless, sealed model inference on infrastructure you do not trust."""

from __future__ import annotations

from sealfn.config import FunctionSpec, ServerConfig
from sealfn.errors import SealfnError

__version__ = "0.1.0"

__all__ = ["FunctionSpec", "SealfnError", "ServerConfig", "__version__"]
