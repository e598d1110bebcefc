from __future__ import annotations

import math

import pytest

from sealfn.collective.costmodel import (
    FMI_PROFILES,
    ChannelProfile,
    Hint,
    choose_channel,
    function_usd_per_s,
    latency_s,
    price_usd,
)
from sealfn.errors import ConfigError

DIRECT, REDIS, S3 = FMI_PROFILES
LAMBDA_2GB = function_usd_per_s(2048, 0.0000166667)  # USD per second of one waiting function


def test_latency_follows_the_fmi_formula() -> None:
    assert latency_s(DIRECT, 7, 4_000_000) == pytest.approx(3 * 0.34e-3 + 0.01)
    assert latency_s(S3, 1, 0) == pytest.approx(math.log2(2) * 40.4e-3)


@pytest.mark.parametrize(
    ("profiles", "hint", "ranks", "nbytes", "chosen"),
    [
        (FMI_PROFILES, Hint.FAST, 2, 4, "direct"),
        (FMI_PROFILES, Hint.FAST, 256, 100 << 20, "direct"),
        (FMI_PROFILES, Hint.CHEAP, 8, 4, "direct"),  # free and fastest: cheapest too
        ((REDIS, S3), Hint.FAST, 8, 4, "redis"),  # no direct connectivity (NAT)
        ((REDIS, S3), Hint.FAST, 8, 1 << 30, "redis"),
        # A slow Redis (its lower bandwidth figure) beats S3 on speed for large messages...
        (
            (ChannelProfile("redis", 5.2e-3, 100e6, usd_per_second=1.0), S3),
            Hint.FAST,
            4,
            10 << 20,
            "redis",
        ),
        # ...but priced at $1/s it is the expensive one, and "cheap" takes S3.
        (
            (ChannelProfile("redis", 5.2e-3, 100e6, usd_per_second=1.0), S3),
            Hint.CHEAP,
            4,
            10 << 20,
            "s3",
        ),
    ],
)
def test_choose_channel(
    profiles: tuple[ChannelProfile, ...], hint: Hint, ranks: int, nbytes: int, chosen: str
) -> None:
    assert choose_channel(profiles, hint, ranks, nbytes, LAMBDA_2GB).name == chosen


def test_cheap_weighs_waiting_functions_against_per_message_prices() -> None:
    # Many tiny messages: S3's request price outweighs Redis's server time and the wait.
    assert choose_channel((REDIS, S3), Hint.CHEAP, 64, 8, LAMBDA_2GB).name == "redis"
    assert price_usd(S3, 64, 8, LAMBDA_2GB) > price_usd(REDIS, 64, 8, LAMBDA_2GB)


@pytest.mark.parametrize(
    ("profiles", "ranks", "nbytes"), [((), 2, 1), (FMI_PROFILES, 0, 1), (FMI_PROFILES, 2, -1)]
)
def test_bad_questions_are_config_errors(
    profiles: tuple[ChannelProfile, ...], ranks: int, nbytes: int
) -> None:
    with pytest.raises(ConfigError):
        choose_channel(profiles, Hint.FAST, ranks, nbytes)


def test_a_profile_needs_a_positive_bandwidth() -> None:
    with pytest.raises(ConfigError, match="bandwidth"):
        ChannelProfile("broken", 0.001, 0)
