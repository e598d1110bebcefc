"""Pick CKKS parameters from a plan's multiplicative depth (no bootstrapping: depth is paid in
coefficient-modulus primes, one per level, within the 128-bit-security bound of the ring)."""

from __future__ import annotations

from dataclasses import dataclass

from sealfn.errors import ConfigError

# Largest total coefficient-modulus bits for 128-bit classical security (HE standard; SEAL's table).
MAX_BITS = {8192: 218, 16384: 438, 32768: 881}
SCALES = (40, 36, 33, 30, 28, 26, 25, 24)  # log2 of the scale, preferred first
MIN_HEADROOM = 8  # bits above the scale in the last prime: decrypted |values| < 2^(8-1) = 128


@dataclass(frozen=True)
class CkksParams:
    poly_modulus: int  # N; slots = N / 2
    coeff_bits: tuple[int, ...]  # [first, scale x depth, special]
    scale_bits: int

    @property
    def levels(self) -> int:
        """Rescales available: the multiplicative depth these parameters allow."""
        return len(self.coeff_bits) - 2

    @property
    def slots(self) -> int:
        return self.poly_modulus // 2


def choose(depth: int, width: int, *, max_poly: int = 32768) -> CkksParams:
    """The smallest ring that fits ``depth`` levels and ``width`` slots, then the largest scale."""
    if depth < 1 or width < 1:
        raise ConfigError(f"depth={depth} and width={width} must be ≥ 1")
    for poly, budget in MAX_BITS.items():
        if poly > max_poly or poly // 2 < width:
            continue
        for scale in SCALES:
            edge = min(60, (budget - depth * scale) // 2)  # first and special prime, equal
            if edge - scale >= MIN_HEADROOM:
                return CkksParams(poly, (edge, *([scale] * depth), edge), scale)
    raise ConfigError(
        f"depth {depth} at width {width} does not fit a ring up to N={max_poly} without "
        "bootstrapping (TenSEAL has none): use fewer blocks"
    )
