"""FMI's channel cost model: pick the channel for a collective by a "fast" or "cheap" hint.

latency(channel) = log2(p + c) * overhead + size / bandwidth      (seconds)
price(channel)   = messages * price per message + latency * price per second of the channel's
                   server + latency * p * price per second of a waiting function

"fast" picks the lowest latency; "cheap" the lowest price (the functions are billed while they
wait, which is why a slow but free channel is not automatically the cheap one). The profiles are
parameters: ``FMI_PROFILES`` holds the FMI paper's published defaults (ICS 2023, AWS), not
anything measured here; ``benchmarks/collective.py`` measures this machine's channels.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sealfn.errors import ConfigError


class Hint(enum.Enum):
    FAST = "fast"
    CHEAP = "cheap"


@dataclass(frozen=True)
class ChannelProfile:
    name: str
    overhead_s: float  # seconds per message hop
    bandwidth: float  # bytes per second
    usd_per_message: float = 0.0  # e.g. an object store's PUT + GET
    usd_per_second: float = 0.0  # a server the channel needs (Redis), while in use

    def __post_init__(self) -> None:
        if self.overhead_s < 0 or self.bandwidth <= 0:
            raise ConfigError(f"channel {self.name!r}: overhead >= 0 and bandwidth > 0 needed")


# FMI's defaults (Copik et al., ICS 2023, section 5), AWS us-east-1; S3 request prices are AWS's
# list prices for a PUT plus a GET. Redis is priced as a cache.t3.small node ($0.034/hour).
FMI_PROFILES = (
    ChannelProfile("direct", 0.34e-3, 400e6),
    ChannelProfile("redis", 5.2e-3, 100e6, usd_per_second=0.034 / 3600),
    ChannelProfile("s3", 40.4e-3, 50e6, usd_per_message=0.005 / 1000 + 0.0004 / 1000),
)
LOG_OFFSET = 1  # the c in log2(p + c): a 1-rank "collective" still costs one hop


def latency_s(profile: ChannelProfile, ranks: int, nbytes: int) -> float:
    """Seconds one collective of ``nbytes`` among ``ranks`` takes on ``profile``."""
    return math.log2(ranks + LOG_OFFSET) * profile.overhead_s + nbytes / profile.bandwidth


def price_usd(profile: ChannelProfile, ranks: int, nbytes: int, function_usd_per_s: float) -> float:
    """USD one collective costs: the channel's own charges plus ``ranks`` functions waiting."""
    seconds = latency_s(profile, ranks, nbytes)
    messages = ranks  # each rank sends about one message per collective step
    return (
        messages * profile.usd_per_message
        + seconds * profile.usd_per_second
        + seconds * ranks * function_usd_per_s
    )


def choose_channel(
    profiles: Sequence[ChannelProfile],
    hint: Hint,
    ranks: int,
    nbytes: int,
    function_usd_per_s: float = 0.0,
) -> ChannelProfile:
    """The channel the hint asks for among those available (ties: the earlier profile)."""
    if not profiles:
        raise ConfigError("no channel is available to choose from")
    if ranks < 1 or nbytes < 0:
        raise ConfigError(f"ranks={ranks} must be >= 1 and nbytes={nbytes} >= 0")
    if hint is Hint.FAST:
        return min(profiles, key=lambda p: latency_s(p, ranks, nbytes))
    return min(profiles, key=lambda p: price_usd(p, ranks, nbytes, function_usd_per_s))


def function_usd_per_s(memory_mb: int, usd_per_gb_second: float) -> float:
    """What one function of ``memory_mb`` costs per second of waiting."""
    return memory_mb / 1024 * usd_per_gb_second
