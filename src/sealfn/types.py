"""Named aliases used across sealfn, so signatures say what a value means."""

from __future__ import annotations

from typing import TypeAlias

FunctionName: TypeAlias = str
"""A deployed function's name; also its model name on the Open Inference Protocol."""

InstanceId: TypeAlias = str
"""A worker instance's id, unique for the life of a gateway."""

Seconds: TypeAlias = float
"""A duration or a monotonic timestamp, in seconds."""
