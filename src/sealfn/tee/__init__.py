"""TEE backends behind one interface: simulated, TDX / SEV-SNP (configfs-tsm), SGX (Gramine).

``backend("auto")`` takes the hardware backend this machine has, else the simulated one, and says
loudly that it is simulated: the simulated TEE isolates nothing from the host.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sealfn.errors import ConfigError
from sealfn.tee import gramine, simulated, tsm
from sealfn.tee.base import (
    HARDWARE,
    REPORT_DATA_SIZE,
    SIMULATED,
    Measurement,
    TeeBackend,
    report_data,
)
from sealfn.tee.manifest import DEFAULT_PACKAGES, Manifest
from sealfn.tee.simulated import SimulatedPlatform, SimulatedTee

__all__ = [
    "BACKENDS",
    "REPORT_DATA_SIZE",
    "Manifest",
    "Measurement",
    "SimulatedPlatform",
    "SimulatedTee",
    "TeeBackend",
    "backend",
    "report_data",
]

BACKENDS = ("auto", SIMULATED, *HARDWARE)
log = logging.getLogger("sealfn.tee")


def backend(
    name: str = "auto",
    *,
    platform_dir: Path | str | None = None,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    config: Mapping[str, Any] | None = None,
) -> TeeBackend:
    """The TEE backend ``name``; a hardware one fails closed where its hardware is absent.

    ``platform_dir``, ``packages`` and ``config`` shape the simulated backend (its persisted
    platform, and the manifest it measures); hardware backends measure what the hardware loaded.
    """
    if name == "auto":
        hardware = _hardware()
        if hardware is not None:
            return hardware
        log.warning(
            "SIMULATED TEE: no TDX, SEV-SNP or SGX hardware found, so this enclave runs "
            "simulated. It has NO isolation from the host; its evidence is marked simulated and "
            "verifiers reject it unless configured to accept it. Development use only."
        )
        name = SIMULATED
    if name == SIMULATED:
        return simulated.create(platform_dir, packages, config)
    if name in ("tdx", "sev-snp"):
        return tsm.TsmTee(name)
    if name == "sgx-gramine":
        return gramine.GramineTee()
    raise ConfigError(f"unknown TEE backend {name!r}; expected one of {', '.join(BACKENDS)}")


def _hardware() -> TeeBackend | None:
    """The hardware backend this machine offers, if any."""
    if tsm.TSM_REPORT.is_dir():
        return tsm.TsmTee()
    if (gramine.ATTESTATION_DEV / "attestation_type").is_file():
        return gramine.GramineTee()
    return None
