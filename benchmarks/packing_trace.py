"""The packing benchmark's open-loop arrival trace: Zipf model popularity, and a two-state
Markov-modulated Poisson process (calm / burst) for arrival times, seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TraceConfig:
    """What the trace looks like; rates in requests per second over all models, times in s."""

    models: int = 16
    zipf_s: float = 1.1  # popularity of the model of rank k is proportional to k^-s
    duration_s: float = 600.0
    calm_rps: float = 5.0
    burst_rps: float = 50.0
    calm_mean_s: float = 40.0  # mean dwell in the calm state (exponential)
    burst_mean_s: float = 8.0  # mean dwell in the burst state (exponential)
    seed: int = 0


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds since the trace began
    model: int  # popularity rank, 0 = most popular


@dataclass(frozen=True)
class Trace:
    config: TraceConfig
    arrivals: tuple[Arrival, ...]  # sorted by time
    bursts: tuple[tuple[float, float], ...]  # (start, end) seconds of each burst period

    def counts(self) -> list[int]:
        """Requests per model rank."""
        counts = np.bincount([a.model for a in self.arrivals], minlength=self.config.models)
        return [int(n) for n in counts]

    def per_second(self) -> list[int]:
        """Arrivals in each whole second of the trace."""
        seconds = int(np.ceil(self.config.duration_s))
        times = [int(a.at) for a in self.arrivals]
        return [int(n) for n in np.bincount(times, minlength=seconds)[:seconds]]


def popularity(models: int, s: float) -> list[float]:
    """Zipf probabilities of ranks 0..models-1: (k+1)^-s, normalised."""
    weights = [(k + 1) ** -s for k in range(models)]
    return [w / sum(weights) for w in weights]


def generate(config: TraceConfig) -> Trace:
    """Start calm; in each state draw its dwell, then Poisson arrivals at its rate within it."""
    rng = np.random.default_rng(config.seed)
    shares = popularity(config.models, config.zipf_s)
    times: list[float] = []
    bursts: list[tuple[float, float]] = []
    now, burst = 0.0, False
    while now < config.duration_s:
        mean = config.burst_mean_s if burst else config.calm_mean_s
        end = min(config.duration_s, now + rng.exponential(mean))
        times += _poisson(rng, now, end, config.burst_rps if burst else config.calm_rps)
        if burst:
            bursts.append((now, end))
        now, burst = end, not burst
    ranks = rng.choice(config.models, size=len(times), p=shares)
    arrivals = tuple(Arrival(t, int(r)) for t, r in zip(times, ranks, strict=True))
    return Trace(config, arrivals, tuple(bursts))


def _poisson(rng: np.random.Generator, start: float, end: float, rate: float) -> list[float]:
    """Arrival times of a Poisson process of ``rate`` per second in [start, end), sorted."""
    count = rng.poisson(rate * (end - start))
    return sorted(rng.uniform(start, end, size=count).tolist())
